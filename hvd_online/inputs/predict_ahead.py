"""Predictions first: a thread of its own reads the event partitions, predicts every event with
a copy of the weights and publishes the predictions, then hands the predicted events to the
training thread, which joins them with their labels at its next step.

Why a thread: on the training thread an event waited for the step before it (its allreduce
waits for the slowest rank, and a hot partition makes one rank slow), so under skew its
prediction waited up to a second. Here a prediction waits only for the events read with it
(one pass over the partitions, each giving at most its share of a window) and for the copy's
lock, which a refresh of the weights holds between two steps (`model/prediction_copy.py`).
The Horovod collectives and most of a step run without Python's lock, so the two threads
mostly overlap.

Exactly once is untouched: the stage only reads ahead. A checkpoint covers what a step has
*taken* from the hand-over (`HandedOver.snapshot`), so events predicted but not yet taken are
read, and predicted, again after a crash, like every event after the last checkpoint. Dead
letters are sent when a step takes them, as before. What waits in the hand-over is bounded
(`AHEAD_WINDOWS` windows on a live stream, one on a backlog); when it is full the stage stops
reading and the client's receiver queue (then the broker) holds the rest: a slow trainer
delays predictions, it never drops them. A step takes every predicted event waiting, so a
rank behind a live stream (the one with the hot partition) catches up in larger steps.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from hvd_online.inputs.batch import decode
from hvd_online.model.prediction_copy import PredictionCopy
from streams.codecs import Codec, Rejected
from streams.schema import EventSchema
from streams.source import Messages, PartitionSource, Record
from streams.window import POLL_S

log = logging.getLogger(__name__)

#: predicted events waiting for a step, at most, in windows of `batch_size` samples, once
#: the stream is live; while the backlog a start or restart found is replayed (records
#: published before the stage started), one window, so that a replay is predicted by weights
#: no older than on the training thread (predicted many windows ahead, the clicks test's AUC
#: fell from 0.62 to 0.55). (Not by a record's age: a rank behind a live stream would then
#: shrink its room just when it needs it.)
AHEAD_WINDOWS = 32

#: how long a thread may hold Python's lock while another waits for it (Python's default is
#: 5 ms): the training thread's join work is Python, and each time the stage waited for the
#: lock behind it, a prediction waited up to this long (skewed stream at 5,000/s: p99 97 ms
#: at 5 ms, 52 ms at 1 ms)
SWITCH_INTERVAL_S = 0.001

#: publishes each event's prediction message (keys, outputs, weights' step, event times)
Publish = Callable[[np.ndarray, np.ndarray, int, np.ndarray], None]


@dataclass(frozen=True)
class Predicted:
    """One partition's events of one pass, decoded and predicted."""

    partition: int
    #: every message read, in order (the last one is what a checkpoint may cover next)
    messages: Messages
    rows: np.ndarray  # the event rows that decoded
    times: np.ndarray  # each row's time (ms): its event time, or its message's publish time
    outputs: np.ndarray  # the model's outputs for `rows`, (rows, outputs) float32
    rejected: list[tuple[Record, Rejected]]  # what goes to the dead-letter topic

    @property
    def samples(self) -> int:
        return len(self.rows)


class HandedOver(PartitionSource):
    """An event partition as checkpoints see it: read by the stage, snapshot at what a step
    took."""

    def __init__(self, inner: PartitionSource) -> None:
        self.inner = inner
        self.partition, self.key = inner.partition, inner.key
        #: the id of the last message a step took (what the next snapshot covers)
        self.taken: Any = None
        #: predicted, not yet taken: (messages, oldest publish ms) kept by the stage
        self.waiting: deque[tuple[int, int]] = deque()

    def next_batch(self, max_count: int) -> Messages:
        return self.inner.next_batch(max_count)

    def snapshot(self) -> str | None:
        return self.inner.snapshot_through(self.taken)

    def commit(self, snapshot: str | None) -> None:
        self.inner.commit(snapshot)

    def backlog(self) -> int:
        return self.inner.backlog() + sum(count for count, _ in list(self.waiting))

    def lag_ms(self) -> int:
        waiting = list(self.waiting)
        if not waiting:
            return self.inner.lag_ms()
        return max(0, int(time.time() * 1000) - waiting[0][1])

    def stats(self) -> dict[str, int]:
        return self.inner.stats()

    def connected(self) -> bool:
        return self.inner.connected()

    def close(self) -> None:
        self.inner.close()


