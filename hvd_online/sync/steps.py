"""The two ways ranks stay one model, behind one interface: `step(x, y, local) -> Outcome`.

- `LockstepStep` (`train.sync_every = 1`): every step, gradients are summed over ranks
  (ring-allreduce) and one update is applied everywhere.
- `LocalSGD` (`train.sync_every = k > 1`): each rank updates its own copy every step, and every
  k steps the ranks average weights and optimizer state in one grouped allreduce.

Either way the rank's stats vector (hvd_online/sync/stats_vector.py: flags, counters) rides
in the same collective, so control and reports reach every rank at the same step boundary;
`local` builds it only for a step that reaches every rank.

Why local SGD: with k = 1 every step waits for a lockstep allreduce of the gradients, which
costs more than the step's compute here (Gloo, ~3.6 ms against ~1.7 ms at batch 256).
Averaging every k steps pays that once per k steps (Lin et al., "Don't use large
mini-batches, use local SGD"). The average is weighted by the samples each rank trained since
the last one, so an idle rank (weight 0) takes the others' weights and adds nothing, as it
adds zero gradients at k = 1; if no rank trained, nothing changes. Adam's moments are averaged
the same way, and its iteration counter too (rounded): the state then matches one optimizer
that saw every rank's steps, near enough for its bias correction, and every rank leaves the
average with identical weights and optimizer state - which is what lets a checkpoint taken at
an averaging step stand for every rank.

>>> weighted_mean([np.array([1.0, 3.0]), np.array([5.0, 7.0])], weights=[3.0, 1.0])
array([2., 4.])
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import keras
import numpy as np
import tensorflow as tf

from hvd_online.errors import ConfigError
from hvd_online.model.dynamic_embedding import dynamic_tables
from hvd_online.sync import collectives
from hvd_online.sync.stats_vector import COUNT, HEAD, LOSS_SUM
from hvd_online.sync.updates import apply_if_finite, prequential_gradients


@dataclass(frozen=True)
class Trainable:
    """What a synchroniser trains: the model, its optimizer, the template's per-sample loss
    and metric, and the window's tensor specs."""

    model: keras.Model
    optimizer: keras.optimizers.Optimizer
    loss_fn: Any
    metric_fn: Any
    feature_spec: tf.TensorSpec
    label_spec: tf.TensorSpec


@dataclass(frozen=True)
class Outcome:
    #: the stats vector summed over ranks (StatsLayout's), when this step reached every rank;
    #: None between local SGD's averages
    summed: np.ndarray | None
    #: this rank's window is in its weights now (step hooks and freshness see it)
    trained_here: bool = False
    #: the shared model changed at this step (every rank agrees)
    applied: bool = False
    #: updates skipped on any rank since the last outcome that reached every rank (a
    #: non-finite loss or gradient)
    skipped: int = 0


class Synchroniser(Protocol):
    def step(self, x: np.ndarray, y: np.ndarray,
             local: Callable[[], np.ndarray]) -> Outcome: ...


class LockstepStep:
    """One prequential, synchronised update over this rank's window (possibly empty).

    Gradients of the SUM of per-sample losses are summed over ranks and divided by the global
    sample count: each rank weighs by what it actually had, and a rank with an empty window
    contributes zeros instead of blocking the others. Loss and metric are computed on the
    weights BEFORE the update (prequential evaluation). Non-finite loss or gradients skip the
    update everywhere.
    """

    def __init__(self, trainable: Trainable, stats_len: int | None, world_size: int,
                 name: str = "hvd_online_step") -> None:
        """`stats_len`: the stats vector's length (None: any; a step traced before the input,
        which adds its counters, is open)."""
        model, optimizer = trainable.model, trainable.optimizer
        trainable_variables = model.trainable_variables
        self.tables = dynamic_tables(model)
        self.optimizer, self.world_size, self.name = optimizer, world_size, name
        tables = self.tables
        sources = collectives.tf_variables(trainable_variables + [t.embeddings for t in tables])

        def reduce_across_ranks(grads: list[Any], stats: tf.Tensor) -> tuple[list[Any], tf.Tensor]:
            if world_size == 1:  # nothing to agree on: no collective, no Horovod cycle wait
                return grads, stats
            # ONE grouped collective per step: gradients and stats are negotiated and fused
            # together (sparse gradients are allgathered inside it and stay sparse)
            reduced = collectives.grouped_sum([*grads, stats], name)
            return reduced[:-1], reduced[-1]

        def step(x: tf.Tensor, y: tf.Tensor, local_stats: tf.Tensor,
                 *admitted: tf.Tensor) -> tuple[tf.Tensor, ...]:
            if admitted:  # the tables' admission first, in the same call
                clock = tf.cast(tf.convert_to_tensor(optimizer.iterations), tf.int64) + 1
                for i, table in enumerate(tables):
                    table.sight(admitted[0][:, i], clock)
            loss_sum, metric_sum, grads, count = prequential_gradients(
                model, trainable.loss_fn, trainable.metric_fn, x, y, sources)
            mine = tf.concat([tf.stack([loss_sum, metric_sum, count]), local_stats], 0)
            grads, stats = reduce_across_ranks(grads, mine)
            applied, _ = apply_if_finite(optimizer, grads, stats[COUNT], stats[LOSS_SUM],
                                         trainable_variables, tables)
            return stats, applied

        # Called as a concrete function: the tf.function's dispatch (signature binding, cache
        # lookup) cost ~0.5 ms a step here, a third of a 256-sample step. Each call costs
        # ~0.3 ms even so, which is why the tables' admission is in it rather than a call
        # of its own (two tables' calls took 1.5 ms of a 3.3 ms MovieLens step).
        specs = [trainable.feature_spec, trainable.label_spec,
                 tf.TensorSpec([stats_len], tf.float32)]
        if tables:
            specs.append(tf.TensorSpec([None, len(tables)], tf.int64))
        # (`*admitted`, not a keyword with a default: a concrete function's call binding a
        # default ran the step 4x slower here)
        self._step = tf.function(step, input_signature=specs).get_concrete_function()
        self._columns = [t.column for t in tables]

    def step(self, x: np.ndarray, y: np.ndarray,
             local: Callable[[], np.ndarray]) -> Outcome:
        args = [tf.constant(x), tf.constant(y), tf.constant(local())]
        if self.tables:
            args.append(tf.constant(self._admitted(x)))
        stats, applied = self._step(*args)
        summed = stats.numpy()
        skipped = int(summed[COUNT] > 0 and not bool(applied))
        return Outcome(summed, bool(applied), bool(applied), skipped)

    def _admitted(self, x: np.ndarray) -> np.ndarray:
        """Every rank admits the same IDs in the same order: this step's IDs of every rank
        (one column per table), so the tables' ID -> row maps stay identical and the rows
        the gradients carry line up. The optimizer's step count is the clock (equal
        everywhere, checkpointed)."""
        ids = np.ascontiguousarray(np.asarray(x)[:, self._columns], np.int64)
        if self.world_size > 1:
            ids = collectives.allgather_array(ids, f"{self.name}_ids")
        return ids


