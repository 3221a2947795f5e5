"""The online training loop, one rank's view. Read top to bottom:

    the input's batch (a window of decoded samples, or joined events and labels) ->
    synchronised prequential step -> act on the step's global flags (save / stop)
    -> yield a StepReport

The loop is a generator: one loop in `train_command` hands each report to the printer, the
metrics log and the console. Messages are acknowledged only once a checkpoint that includes
them is durable. Each piece of resume state has one owner: sources and operators snapshot
their own, the trainer its counters, and `save` only collects them into a `RunState`.
"""

from __future__ import annotations

import logging
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from hvd_online.config import Config
from hvd_online.drift.detectors import Signal
from hvd_online.drift.response import Challenger, DriftResponse, Response, make_detector
from hvd_online.inputs.batch import Batch, StepInput
from hvd_online.model.dynamic_embedding import dynamic_tables
from hvd_online.model.prediction_copy import PredictionCopy
from hvd_online.model.state import weights_digest
from hvd_online.model.template import ModelTemplate, build_model
from hvd_online.state.checkpoint import Resume
from hvd_online.state.manager import CheckpointManager
from hvd_online.state.run_dir import RunLayout
from hvd_online.sync.collectives import World
from hvd_online.sync.control import Controls, Flag
from hvd_online.sync.stats_vector import StatsLayout
from hvd_online.sync.steps import Synchroniser, Trainable, make_synchroniser
from hvd_online.training.freshness import FreshnessHistogram, weighted_quantiles
from hvd_online.training.health import ProcessHealth
from hvd_online.training.reports import StepReport

__all__ = ["OnlineTrainer", "StepHook", "TrainingCore", "prepare_training", "weights_digest"]

RATE_WINDOW_STEPS = 50
log = logging.getLogger(__name__)

#: runs inside the step, right after an update that trained `rows` and before any checkpoint
#: of that step (the sample ledger of the tests is one)
StepHook = Callable[[int, np.ndarray], None]


#: stops that first take what the input read ahead (`StepInput.drain`); not the sample and
#: step limits, which one more step would overrun
DRAINED_STOPS = (Flag.SIGTERM.value, Flag.STOP.value, Flag.IDLE.value)


@dataclass(frozen=True)
class TrainingCore:
    """What a rank trains, built and its step traced (seconds of a start): the model and its
    optimizer (in `trainable`) and the synchroniser. Needs neither the input nor a
    checkpoint, so a standby launch's rank builds it before it is needed
    (hvd_online/commands/train.py)."""

    trainable: Trainable
    synchroniser: Synchroniser


def prepare_training(config: Config, template: ModelTemplate, world_size: int) -> TrainingCore:
    keras.utils.set_random_seed(config.train.seed)
    model = build_model(template, config.model.pretrained)
    optimizer = template.make_optimizer(config.train.learning_rate)
    optimizer.build(model.trainable_variables)  # its slots exist before the step is traced
    schema = template.schema
    trainable = Trainable(
        model, optimizer, template.per_sample_loss, template.per_sample_metric,
        tf.TensorSpec((None, *schema.feature_shape), schema.dtype[schema.features].base),
        tf.TensorSpec((None, *schema.label_shape), schema.dtype[schema.label].base))
    # lockstep every step, or local SGD's steps and averages: the loop cannot tell; traced
    # for a stats vector of any length (the input's counters are not known yet)
    synchroniser = make_synchroniser(trainable, None, world_size, config.train.sync_every)
    return TrainingCore(trainable, synchroniser)


