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

import hashlib
import logging
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from hvd_online.config import Config
from hvd_online.drift.detectors import Signal
from hvd_online.drift.response import Challenger, DriftResponse, Response, make_detector
from hvd_online.inputs.batch import Batch, StepInput
from hvd_online.model.template import ModelTemplate, build_model
from hvd_online.state.checkpoint import Resume, save_checkpoint
from hvd_online.state.run_dir import RunLayout
from hvd_online.state.run_state import RunState, Stateful
from hvd_online.sync import collectives
from hvd_online.sync.collectives import SyncStep, World
from hvd_online.sync.control import Controls, Flag
from hvd_online.sync.local_sgd import LocalSGD
from hvd_online.sync.stats_vector import StatsLayout
from hvd_online.training.freshness import FreshnessHistogram
from hvd_online.training.reports import StepReport

RATE_WINDOW_STEPS = 50
log = logging.getLogger(__name__)

#: runs inside the step, right after an update that trained `rows` and before any checkpoint
#: of that step (the sample ledger of the tests is one)
StepHook = Callable[[int, np.ndarray], None]


def weights_digest(model: keras.Model) -> str:
    """sha256 over all weights: equal on every rank when ranks are in sync."""
    h = hashlib.sha256()
    for w in model.get_weights():
        h.update(np.ascontiguousarray(w).tobytes())
    return h.hexdigest()