def weighted_mean(values: Sequence[np.ndarray], weights: Sequence[float]) -> np.ndarray:
    """What the averaging step computes, for one variable across ranks (a reference for tests)."""
    total = float(sum(weights))
    return np.sum([w * v for w, v in zip(weights, values, strict=True)], axis=0) / total


class LocalSGD:
    """Each step updates this rank's copy alone; every `every`-th step averages over ranks."""

    def __init__(self, trainable: Trainable, stats_len: int | None, world_size: int, every: int,
                 name: str = "hvd_online_average") -> None:
        model, optimizer = trainable.model, trainable.optimizer
        if dynamic_tables(model):
            msg = ("DynamicEmbedding needs train.sync_every = 1: its ID -> row map stays equal "
                   "on every rank only if every step's IDs reach every rank, a collective per "
                   "step, which is what local SGD avoids")
            raise ConfigError(msg)
        self.every = every
        self._steps = 0
        optimizer.build(model.trainable_variables)
        trainable_variables = model.trainable_variables
        shared = collectives.tf_variables(list(model.weights) + list(optimizer.variables))
        #: loss_sum, metric_sum, count over the round's finite steps; then skipped steps
        self._head = np.zeros(len(HEAD), np.float64)
        self._skipped = 0
        self._trained = 0.0

        @tf.function(input_signature=[trainable.feature_spec, trainable.label_spec])
        def local_step(x: tf.Tensor, y: tf.Tensor) -> tuple[tf.Tensor, ...]:
            loss_sum, metric_sum, grads, count = prequential_gradients(
                model, trainable.loss_fn, trainable.metric_fn, x, y, trainable_variables)
            applied, _ = apply_if_finite(optimizer, grads, count, loss_sum, trainable_variables)
            return tf.stack([loss_sum, metric_sum, count]), applied

        head = None if stats_len is None else stats_len + len(HEAD)
        @tf.function(input_signature=[tf.TensorSpec([head], tf.float32),
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

        # concrete functions: a tf.function's dispatch costs ~0.5 ms a call (see LockstepStep)
        self._local_step = local_step.get_concrete_function()
        self._average = average.get_concrete_function()

    def step(self, x: np.ndarray, y: np.ndarray,
             local: Callable[[], np.ndarray]) -> Outcome:
        trained = self.train(x, y)
        self._steps += 1
        if self._steps % self.every:
            return Outcome(None, trained)  # not an averaging step: nothing reaches the others
        summed, skipped = self.average(local())
        return Outcome(summed, trained, bool(summed[COUNT] > 0), skipped)

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
        """Collective: the round's stats summed over ranks (the lockstep step's layout) and
        the steps skipped on any rank; afterwards every rank holds the same weights."""
        stats = np.concatenate([self._head, local_stats]).astype(np.float32)
        mine = np.array([self._trained, self._skipped], np.float32)
        summed, totals = self._average(tf.constant(stats), tf.constant(mine))
        self._head[:] = 0
        self._trained, self._skipped = 0.0, 0
        return summed.numpy(), int(round(float(totals.numpy()[1])))


def make_synchroniser(trainable: Trainable, stats_len: int | None, world_size: int,
                      sync_every: int) -> Synchroniser:
    if sync_every == 1:
        return LockstepStep(trainable, stats_len, world_size)
    return LocalSGD(trainable, stats_len, world_size, sync_every)
