"""The online training loop, one rank's view. Read top to bottom:

    window of records -> decode (bad ones to the dead-letter topic) -> synchronised
    prequential step -> act on the step's global flags (save / stop) -> yield a StepReport

The loop is a generator so the log printer, the console and the tests consume the same
reports. Messages are acknowledged only once a checkpoint that includes them is durable.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import math
import time
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import keras
import numpy as np
import tensorflow as tf

from hvd_online import distributed
from hvd_online.checkpoint import Checkpoint, save_checkpoint
from hvd_online.config import Config
from hvd_online.control import Controls
from hvd_online.distributed import SyncStep, World
from hvd_online.drift import PageHinkley
from hvd_online.errors import ConfigError
from hvd_online.freshness import FreshnessHistogram
from hvd_online.reports import StepReport
from hvd_online.step_stats import StatsLayout
from hvd_online.template import ModelTemplate, build_model
from streams.codecs import make_codec
from streams.source import PartitionSource, Record
from streams.window import BatchWindow

RATE_WINDOW_STEPS = 50
log = logging.getLogger("hvd_online")


class DeadLetters(Protocol):
    @property
    def total(self) -> int: ...

    def send(self, record: Record, rejected: Any) -> None: ...


class TrainerHook(Protocol):
    """Called on the training thread (keep it cheap)."""

    def on_applied(self, step: int, rows: np.ndarray) -> None:
        """Right after an update that trained `rows`, before any checkpoint of that step."""

    def on_report(self, report: StepReport, model: keras.Model) -> None:
        """After every step, with the step's report (checkpoint path included)."""


@dataclass
class _Cut:
    """Last record of each partition included in an applied update (the checkpoint cut)."""

    records: dict[int, Record] = field(default_factory=dict)
    #: positions carried over from the checkpoint this run resumed from (quiet partitions
    #: keep their place in the next checkpoint)
    resumed: dict[int, str] = field(default_factory=dict)

    def advance(self, records: Sequence[Record]) -> None:
        for record in records:  # records of one partition arrive in order
            self.records[record.partition] = record

    def positions(self) -> dict[int, str]:
        out = dict(self.resumed)
        for partition, record in self.records.items():
            mid = record.message_id
            out[partition] = mid.serialize().hex() if hasattr(mid, "serialize") else str(
                record.position)
        return out


def weights_digest(model: keras.Model) -> str:
    """sha256 over all weights: equal on every rank when ranks are in sync."""
    h = hashlib.sha256()
    for w in model.get_weights():
        h.update(np.ascontiguousarray(w).tobytes())
    return h.hexdigest()


def _make_detector(config: Config) -> PageHinkley | None:
    drift = config.drift
    if not drift.detector:
        return None
    if drift.detector != "page_hinkley":
        msg = f"drift.detector {drift.detector!r} is unknown: use 'page_hinkley' or ''"
        raise ConfigError(msg)
    return PageHinkley(drift.delta, drift.threshold, drift.min_steps)