class OnlineTrainer:
    def __init__(self, config: Config, template: ModelTemplate, world: World,
                 step_input: StepInput, partitions: int, controls: Controls | None = None,
                 step_hooks: Sequence[StepHook] = (), resume: Resume | None = None) -> None:
        self.config = config
        self.template = template
        self.world = world
        self.input = step_input
        self.sources = step_input.sources
        self.controls = controls or Controls()
        self.step_hooks = list(step_hooks)
        self.layout = StatsLayout(world.size, partitions, step_input.counters)
        self.checkpoint_root = RunLayout.of(config).checkpoints
        keras.utils.set_random_seed(config.train.seed)
        self.model = build_model(template, config.model.pretrained)
        self.optimizer = template.make_optimizer(config.train.learning_rate)
        schema = template.schema
        specs = (tf.TensorSpec((None, *schema.feature_shape), schema.dtype[schema.features].base),
                 tf.TensorSpec((None, *schema.label_shape), schema.dtype[schema.label].base))
        self.drift = self._make_drift_response(specs)
        #: operators whose state a checkpoint carries, by key
        self.operators: dict[str, Stateful] = dict(step_input.operators)
        if self.drift:
            self.operators["drift"] = self.drift
        state = resume.state if resume else RunState()
        self.step = state.step
        self.samples_total = state.samples_total
        self.skipped_steps = state.skipped_steps
        #: checkpoints the disk refused in this process (rank 0 logs why)
        self.checkpoint_failures = 0
        for key, operator in self.operators.items():
            if key in state.operators:
                operator.restore(state.operators[key])
        if resume is not None and resume.checkpoint is not None:  # rank 0 holds the arrays
            self.model.set_weights(resume.checkpoint.weights)
            self.optimizer.build(self.model.trainable_variables)
            for variable, value in zip(self.optimizer.variables, resume.checkpoint.optimizer,
                                       strict=True):
                variable.assign(value)
        collectives.broadcast_initial_state(self.model, self.optimizer)
        if self.drift:  # a challenger running at the checkpoint comes back on every rank
            self.drift.restore_arrays(resume.checkpoint.extra
                                      if resume and resume.checkpoint else None)
        step_args = (self.model, self.optimizer, template.per_sample_loss,
                     template.per_sample_metric, *specs, self.layout.length, world.size)
        self.sync_every = config.train.sync_every
        #: one synchronised step (sync_every 1), or local SGD's steps and averaging
        self.sync_step = SyncStep(*step_args) if self.sync_every == 1 else None
        self.local_sgd = LocalSGD(*step_args) if self.sync_every > 1 else None
        model = self.model

        @tf.function(reduce_retracing=True)
        def forward(x: tf.Tensor) -> tf.Tensor:
            return model(x, training=False)

        #: the live weights' predictions, on the training thread (raw event streams)
        self.predict = lambda x: forward(x).numpy()
        #: publish -> applied latency of this rank's trained samples
        self.freshness = FreshnessHistogram()

    def _make_drift_response(self, specs: tuple[tf.TensorSpec, tf.TensorSpec],
                             ) -> DriftResponse | None:
        config = self.config.drift
        detector = make_detector(config)
        if detector is None:
            return None
        lr = self.config.train.learning_rate
        challenger = (Challenger(self.template, config, lr, specs, self.world.size)
                      if config.action == "challenger" else None)
        return DriftResponse(config, detector, self.model, self.optimizer, lr, challenger)

    # -- one step ---------------------------------------------------------------------------

    def _local_flags(self, last_save: float, idle_since: float, took: int) -> set[Flag]:
        flags = self.controls.take()
        every = self.config.checkpoint.every_seconds
        if self.world.is_chief and every > 0 and time.monotonic() - last_save >= every:
            flags.add(Flag.SAVE)
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
        if train.max_samples and self.samples_total >= train.max_samples:
            return "max_samples"
        if train.max_steps and self.step >= train.max_steps:
            return "max_steps"
        return None

    def save(self) -> str | None:
        """Collective: every rank calls it at the same step. Each rank's sources and operators
        snapshot themselves; rank 0 writes them with the arrays; then every source commits
        its snapshot (the broker may forget what it covers)."""
        sources = {source.key: source.snapshot() for source in self.sources}
        operators = {key: operator.snapshot() for key, operator in self.operators.items()}
        path = None
        gathered = collectives.allgather_object((sources, operators))
        if self.world.is_chief:
            state = RunState(
                step=self.step, samples_total=self.samples_total,
                skipped_steps=self.skipped_steps, world_size=self.world.size,
                digest=weights_digest(self.model),
                sources={k: v for part, _ in gathered for k, v in sorted(part.items())},
                operators={k: v for _, part in gathered for k, v in sorted(part.items())})
            path = self._write_checkpoint(state)
        path = collectives.broadcast_object(path)  # also a barrier: written before we commit
        if path is None:  # not durable: the broker must keep everything after the last one
            self.checkpoint_failures += 1
            return None
        for source in self.sources:
            source.commit(sources[source.key])
        return path

    def _write_checkpoint(self, state: RunState) -> str | None:
        """Rank 0: the checkpoint's path, or None when the disk refused it (full, read-only,
        gone). Training goes on; the next save tries again."""
        try:
            return str(save_checkpoint(self.checkpoint_root, self.model.get_weights(),
                                       [v.numpy() for v in self.optimizer.variables], state,
                                       self.config.checkpoint.keep,
                                       self.drift.arrays() if self.drift else None))
        except OSError as err:
            log.error("CHECKPOINT FAILED at step %d: %s. Nothing after the last durable "
                      "checkpoint is acknowledged; training goes on and the next save tries "
                      "again.", state.step, err)
            return None

    def run(self) -> Iterator[StepReport]:
        start = last_save = idle_since = time.monotonic()
        self._recent = deque([(start, self.samples_total)], maxlen=RATE_WINDOW_STEPS)
        last_step_time, last_fill = 0.0, 0.0
        every_steps = self.config.checkpoint.every_steps
        batch_size = self.config.window.batch_size
        schema = self.template.schema
        first_step = True
        #: flags raised and input sums since the last step that reached every rank
        flags: set[Flag] = set()
        sums: Counter[str] = Counter()
        while True:
            t0 = time.monotonic()
            batch = self.input.take(self.step, self.predict)
            rows = batch.rows
            flags |= self._local_flags(last_save, idle_since, len(rows))
            sums.update(batch.sums)
            x = np.ascontiguousarray(rows[schema.features])
            y = np.ascontiguousarray(rows[schema.label])
            self.step += 1
            if self.local_sgd is not None:
                if self.local_sgd.train(x, y):
                    self._trained(batch)
                last_step_time, last_fill = time.monotonic() - t0, len(rows) / batch_size
                if self.step % self.sync_every:
                    continue  # not an averaging step: nothing reaches the other ranks
            local = self.layout.local(
                self.world.rank, flags, last_step_time, last_fill, self._partition_state(),
                self.dead_letters(), self._duplicates(), sums)
            flags, sums = set(), Counter()
            if self.sync_step is not None:
                summed, applied, _finite = self.sync_step(x, y, local)
                count = self.layout.count(summed)
                if applied:
                    self._trained(batch)
                skipped = int(bool(count) and not applied)
            else:
                assert self.local_sgd is not None
                summed, skipped = self.local_sgd.average(local)
                count = self.layout.count(summed)
                applied = count > 0
            fields = self.layout.report_fields(summed)
            fields.update(self.input.report_fields(self.layout.sums(summed)))
            if applied:
                self.samples_total += count
            self.skipped_steps += skipped
            now = time.monotonic()
            if count:
                idle_since = now
            if first_step:
                first_step = False
                log.info("rank %d: first step done %.1f s after start (tracing included)",
                         self.world.rank, now - start)
            if self.sync_step is not None:
                last_step_time, last_fill = now - t0, len(rows) / batch_size
            # the drift response acts on this step before a checkpoint of it is taken
            response = (self.drift.after_step(x, y, fields["loss"], count)
                        if self.drift and applied else None)
            step_flags = self.layout.flags(summed)
            stopped = self._stop_reason(step_flags)
            checkpoint = None
            periodic = every_steps and (self.step // every_steps
                                        > (self.step - self.sync_every) // every_steps)
            if Flag.SAVE in step_flags or stopped or periodic:
                checkpoint = self.save()
                last_save = time.monotonic()
            yield StepReport(
                step=self.step, samples_total=self.samples_total, applied=applied,
                elapsed_s=now - start, samples_per_s=self._recent_rate(),
                skipped_steps=self.skipped_steps, checkpoint=checkpoint, stopped=stopped,
                checkpoint_failures=self.checkpoint_failures,
                **self._drift_fields(response), **fields)
            if stopped:
                return

    def _trained(self, batch: Batch) -> None:
        """This rank's `batch` is in the weights now: the hooks see it before any checkpoint."""
        self._record_freshness(batch)
        for hook in self.step_hooks:
            hook(self.step, batch.rows)

    @staticmethod
    def _drift_fields(response: Response | None) -> dict[str, Any]:
        if response is None:
            return {}
        return {"drift": response.signal is Signal.DRIFT, "drift_action": response.action,
                "challenger_loss": response.challenger_loss}

    def _record_freshness(self, batch: Batch) -> None:
        if len(batch.sizes):
            self.freshness.add(time.time() * 1000 - batch.published_ms, batch.sizes)

    def _recent_rate(self) -> float:
        """Samples/s over the last RATE_WINDOW_STEPS steps (a rate that follows the stream)."""
        self._recent.append((time.monotonic(), self.samples_total))
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
