"""Local SGD (`train.sync_every = k > 1`): each rank updates its own copy of the model every
step, and every k steps the ranks average weights and optimizer state in one grouped allreduce.

Why: with k = 1 every step waits for a lockstep allreduce of the gradients, which costs more
than the step's compute here (Gloo, ~3.6 ms against ~1.7 ms at batch 256). Averaging every k
steps pays that once per k steps (Lin et al., "Don't use large mini-batches, use local SGD").

The average is weighted by the samples each rank trained since the last one, so an idle rank
(weight 0) takes the others' weights and adds nothing, as it adds zero gradients at k = 1;
if no rank trained, nothing changes. Adam's moments are averaged the same way, and its
iteration counter too (rounded): the state then matches one optimizer that saw every
rank's steps, near enough for its bias correction, and every rank leaves the average with
identical weights and optimizer state - which is what lets a checkpoint taken at an averaging
step stand for every rank.

The step's stats (loss, metric and sample count over the round; the input's sums; flags
raised at any step of the round) travel in the same collective, so save/stop and the
reports still reach every rank at the same step, once per round.

>>> weighted_mean([np.array([1.0, 3.0]), np.array([5.0, 7.0])], weights=[3.0, 1.0])
array([2., 4.])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from hvd_online.sync import collectives


def weighted_mean(values: Sequence[np.ndarray], weights: Sequence[float]) -> np.ndarray:
    """What the averaging step computes, for one variable across ranks (a reference for tests)."""
    total = float(sum(weights))
    return np.sum([w * v for w, v in zip(weights, values, strict=True)], axis=0) / total


class LocalSGD:
    """`train(x, y)` once per step on this rank alone; `average(local_stats)` every k steps on
    every rank together."""

    HEAD = 3  # loss_sum, metric_sum, count over the round, as SyncStep's summed vector

    def __init__(self, model: keras.Model, optimizer: keras.optimizers.Optimizer,
                 loss_fn: Any, metric_fn: Any, feature_spec: tf.TensorSpec,
                 label_spec: tf.TensorSpec, stats_len: int, world_size: int,
                 name: str = "hvd_online_average") -> None:
        self.model = model
        self.optimizer = optimizer
        optimizer.build(model.trainable_variables)
        trainable = model.trainable_variables
        shared = collectives.tf_variables(list(model.weights) + list(optimizer.variables))
        #: loss_sum, metric_sum, count over the round's finite steps; then skipped steps
        self._head = np.zeros(self.HEAD, np.float64)
        self._skipped = 0
        self._trained = 0.0

        @tf.function(input_signature=[feature_spec, label_spec])
        def local_step(x: tf.Tensor, y: tf.Tensor) -> tuple[tf.Tensor, ...]:
            loss_sum, metric_sum, grads, count = collectives.prequential_gradients(
                model, loss_fn, metric_fn, x, y, trainable)
            applied, _ = collectives.apply_if_finite(optimizer, grads, count, loss_sum, trainable)
            return tf.stack([loss_sum, metric_sum, count]), applied

        @tf.function(input_signature=[tf.TensorSpec([stats_len + self.HEAD], tf.float32),
                                      tf.TensorSpec([2], tf.float32)])
        def average(stats: tf.Tensor, weight_and_skipped: tf.Tensor) -> tuple[tf.Tensor, ...]:
            weight = weight_and_skipped[0]
            if world_size == 1:
                return stats, weight_and_skipped
            weighted = [tf.cast(v, tf.float32) * weight for v in shared]
            reduced = collectives.grouped_sum([*weighted, stats, weight_and_skipped], name)
            totals = reduced[-1]
            total = totals[0]
            if total > 0:  # nobody trained: keep the weights (equal on every rank already)
                for variable, summed in zip(shared, reduced[:-2], strict=True):
                    mean = summed / total
                    if variable.dtype.is_integer:
                        mean = tf.round(mean)
                    variable.assign(tf.cast(mean, variable.dtype))
            return reduced[-2], totals

        # concrete functions: a tf.function's dispatch costs ~0.5 ms a call (see SyncStep)
        self._local_step = local_step.get_concrete_function()
        self._average = average.get_concrete_function()

    def train(self, x: np.ndarray, y: np.ndarray) -> bool:
        """One update of this rank's copy on its own window; False if it had no samples or a
        non-finite loss or gradient (then it is skipped and counted)."""
        head, applied = self._local_step(tf.constant(x), tf.constant(y))
        if bool(applied):
            self._head += head.numpy()
            self._trained += len(x)
            return True
        if len(x):
            self._skipped += 1
        return False

    def average(self, local_stats: np.ndarray) -> tuple[np.ndarray, int]:
        """Collective: the round's stats summed over ranks (SyncStep's layout) and the steps
        skipped on any rank; afterwards every rank holds the same weights."""
        stats = np.concatenate([self._head, local_stats]).astype(np.float32)
        mine = np.array([self._trained, self._skipped], np.float32)
        summed, totals = self._average(tf.constant(stats), tf.constant(mine))
        self._head[:] = 0
        self._trained, self._skipped = 0.0, 0
        return summed.numpy(), int(round(float(totals.numpy()[1])))