class OnlineTrainer:
    def __init__(self, config: Config, template: ModelTemplate, world: World,
                 sources: Sequence[PartitionSource], partitions: int,
                 dead_letters: DeadLetters, controls: Controls | None = None,
                 hooks: Sequence[TrainerHook] = (), resume: Checkpoint | None = None) -> None:
        self.config = config
        self.template = template
        self.world = world
        self.sources = list(sources)
        self.dead_letters = dead_letters
        self.controls = controls or Controls()
        self.hooks = list(hooks)
        self.layout = StatsLayout(world.size, partitions)
        self.checkpoint_root = Path(config.run.dir) / "checkpoints"
        keras.utils.set_random_seed(config.train.seed)
        self.model = build_model(template, config.model.pretrained)
        self.optimizer = template.make_optimizer(config.train.learning_rate)
        self.step = 0
        self.samples_total = 0
        self.skipped_steps = 0
        if resume is not None:
            self._restore(resume)
        distributed.broadcast_initial_state(self.model, self.optimizer)
        schema = template.schema
        self.codec = make_codec(config.stream.codec, schema)
        self.sync_step = SyncStep(
            self.model, self.optimizer, template.per_sample_loss, template.per_sample_metric,
            tf.TensorSpec((None, *schema.feature_shape), schema.dtype[schema.features].base),
            tf.TensorSpec((None, *schema.label_shape), schema.dtype[schema.label].base),
            self.layout.length, world.size,
        )
        self.window = BatchWindow(self.sources, config.window.batch_size,
                                  config.window.max_wait_ms / 1000,
                                  size_of=self.codec.count_samples)
        self._source_of = {s.partition: s for s in self.sources}
        owned = set(self._source_of)
        resumed = resume.state.get("positions", {}) if resume else {}
        self.drift = _make_detector(config)
        self.cut = _Cut(resumed={int(p): v for p, v in resumed.items() if int(p) in owned})
        #: publish -> applied latency of this rank's trained samples
        self.freshness = FreshnessHistogram()

    def _restore(self, checkpoint: Checkpoint) -> None:
        """Rank 0 loads the checkpoint; the broadcast that follows hands it to every rank."""
        if self.world.is_chief:
            self.model.set_weights(checkpoint.weights)
            self.optimizer.build(self.model.trainable_variables)
            for variable, value in zip(self.optimizer.variables, checkpoint.optimizer,
                                       strict=True):
                variable.assign(value)
        self.step = int(checkpoint.state["step"])
        self.samples_total = int(checkpoint.state["samples_total"])
        self.skipped_steps = int(checkpoint.state.get("skipped_steps", 0))

    # -- one step ---------------------------------------------------------------------------

    def _decode(self, records: list[Record]) -> tuple[np.ndarray, list[Record]]:
        """Rows to train on, and the records they came from (rejected ones go to the DLQ)."""
        rows, rejected = self.codec.decode([r.payload for r in records])
        for item in rejected:
            self.dead_letters.send(records[item.index], item)
        if rejected:
            dropped = {item.index for item in rejected}
            return rows, [r for i, r in enumerate(records) if i not in dropped]
        return rows, records

    def _local_flags(self, last_save: float, idle_since: float) -> dict[str, int]:
        flags = self.controls.take()
        every = self.config.checkpoint.every_seconds
        if self.world.is_chief and every > 0 and time.monotonic() - last_save >= every:
            flags["save"] = 1
        timeout = self.config.train.idle_timeout_s
        if timeout > 0 and time.monotonic() - idle_since >= timeout:
            flags["idle"] = 1
        return flags

    def _stop_reason(self, flags: dict[str, float]) -> str | None:
        train = self.config.train
        for name in ("sigterm", "stop", "idle"):
            if flags[name] > 0:
                return name
        if train.max_samples and self.samples_total >= train.max_samples:
            return "max_samples"
        if train.max_steps and self.step >= train.max_steps:
            return "max_steps"
        return None

    def save(self) -> str | None:
        """Collective: every rank calls it at the same step. Rank 0 writes; then every rank
        acknowledges what the checkpoint covers (the broker may forget it now)."""
        positions: dict[int, str] = {}
        for part in distributed.allgather_object(self.cut.positions()):
            positions.update(part)
        path = None
        if self.world.is_chief:
            state = {"samples_total": self.samples_total, "skipped_steps": self.skipped_steps,
                     "positions": {str(k): v for k, v in sorted(positions.items())},
                     "world_size": self.world.size, "digest": weights_digest(self.model)}
            path = str(save_checkpoint(self.checkpoint_root, self.step, self.model.get_weights(),
                                       [v.numpy() for v in self.optimizer.variables], state,
                                       self.config.checkpoint.keep))
        path = distributed.broadcast_object(path)  # also a barrier: written before we ack
        for partition, record in self.cut.records.items():
            self._source_of[partition].acknowledge(record)
        return path

    def run(self) -> Iterator[StepReport]:
        start = last_save = idle_since = time.monotonic()
        self._recent = deque([(start, self.samples_total)], maxlen=RATE_WINDOW_STEPS)
        last_step_time, last_fill = 0.0, 0.0
        first_step = True
        every_steps = self.config.checkpoint.every_steps
        batch_size = self.config.window.batch_size
        while True:
            t0 = time.monotonic()
            records = self.window.collect()
            rows, accepted = self._decode(records)
            schema = self.template.schema
            local = self.layout.local(
                self.world.rank, self._local_flags(last_save, idle_since), last_step_time,
                last_fill, self._partition_state(), self.dead_letters.total, self._duplicates())
            x = np.ascontiguousarray(rows[schema.features])
            y = np.ascontiguousarray(rows[schema.label])
            summed, applied, _finite = self.sync_step(x, y, local)
            stats = self.layout.decode(summed)
            self.step += 1
            if applied:
                self.samples_total += stats.count
            elif stats.count:
                self.skipped_steps += 1
            self.cut.advance(records)
            if applied:
                self._record_freshness(accepted)
                for hook in self.hooks:
                    hook.on_applied(self.step, rows)
            now = time.monotonic()
            if stats.count:
                idle_since = now
            if first_step:
                first_step = False
                log.info("rank %d: first step done %.1f s after start (tracing included)",
                         self.world.rank, now - start)
            last_step_time, last_fill = now - t0, len(rows) / batch_size
            stopped = self._stop_reason(stats.flags)
            checkpoint = None
            if stats.flags["save"] > 0 or stopped or (every_steps and self.step % every_steps == 0):
                checkpoint = self.save()
                last_save = time.monotonic()
            report = self._report(stats, applied, now - start, checkpoint, stopped)
            if self.drift is not None and report.count and self.drift.update(report.loss):
                report = dataclasses.replace(report, drift=True)
            for hook in self.hooks:
                hook.on_report(report, self.model)
            yield report
            if stopped:
                return

    def _report(self, stats: Any, applied: bool, elapsed: float, checkpoint: str | None,
                stopped: str | None) -> StepReport:
        n = stats.count
        return StepReport(
            step=self.step, count=n, samples_total=self.samples_total,
            loss=stats.loss_sum / n if n else math.nan,
            metric=stats.metric_sum / n if n else math.nan,
            applied=applied, elapsed_s=elapsed,
            samples_per_s=self._recent_rate(),
            rank_step_time_s=stats.rank_step_time_s, rank_fill=stats.rank_fill,
            partition_backlog=stats.partition_backlog, partition_lag_ms=stats.partition_lag_ms,
            rejected_total=stats.rejected,
            duplicates_total=stats.duplicates, skipped_steps=self.skipped_steps,
            checkpoint=checkpoint, stopped=stopped,
        )

    def _record_freshness(self, records: list[Record]) -> None:
        if not records:
            return
        now_ms = time.time() * 1000
        latency = np.fromiter((now_ms - r.publish_ms for r in records), np.float64, len(records))
        samples = np.fromiter((self.codec.count_samples(r.payload) for r in records), np.int64,
                              len(records))
        self.freshness.add(latency, samples)

    def _recent_rate(self) -> float:
        """Samples/s over the last RATE_WINDOW_STEPS steps (a rate that follows the stream)."""
        self._recent.append((time.monotonic(), self.samples_total))
        (t0, n0), (t1, n1) = self._recent[0], self._recent[-1]
        return (n1 - n0) / (t1 - t0) if t1 > t0 else 0.0

    def _partition_state(self) -> dict[int, tuple[int, int]]:
        return {s.partition: (s.backlog(), s.lag_ms()) for s in self.sources}

    def _duplicates(self) -> int:
        return sum(s.stats().get("duplicates", 0) for s in self.sources)