class OnlineTrainer:
    def __init__(self, config: Config, template: ModelTemplate, world: World,
                 step_input: StepInput, partitions: int, controls: Controls | None = None,
                 step_hooks: Sequence[StepHook] = (), resume: Resume | None = None,
                 core: TrainingCore | None = None) -> None:
        """`core`: built by `prepare_training` for this world's size (None: built here)."""
        self.config = config
        self.template = template
        self.world = world
        self.input = step_input
        self.sources = step_input.sources
        self.controls = controls or Controls()
        self.step_hooks = list(step_hooks)
        self.layout = StatsLayout(world.size, partitions, step_input.counters)
        core = core or prepare_training(config, template, world.size)
        trainable, self.synchroniser = core.trainable, core.synchroniser
        self.model, self.optimizer = trainable.model, trainable.optimizer
        self.drift = self._make_drift_response(trainable)
        #: dynamic embedding tables, whose counters each report carries
        self.tables = dynamic_tables(self.model)
        self.checkpoints = CheckpointManager(
            RunLayout.of(config).checkpoints, config.checkpoint, world, self.model,
            self.optimizer, self.sources, shared={"drift": self.drift} if self.drift else {},
            local=step_input.operators)
        self.checkpoints.restore(resume)
        self.progress = self.checkpoints.progress
        #: a copy of the weights for an input that predicts on its own thread (raw events)
        self._prediction_copy = partial(
            PredictionCopy, self.model, partial(build_model, template, config.model.pretrained),
            trainable.feature_spec)
        #: publish -> applied latency of this rank's trained samples; `steady_freshness`
        #: only of those published after its first step (not the backlog it started on)
        self.freshness, self.steady_freshness = FreshnessHistogram(), FreshnessHistogram()
        self._first_step_ms: float | None = None
        self.health = ProcessHealth()
        #: p50 and p99 of the last trained window's publish -> trained ms (the reports')
        self._last_freshness: tuple[float, ...] = (0.0, 0.0)

    def _make_drift_response(self, trainable: Trainable) -> DriftResponse | None:
        config = self.config.drift
        detector = make_detector(config)
        if detector is None:
            return None
        lr = self.config.train.learning_rate
        specs = (trainable.feature_spec, trainable.label_spec)
        challenger = (Challenger(self.template, config, lr, specs, self.world.size)
                      if config.action == "challenger" else None)
        return DriftResponse(config, detector, self.model, self.optimizer, lr, challenger)

    # -- one step ---------------------------------------------------------------------------

    def _local_flags(self, idle_since: float, took: int) -> set[Flag]:
        flags = self.controls.take() | self.checkpoints.timer_flags()
        timeout = self.config.train.idle_timeout_s
        # only a rank with nothing in hand calls it idle: one frozen for longer than the
        # timeout (a straggler, a GC pause) wakes with a backlog, and its flag stops everyone
        if timeout > 0 and not took and time.monotonic() - idle_since >= timeout:
            flags.add(Flag.IDLE)
        return flags

    def _stop_reason(self, flags: set[Flag]) -> str | None:
        train = self.config.train
        for flag in (Flag.SIGTERM, Flag.STOP, Flag.IDLE):
            if flag in flags:
                return flag.value
        if train.max_samples and self.progress.samples_total >= train.max_samples:
            return "max_samples"
        if train.max_steps and self.progress.step >= train.max_steps:
            return "max_steps"
        return None

    def save(self) -> str | None:
        """Collective: every rank calls it at the same step (CheckpointManager.save)."""
        return self.checkpoints.save()

    def run(self) -> Iterator[StepReport]:
        """One step per window: take the input's batch, step the synchroniser, and on the steps
        that reach every rank act on their flags (save / stop) and yield a report."""
        self.input.start(self._prediction_copy)
        try:
            yield from self._steps()
        finally:
            self.input.stop()

    def _steps(self) -> Iterator[StepReport]:
        start = idle_since = time.monotonic()
        self._recent = deque([(start, self.progress.samples_total)], maxlen=RATE_WINDOW_STEPS)
        last_step_time, last_fill = 0.0, 0.0
        batch_size = self.config.window.batch_size
        schema = self.template.schema
        first_step = True
        #: flags raised and input sums since the last step that reached every rank
        flags: set[Flag] = set()
        sums: Counter[str] = Counter()
        #: the stop waiting for one last step that takes what the input read ahead
        draining: str | None = None
        while True:
            t0 = time.monotonic()
            batch = self.input.take(self.progress.step)
            rows = batch.rows
            flags |= self._local_flags(idle_since, len(rows))
            sums.update(batch.sums)
            x = np.ascontiguousarray(rows[schema.features])
            y = np.ascontiguousarray(rows[schema.label])
            self.progress.step += 1
            outcome = self.synchroniser.step(x, y, partial(self._local_stats, flags,
                                                           last_step_time, last_fill, sums))
            if outcome.trained_here:
                self._trained(batch)
            now = time.monotonic()
            last_step_time, last_fill = now - t0, len(rows) / batch_size
            if outcome.summed is None:
                continue  # between local SGD's averages: nothing reached the other ranks
            flags, sums = set(), Counter()
            summed = outcome.summed
            count = self.layout.count(summed)
            fields = self.layout.report_fields(summed)
            fields.update(self.input.report_fields(self.layout.sums(summed)))
            if outcome.applied:
                self.progress.samples_total += count
            self.progress.skipped_steps += outcome.skipped
            if count:
                idle_since = now
            if first_step:
                first_step = False
                log.info("rank %d: first step done %.1f s after start (tracing included)",
                         self.world.rank, now - start)
            # the drift response acts on this step before a checkpoint of it is taken
            response = (self.drift.after_step(x, y, fields["loss"], count)
                        if self.drift and outcome.applied else None)
            step_flags = self.layout.flags(summed)
            stopped = draining or self._stop_reason(step_flags)
            if not draining and stopped in DRAINED_STOPS and self.input.drain():
                # every rank agrees on both (summed flags, the same input kind): one more
                # step, then the checkpoint covers every event predicted (none republished)
                draining, stopped = stopped, None
            checkpoint = (self.checkpoints.save()
                          if self.checkpoints.due(step_flags, stopped is not None) else None)
            yield StepReport(
                step=self.progress.step, samples_total=self.progress.samples_total,
                applied=outcome.applied, elapsed_s=now - start, time_s=time.time(),
                samples_per_s=self._recent_rate(), skipped_steps=self.progress.skipped_steps,
                checkpoint=checkpoint, stopped=stopped,
                checkpoint_failures=self.checkpoints.failures,
                tables={t.name: t.counters() for t in self.tables} or None,
                rank_hosts=list(self.world.hosts),
                **self._drift_fields(response), **fields)
            if stopped:
                return

    def _local_stats(self, flags: set[Flag], step_time_s: float, fill: float,
                     sums: Counter[str]) -> np.ndarray:
        """This rank's part of the stats vector (built only for a step that reaches every
        rank)."""
        return self.layout.local(self.world.rank, flags, step_time_s, fill,
                                 (*self.health.read(), *self._last_freshness),
                                 self._partition_state(), self.dead_letters(),
                                 self._duplicates(), sums)

    def _trained(self, batch: Batch) -> None:
        """This rank's `batch` is in the weights now: the hooks see it before any checkpoint."""
        self._record_freshness(batch)
        for hook in self.step_hooks:
            hook(self.progress.step, batch.rows)

    @staticmethod
    def _drift_fields(response: Response | None) -> dict[str, Any]:
        if response is None:
            return {}
        return {"drift": response.signal is Signal.DRIFT, "drift_action": response.action,
                "challenger_loss": response.challenger_loss}

    def _record_freshness(self, batch: Batch) -> None:
        now = time.time() * 1000
        if self._first_step_ms is None:
            self._first_step_ms = now
        if len(batch.sizes):
            latency = now - batch.published_ms
            self.freshness.add(latency, batch.sizes)
            steady = batch.published_ms >= self._first_step_ms
            self.steady_freshness.add(latency[steady], batch.sizes[steady])
            self._last_freshness = weighted_quantiles(latency, batch.sizes, (0.5, 0.99))

    def _recent_rate(self) -> float:
        """Samples/s over the last RATE_WINDOW_STEPS steps (a rate that follows the stream)."""
        self._recent.append((time.monotonic(), self.progress.samples_total))
        (t0, n0), (t1, n1) = self._recent[0], self._recent[-1]
        return (n1 - n0) / (t1 - t0) if t1 > t0 else 0.0

    def _partition_state(self) -> dict[int, tuple[int, int]]:
        """{partition: (records waiting, age of the oldest ms)}, over its sources (a raw
        event stream has two per partition: events and labels)."""
        state: dict[int, tuple[int, int]] = {}
        for source in self.sources:
            waiting, lag = state.get(source.partition, (0, 0))
            state[source.partition] = (waiting + source.backlog(), max(lag, source.lag_ms()))
        return state

    def _duplicates(self) -> int:
        return sum(s.stats().get("duplicates", 0) for s in self.sources)

    def dead_letters(self) -> Counter[str]:
        """This rank's dead letters so far, by kind of reason."""
        counts: Counter[str] = Counter()
        for sink in self.input.dead_letters:
            counts.update(sink.counts)
        return counts