class PredictAhead:
    def __init__(self, sources: Sequence[PartitionSource], codec: Codec, schema: EventSchema,
                 publish: Publish, batch_size: int) -> None:
        self.sources = [HandedOver(s) for s in sources]
        self.codec, self.schema, self.publish = codec, schema, publish
        self.batch_size = batch_size
        self._live_room = AHEAD_WINDOWS * batch_size
        self._room = batch_size  # until a pass shows the stream is live
        self._started_ms = 0
        self._queue: deque[Predicted] = deque()
        self._queued = 0  # samples in the queue
        self._ready = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._copy: PredictionCopy | None = None
        self._per_message = 1  # samples per message, the largest seen
        self._index = {s.partition: i for i, s in enumerate(self.sources)}
        self._pass_started: float | None = None  # monotonic, while a pass is under way
        self.failure: BaseException | None = None

    # -- the training thread ------------------------------------------------------------------

    def start(self, copy: PredictionCopy) -> None:
        self._copy = copy
        self._started_ms = int(time.time() * 1000)  # publish times are whole ms
        self._switch_interval = sys.getswitchinterval()
        sys.setswitchinterval(SWITCH_INTERVAL_S)
        self._thread = threading.Thread(target=self._run, daemon=True, name="predict-ahead")
        self._thread.start()

    def stop(self) -> None:
        """The stage ends after the pass under way (handed over); `take` then returns what
        waits without waiting for more. Twice is fine."""
        self._stop.set()
        with self._ready:
            self._ready.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=10)
            sys.setswitchinterval(self._switch_interval)
            self._thread = None

    def refresh(self, step: int) -> None:
        """Between steps: the stage predicts with the weights of `step` from now on."""
        assert self._copy is not None, "start() comes first"
        self._copy.refresh(step)

    def take(self, max_wait_s: float) -> list[Predicted]:
        """Predicted events for one step: every one waiting, once there are `batch_size` or
        `max_wait_s` has passed (at most a window and a pass on a backlog)."""
        if self.failure is not None:
            raise RuntimeError("the predictions stage failed") from self.failure
        deadline = time.monotonic() + max_wait_s
        with self._ready:
            while True:
                remaining = deadline - time.monotonic()
                if (self._queued >= self.batch_size or remaining <= 0
                        or self._stop.is_set()):
                    break
                self._ready.wait(remaining)
            taken = list(self._queue)
            self._queue.clear()
            self._queued = 0
            for item in taken:
                self._handed_over(item)
            self._ready.notify_all()  # room again for the stage
        return taken

    def busy_s(self) -> float:
        """How long the stage has been in its current pass (0 between passes). A pass that
        lasts is a stage held up (its publish blocked: the predictions producer's queue full
        while the broker is away), not an event stream gone quiet: the join must not
        count silence on the events side as idle meanwhile (the soak lost 8 clicks to that
        after a broker restart)."""
        started = self._pass_started
        return 0.0 if started is None else time.monotonic() - started

    def _handed_over(self, item: Predicted) -> None:
        source = self.sources[self._index[item.partition]]
        source.taken = item.messages.last_id
        source.waiting.popleft()

    # -- the stage's thread --------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                if not self._wait_for_room():
                    return
                self._pass_started = time.monotonic()
                items = self._read_pass()
                if items:
                    self._predict_and_hand_over(items)
                self._pass_started = None
                if not items:
                    self._stop.wait(POLL_S)
        except BaseException as err:  # noqa: BLE001 - raised on the training thread's take
            log.exception("the predictions stage failed")
            self.failure = err

    def _wait_for_room(self) -> bool:
        with self._ready:
            while self._queued >= self._room and not self._stop.is_set():
                self._ready.wait(0.1)
        return not self._stop.is_set()

    def _read_pass(self) -> list[tuple[HandedOver, Messages]]:
        """Each partition's share of a window (a hot partition cannot hold back the others'
        predictions: each pass takes at most this much of it)."""
        share = max(1, -(-self.batch_size // (len(self.sources) * self._per_message)))
        got = []
        for source in self.sources:
            messages = source.next_batch(share)
            if messages:
                got.append((source, messages))
        if got:
            newest = max(messages.publish_ms[-1] for _, messages in got)
            live = newest >= self._started_ms
            self._room = self._live_room if live else self.batch_size
        return got

    def _predict_and_hand_over(self, reads: list[tuple[HandedOver, Messages]]) -> None:
        decoded = []
        for source, messages in reads:
            part = decode(self.codec, [messages])
            if len(part.sizes):
                self._per_message = max(self._per_message, int(part.sizes.max()))
            decoded.append((source, messages, part.rows, part.row_times(self.schema.time),
                            part.rejected))
        rows = np.concatenate([d[2] for d in decoded])
        times = np.concatenate([d[3] for d in decoded])
        assert self._copy is not None
        outputs = np.zeros((len(rows), 1), np.float32)
        if len(rows):
            outputs, step = self._copy.predict(np.ascontiguousarray(rows[self.schema.features]))
            outputs = np.asarray(outputs, np.float32).reshape(len(rows), -1)
            self.publish(rows[self.schema.key], outputs, step, times)
        items, start = [], 0
        for source, messages, part_rows, part_times, bad in decoded:
            end = start + len(part_rows)
            items.append(Predicted(source.partition, messages, part_rows, part_times,
                                   outputs[start:end], bad))
            start = end
        with self._ready:
            for (source, messages, *_), item in zip(decoded, items, strict=True):
                self._queue.append(item)
                source.waiting.append((len(messages), messages.publish_ms[0]))
                self._queued += item.samples
            self._ready.notify_all()
