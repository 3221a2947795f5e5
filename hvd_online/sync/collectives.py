"""Every Horovod call of hvd-online lives here, in the order a rank meets them:
init -> pin threads -> broadcast rank 0's state -> one synchronised step per window.

Only the training thread calls into this module (Horovod collectives must be issued in the
same order on every rank); other threads only set flags that the step carries.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

import horovod.tensorflow as hvd
import keras
import numpy as np
import tensorflow as tf

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class World:
    rank: int
    size: int
    local_rank: int
    local_size: int

    @property
    def is_chief(self) -> bool:
        """The one place that decides rank policy: rank 0 serves the console and saves."""
        return self.rank == 0


def core_share(cores: list[int], local_rank: int, local_size: int) -> list[int]:
    """This rank's own slice of the host's cores (the remainder, if any, stays unused).

    >>> core_share([0, 1], 1, 2), core_share([0, 1, 2, 3, 4], 0, 2), core_share([0], 0, 2)
    ([1], [0, 1], [0])
    """
    if len(cores) < local_size:  # fewer cores than ranks: nothing to split, share them all
        return cores
    share = len(cores) // local_size
    return cores[local_rank * share : (local_rank + 1) * share]


def init_world(threads: int = 0, pin_cores: bool = True) -> World:
    hvd.init()
    world = World(hvd.rank(), hvd.size(), hvd.local_rank(), hvd.local_size())
    cores = sorted(os.sched_getaffinity(0))
    if pin_cores and world.local_size > 1:
        # Ranks of one host each keep to their own cores. Pins this thread and every thread
        # started after it (TensorFlow's pools, the Pulsar client, the console); Horovod's own
        # threads, started by hvd.init(), float. Measured, 2 ranks on 2 cores: +40% samples/s
        # at batch 256, +25% at 2048 - unpinned, one rank's busy threads delay the other's
        # part of each lockstep allreduce.
        cores = core_share(cores, world.local_rank, world.local_size)
        os.sched_setaffinity(0, cores)
        per_rank = threads or len(cores)
    else:
        # by default an equal share of the cores, so N ranks do not oversubscribe the host
        per_rank = threads or max(1, len(cores) // world.local_size)
    try:
        tf.config.threading.set_intra_op_parallelism_threads(per_rank)
        tf.config.threading.set_inter_op_parallelism_threads(max(1, min(2, per_rank)))
    except RuntimeError:  # TensorFlow already ran ops in this process (tests, notebooks)
        log.warning("TensorFlow is already initialised: keeping its thread settings")
    return world


def tf_variables(variables: list[Any]) -> list[tf.Variable]:
    # Keras 3 variables have no `.ref()`, which Horovod needs: hand it the backing tf.Variable.
    return [v.value if isinstance(v, keras.Variable) else v for v in variables]


def broadcast_initial_state(model: keras.Model, optimizer: keras.optimizers.Optimizer,
                            name: str = "hvd_online_init") -> None:
    """Every rank starts from rank 0's weights and optimizer state (built up front so its
    slots exist before the first step)."""
    optimizer.build(model.trainable_variables)
    variables = tf_variables(list(model.variables) + list(optimizer.variables))
    # Named by position, not by variable name: Keras names depend on how many models a
    # process built before (rank 0 also builds one for the console), and Horovod matches
    # collectives across ranks by name.
    for i, variable in enumerate(variables):
        variable.assign(hvd.broadcast(variable, root_rank=0, name=f"{name}_{i}"))


def broadcast_object(obj: Any, root_rank: int = 0) -> Any:
    return hvd.broadcast_object(obj, root_rank=root_rank)


def allgather_object(obj: Any) -> list[Any]:
    return list(hvd.allgather_object(obj))


def grouped_sum(tensors: list[tf.Tensor], name: str) -> list[tf.Tensor]:
    """One grouped allreduce (sum) of `tensors`: negotiated and fused together. Inside a
    tf.function, on every rank in the same order."""
    return hvd.grouped_allreduce(tensors, op=hvd.Sum, name=name)


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
        pred = model(x, training=True)
        loss_sum = tf.reduce_sum(tf.cast(loss_fn(y, pred), tf.float32))
    metric_sum = tf.reduce_sum(tf.cast(metric_fn(y, pred), tf.float32))
    grads = tape.gradient(loss_sum, variables)
    grads = [tf.zeros_like(v) if g is None else g for g, v in zip(grads, variables, strict=True)]
    return loss_sum, metric_sum, grads, tf.cast(tf.shape(x)[0], tf.float32)


def apply_if_finite(optimizer: keras.optimizers.Optimizer, grads: list[Any], count: tf.Tensor,
                    loss_sum: tf.Tensor, trainable: list[Any]) -> tuple[tf.Tensor, tf.Tensor]:
    """Inside a tf.function: apply `grads / count` unless there are no samples or the loss or
    a gradient is not finite. Returns (applied, finite)."""
    finite = tf.math.is_finite(loss_sum)
    for g in grads:
        finite = tf.logical_and(finite, tf.reduce_all(tf.math.is_finite(gradient_values(g))))

    def apply() -> tf.Tensor:
        optimizer.apply([divide_gradient(g, count) for g in grads], trainable)
        return tf.constant(True)

    applied = tf.cond(tf.logical_and(count > 0, finite), apply, lambda: tf.constant(False))
    return applied, finite


class SyncStep:
    """One prequential, synchronised update over this rank's window (possibly empty).

    Gradients of the SUM of per-sample losses are summed over ranks (ring-allreduce) and
    divided by the global sample count: each rank weighs by what it actually had, and a rank
    with an empty window contributes zeros instead of blocking the others. The rank's
    `local_stats` vector (flags, counters) is summed in the same step, so control reaches every
    rank at the same step boundary. Loss and metric are computed on the weights BEFORE the
    update (prequential evaluation). Non-finite loss or gradients skip the update everywhere.
    """

    HEAD = 3  # loss_sum, metric_sum, count, in front of the caller's local stats

    def __init__(self, model: keras.Model, optimizer: keras.optimizers.Optimizer,
                 loss_fn: Any, metric_fn: Any, feature_spec: tf.TensorSpec,
                 label_spec: tf.TensorSpec, stats_len: int, world_size: int,
                 name: str = "hvd_online_step") -> None:
        self.model = model
        self.optimizer = optimizer
        trainable = model.trainable_variables
        sources = tf_variables(trainable)

        def reduce_across_ranks(grads: list[Any], stats: tf.Tensor) -> tuple[list[Any], tf.Tensor]:
            if world_size == 1:  # nothing to agree on: no collective, no Horovod cycle wait
                return grads, stats
            # ONE grouped collective per step: gradients and stats are negotiated and fused
            # together (sparse gradients are allgathered inside it and stay sparse)
            reduced = grouped_sum([*grads, stats], name)
            return reduced[:-1], reduced[-1]

        @tf.function(input_signature=[feature_spec, label_spec,
                                      tf.TensorSpec([stats_len], tf.float32)])
        def step(x: tf.Tensor, y: tf.Tensor, local_stats: tf.Tensor) -> tuple[tf.Tensor, ...]:
            loss_sum, metric_sum, grads, count = prequential_gradients(
                model, loss_fn, metric_fn, x, y, sources)
            mine = tf.concat([tf.stack([loss_sum, metric_sum, count]), local_stats], 0)
            grads, stats = reduce_across_ranks(grads, mine)
            applied, finite = apply_if_finite(optimizer, grads, stats[2], stats[0], trainable)
            return stats, applied, finite

        # Called as a concrete function: the tf.function's dispatch (signature binding, cache
        # lookup) cost ~0.5 ms a step here, a third of a 256-sample step.
        self._step = step.get_concrete_function()

    def __call__(self, x: np.ndarray, y: np.ndarray,
                 local_stats: np.ndarray) -> tuple[np.ndarray, bool, bool]:
        stats, applied, finite = self._step(tf.constant(x), tf.constant(y),
                                            tf.constant(local_stats))
        return stats.numpy(), bool(applied), bool(finite)
