"""Every Horovod call of hvd-online lives here, in the order a rank meets them:
init -> pin threads -> broadcast rank 0's state -> one grouped allreduce per step
(hvd_online/sync/steps.py builds the steps around it).

Only the training thread calls into this module (Horovod collectives must be issued in the
same order on every rank); other threads only set flags that the step carries.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
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
    #: every rank's host name, by rank (for the reports: which rank runs where)
    hosts: tuple[str, ...] = ()

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


def init_world(threads: int = 0, pin_cores: bool = True, pinned: bool = False) -> World:
    """`pinned`: `pin_threads` already ran (a standby launch's rank, which built and traced its
    step before Horovod started): Horovod's threads still float."""
    if pinned:  # the threads hvd.init() starts inherit this thread's cores: all of them
        mine = os.sched_getaffinity(0)
        os.sched_setaffinity(0, range(os.cpu_count() or 1))
        hvd.init()
        os.sched_setaffinity(0, mine)
    else:
        hvd.init()
    world = World(hvd.rank(), hvd.size(), hvd.local_rank(), hvd.local_size(),
                  tuple(hvd.allgather_object(socket.gethostname())))
    if not pinned:
        pin_threads(world, threads, pin_cores)
    return world


def planned_world() -> World | None:
    """The world horovodrun started this process in, from its environment, before
    `hvd.init()` (None outside horovodrun)."""
    try:
        rank, size, local_rank, local_size = (int(os.environ[f"HOROVOD_{name}"]) for name in
                                              ("RANK", "SIZE", "LOCAL_RANK", "LOCAL_SIZE"))
    except (KeyError, ValueError):
        return None
    return World(rank, size, local_rank, local_size)


def pin_threads(world: World, threads: int = 0, pin_cores: bool = True) -> None:
    """This rank's cores and TensorFlow's thread pools: before TensorFlow runs its first op."""
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


@contextmanager
def tracing_before_init(size: int) -> Iterator[None]:
    """Trace steps before `hvd.init()` (a standby launch's rank): Horovod 0.28.1's
    grouped_allreduce asks the global process set for its size, for sparse gradients, even
    for a sum, where the value goes unused; before init that raises. The collective ops
    themselves need Horovod only when they run."""
    process_set = hvd.global_process_set
    process_set.size = lambda: size  # type: ignore[method-assign]
    try:
        yield
    finally:
        del process_set.size


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


def shutdown() -> None:
    """Every rank's background thread stops at the same cycle (Horovod coordinates it), so
    no rank is left mid-collective when another's process goes away."""
    hvd.shutdown()


def broadcast_object(obj: Any, root_rank: int = 0) -> Any:
    return hvd.broadcast_object(obj, root_rank=root_rank)


def allgather_object(obj: Any) -> list[Any]:
    return list(hvd.allgather_object(obj))


def allgather_array(array: np.ndarray, name: str) -> np.ndarray:
    """Every rank's `array` (lengths may differ), concatenated in rank order, on every rank."""
    return hvd.allgather(tf.constant(array), name=name).numpy()


def grouped_sum(tensors: list[tf.Tensor], name: str) -> list[tf.Tensor]:
    """One grouped allreduce (sum) of `tensors`: negotiated and fused together. Inside a
    tf.function, on every rank in the same order."""
    # Sparse ones first: Horovod 0.28.1's grouped_allreduce pairs each allgathered
    # IndexedSlices with the dense_shape of the tensor at the same position of the whole list
    # (`zip(new_values, new_indices, tensors)`), which is right only when they lead it.
    order = sorted(range(len(tensors)), key=lambda i: not isinstance(tensors[i], tf.IndexedSlices))
    reduced = hvd.grouped_allreduce([tensors[i] for i in order], op=hvd.Sum, name=name)
    out: list[tf.Tensor] = [None] * len(tensors)  # type: ignore[list-item]
    for position, i in enumerate(order):
        out[i] = reduced[position]
    return out
