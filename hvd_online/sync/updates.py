"""One rank's prequential update, inside a tf.function: the loss and metric on the weights
before the update, the gradients, and an update applied only when it is finite. The
synchronisers (steps.py) put a collective between the gradients and the update, or not.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
import tensorflow as tf


def gradient_values(grad: Any) -> tf.Tensor:
    return grad.values if isinstance(grad, tf.IndexedSlices) else grad


def divide_gradient(grad: Any, total: tf.Tensor) -> Any:
    """Sparse embedding gradients stay sparse (Horovod allgathers their rows; no densifying)."""
    if isinstance(grad, tf.IndexedSlices):
        return tf.IndexedSlices(grad.values / total, grad.indices, grad.dense_shape)
    return grad / total


def prequential_gradients(model: keras.Model, loss_fn: Any, metric_fn: Any, x: tf.Tensor,
                          y: tf.Tensor, variables: list[Any]) -> tuple[tf.Tensor, ...]:
    """Inside a tf.function: loss and metric sums on the weights before the update, the
    gradients of the loss sum (zeros for variables it does not reach) and the sample count."""
    with tf.GradientTape() as tape:
        # also dynamic tables, which are not trainable for the optimizer
        tape.watch([v.value if isinstance(v, keras.Variable) else v for v in variables])
        pred = model(x, training=True)
        loss_sum = tf.reduce_sum(tf.cast(loss_fn(y, pred), tf.float32))
    metric_sum = tf.reduce_sum(tf.cast(metric_fn(y, pred), tf.float32))
    grads = tape.gradient(loss_sum, variables)
    grads = [tf.zeros_like(v) if g is None else g for g, v in zip(grads, variables, strict=True)]
    return loss_sum, metric_sum, grads, tf.cast(tf.shape(x)[0], tf.float32)


def apply_if_finite(optimizer: keras.optimizers.Optimizer, grads: list[Any], count: tf.Tensor,
                    loss_sum: tf.Tensor, trainable: list[Any],
                    tables: Sequence[Any] = ()) -> tuple[tf.Tensor, tf.Tensor]:
    """Inside a tf.function: apply `grads / count` unless there are no samples or the loss or
    a gradient is not finite. Returns (applied, finite). The last `len(tables)` gradients are
    dynamic embedding tables' (hvd_online/model/dynamic_embedding.py): each gets its summed
    gradient and `count` (its optimizer decides: Adam divides, SGD sums per row) and applies
    its own rows, with the optimizer's learning rate and step."""
    finite = tf.math.is_finite(loss_sum)
    for g in grads:
        finite = tf.logical_and(finite, tf.reduce_all(tf.math.is_finite(gradient_values(g))))
    dense = grads[: len(grads) - len(tables)]
    sparse = grads[len(grads) - len(tables):]

    def apply() -> tf.Tensor:
        for table, g in zip(tables, sparse, strict=True):  # before `apply` counts the step
            table.apply_sparse(g, count, optimizer.learning_rate, optimizer.iterations)
        optimizer.apply([divide_gradient(g, count) for g in dense], trainable)
        return tf.constant(True)

    applied = tf.cond(tf.logical_and(count > 0, finite), apply, lambda: tf.constant(False))
    return applied, finite
