"""Event/label join for one partition: events wait for their label, or expire.

An event (key, event time, value) arrives first; its label (key, label time, value) comes
later on another topic, or never. Both topics are routed by `key % P`, so partition p of both
lives on one rank and this join needs no shuffle. Out of order on either side is fine: a
label that comes before its event waits for it.

**Time.** Event time in ms (the producers' clocks). The watermark is the slower input's
progress minus `lateness_ms`: `min(newest event time, newest label time) - lateness_ms`,
never moving back. An input with nothing new for `idle_ms` (processing time, counted from
its last message, from the first `push` after the start/restore of this join, or from the
moment a disconnected source is back: the producer's queue may come later) no longer
holds the watermark back: its progress is taken as `now - idle_ms`. So a sparse label stream
does not stall expiry and the tail of a finished stream expires. But not while a source is
disconnected (a broker outage is not silence: what was published meanwhile comes later), nor
while a backlog is replayed (the newest record taken was published `idle_ms` or more ago, as
`push` is told): then a silent input is more likely not yet delivering than idle, so the data
alone decides until every input has gone quiet (the backlog is drained). Without that, after
a restart the wall clock ran ahead of the replayed event times: restored events expired
before their labels were read, and replayed events were dropped as late (seen in a 2-rank
relaunch).

**Decisions**, the same whatever order the two inputs interleave in (within the lateness):
- a pair joins when its label time is at most `window_ms` after its event time;
- an event expires when the watermark passes event time + `window_ms`; its caller trains it
  with the expiry label or drops it (`[join] on_expiry`);
- when more than `max_pending` events wait, the oldest expire early (counted);
- an event already behind the watermark by `window_ms` on arrival is late: dropped, counted;
- a label that came more than `window_ms` after its event, after its event expired (or was
  pushed out early by `max_pending`), or at or behind the watermark on arrival (its event, if
  there was one, is no longer remembered) is late: dropped, counted;
- a label that waited and whose event never came before the watermark passed the label's own
  time is an orphan: dropped, counted (so orphans count labels lacking their event);
- a second event or label for a key that is pending or done is a duplicate: dropped, counted.
  Finished keys are remembered until the watermark passes their event time by
  `REMEMBER_WINDOWS` windows: a label later than that after its event is counted as an orphan
  (telling it from a label whose event never came needs the key).

>>> from streams.testing import FakeClock
>>> clock = FakeClock(0)
>>> join = EventLabelJoin(window_ms=1000, lateness_ms=0, idle_ms=10_000, clock=clock)
>>> out = join.push(events=[(1, 100, b"e1"), (2, 200, b"e2")], labels=[(2, 700, b"y2")])
>>> [(j.key, j.label, j.delay_ms) for j in out.joined], out.expired
([(2, b'y2', 500)], [])
>>> out = join.push(events=[(3, 1500, b"e3")], labels=[(3, 1600, b"y3")])
>>> [j.key for j in out.joined], [(e.key, e.value) for e in out.expired]
([3], [(1, b'e1')])
>>> restored = EventLabelJoin(window_ms=1000, lateness_ms=0, idle_ms=10_000, clock=clock)
>>> restored.restore(join.snapshot()); restored.snapshot() == join.snapshot()
True
"""

from __future__ import annotations

import base64
import heapq
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from streams.errors import StreamsError

#: (key, time in ms, value): one event or one label as the join takes it
Item = tuple[int, int, bytes]
#: how many windows past its event time a finished key is remembered (see "Decisions")
REMEMBER_WINDOWS = 3
COUNTERS = ("events", "labels", "joined", "expired", "expired_early", "late_events",
            "late_labels", "orphan_labels", "duplicate_events", "duplicate_labels")


@dataclass(frozen=True)
class Joined:
    key: int
    event_time_ms: int
    event: bytes
    label: bytes
    #: label time - event time
    delay_ms: int


@dataclass(frozen=True)
class Expired:
    key: int
    event_time_ms: int
    value: bytes
    #: pushed out by `max_pending` before its window closed
    early: bool = False


@dataclass
class JoinOutput:
    joined: list[Joined] = field(default_factory=list)
    expired: list[Expired] = field(default_factory=list)


def samples_to_train(out: JoinOutput, on_expiry: str,
                     expiry_label: bytes | None = None) -> list[tuple[int, bytes, bytes]]:
    """(key, event, label) of every sample a push produced: the joined pairs, then the
    expired events with `expiry_label` when `on_expiry == "label"` (dropped for "drop").

    >>> out = JoinOutput([Joined(1, 0, b"e1", b"y1", 5)], [Expired(2, 0, b"e2")])
    >>> samples_to_train(out, "label", b"0"), samples_to_train(out, "drop")
    ([(1, b'e1', b'y1'), (2, b'e2', b'0')], [(1, b'e1', b'y1')])
    """
    samples = [(j.key, j.event, j.label) for j in out.joined]
    if on_expiry == "label":
        if expiry_label is None:
            msg = 'on_expiry = "label" needs an expiry_label'
            raise StreamsError(msg)
        samples += [(e.key, e.value, expiry_label) for e in out.expired]
    elif on_expiry != "drop":
        msg = f'on_expiry must be "drop" or "label", got {on_expiry!r}'
        raise StreamsError(msg)
    return samples


def _wall_ms() -> float:
    return time.time() * 1000


class EventLabelJoin:
    def __init__(self, window_ms: int, lateness_ms: int = 1000, idle_ms: int = 5000,
                 max_pending: int = 1_000_000,
                 clock: Callable[[], float] = _wall_ms) -> None:
        if window_ms <= 0 or lateness_ms < 0 or idle_ms <= 0 or max_pending < 1:
            msg = (f"join needs window_ms > 0, lateness_ms >= 0, idle_ms > 0, max_pending >= 1;"
                   f" got {window_ms}, {lateness_ms}, {idle_ms}, {max_pending}")
            raise StreamsError(msg)
        self.window_ms = window_ms
        self.lateness_ms = lateness_ms
        self.idle_ms = idle_ms
        self.max_pending = max_pending
        self.clock = clock
        self.counts: Counter[str] = Counter({name: 0 for name in COUNTERS})
        self._events: dict[int, tuple[int, bytes]] = {}  # key -> (event time, value)
        self._labels: dict[int, tuple[int, bytes]] = {}  # key -> (label time, value)
        self._event_heap: list[tuple[int, int]] = []  # (event time, key); stale entries skipped
        self._label_heap: list[tuple[int, int]] = []
        self._done: dict[int, tuple[int, str]] = {}  # key -> (event time, "joined"|"expired")
        self._done_heap: list[tuple[int, int]] = []
        self._newest = [-(2**62), -(2**62)]  # newest event time, newest label time
        self.watermark = -(2**62)
        self._restart_idle_timers()

    def _restart_idle_timers(self) -> None:
        """Idle time counts from the first push (the caller's start-up is not silence)."""
        self._last_arrival: list[float] | None = None
        self._replaying = False
        self._connected = True

    @property
    def pending_events(self) -> int:
        return len(self._events)

    @property
    def pending_labels(self) -> int:
        return len(self._labels)

    def push(self, events: Iterable[Item] = (), labels: Iterable[Item] = (),
             published_ms: float | None = None, connected: bool = True) -> JoinOutput:
        """Take what arrived (events first, then labels), then expire what the watermark
        has passed. `published_ms`: when the newest of these records was published (on
        this join's clock), if known: it tells a replayed backlog from live data.
        `connected`: False while an input's source cannot reach the broker (or cannot hand
        its records over)."""
        out = JoinOutput()
        now = self.clock()
        if self._last_arrival is None or (connected and not self._connected):
            self._last_arrival = [now, now]
        self._connected = connected
        if published_ms is not None:
            self._replaying = now - published_ms >= self.idle_ms
        for key, when, value in events:
            self._last_arrival[0] = now
            self._newest[0] = max(self._newest[0], when)
            self._add_event(key, when, value, out)
        for key, when, value in labels:
            self._last_arrival[1] = now
            self._newest[1] = max(self._newest[1], when)
            self._add_label(key, when, value, out)
        self._advance(now, out, connected)
        return out

    def _add_event(self, key: int, when: int, value: bytes, out: JoinOutput) -> None:
        self.counts["events"] += 1
        if key in self._events or key in self._done:
            self.counts["duplicate_events"] += 1
        elif when + self.window_ms <= self.watermark:
            self.counts["late_events"] += 1
        elif key in self._labels:
            label_time, label = self._labels.pop(key)
            self._join(key, when, value, label_time, label, out)
        else:
            self._events[key] = (when, value)
            heapq.heappush(self._event_heap, (when, key))

    def _add_label(self, key: int, when: int, value: bytes, out: JoinOutput) -> None:
        self.counts["labels"] += 1
        done = self._done.get(key)
        if key in self._labels or (done is not None and done[1] == "joined"):
            self.counts["duplicate_labels"] += 1
        elif done is not None:
            self.counts["late_labels"] += 1  # its event expired already
        elif key in self._events:
            event_time, event = self._events.pop(key)
            self._join(key, event_time, event, when, value, out)
        elif when <= self.watermark:
            self.counts["late_labels"] += 1  # too late to tell whether its event came
        else:
            self._labels[key] = (when, value)
            heapq.heappush(self._label_heap, (when, key))

    def _join(self, key: int, event_time: int, event: bytes, label_time: int, label: bytes,
              out: JoinOutput) -> None:
        if label_time - event_time > self.window_ms:  # the outcome came after the window
            self.counts["late_labels"] += 1
            self._events[key] = (event_time, event)  # the event waits to expire as usual
            heapq.heappush(self._event_heap, (event_time, key))
            return
        self.counts["joined"] += 1
        self._remember(key, event_time, "joined")
        out.joined.append(Joined(key, event_time, event, label, label_time - event_time))

    def _remember(self, key: int, event_time: int, outcome: str) -> None:
        self._done[key] = (event_time, outcome)
        heapq.heappush(self._done_heap, (event_time, key))

    def _advance(self, now: float, out: JoinOutput, connected: bool = True) -> None:
        assert self._last_arrival is not None  # set by push
        quiet = [now - last >= self.idle_ms for last in self._last_arrival]
        caught_up = connected and (not self._replaying or all(quiet))
        progress = [max(newest, int(now - self.idle_ms)) if idle and caught_up else newest
                    for newest, idle in zip(self._newest, quiet, strict=True)]
        self.watermark = max(self.watermark, min(progress) - self.lateness_ms)
        while self._event_heap and (self._event_heap[0][0] + self.window_ms <= self.watermark
                                    or len(self._events) > self.max_pending):
            when, key = heapq.heappop(self._event_heap)
            pending = self._events.get(key)
            if pending is None or pending[0] != when:
                continue  # joined meanwhile
            early = when + self.window_ms > self.watermark
            del self._events[key]
            self.counts["expired_early" if early else "expired"] += 1
            self._remember(key, when, "expired")
            out.expired.append(Expired(key, when, pending[1], early))
        while self._label_heap and (self._label_heap[0][0] <= self.watermark
                                    or len(self._labels) > self.max_pending):
            when, key = heapq.heappop(self._label_heap)
            if self._labels.get(key, (None,))[0] == when:
                del self._labels[key]
                self.counts["orphan_labels"] += 1
        # finished keys tell duplicates and too-late labels from orphans for a while
        horizon = self.watermark - REMEMBER_WINDOWS * self.window_ms
        while self._done_heap and self._done_heap[0][0] <= horizon:
            when, key = heapq.heappop(self._done_heap)
            if self._done.get(key, (None,))[0] == when:
                del self._done[key]

    # -- resume state ------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """Everything pending and remembered, JSON-serialisable (values base64)."""

        def encoded(items: dict[int, tuple[int, bytes]]) -> list[list[Any]]:
            return [[k, t, base64.b64encode(v).decode()] for k, (t, v) in sorted(items.items())]

        return {"watermark": self.watermark, "newest": list(self._newest),
                "events": encoded(self._events), "labels": encoded(self._labels),
                "done": [[k, t, o] for k, (t, o) in sorted(self._done.items())],
                "counts": dict(self.counts)}

    def restore(self, state: dict[str, Any]) -> None:
        def decoded(rows: list[list[Any]]) -> dict[int, tuple[int, bytes]]:
            return {int(k): (int(t), base64.b64decode(v)) for k, t, v in rows}

        self.watermark = int(state["watermark"])
        self._newest = [int(t) for t in state["newest"]]
        self._events = decoded(state["events"])
        self._labels = decoded(state["labels"])
        self._done = {int(k): (int(t), str(o)) for k, t, o in state["done"]}
        self._event_heap = sorted((t, k) for k, (t, _) in self._events.items())
        self._label_heap = sorted((t, k) for k, (t, _) in self._labels.items())
        self._done_heap = sorted((t, k) for k, (t, _) in self._done.items())
        self.counts = Counter({name: 0 for name in COUNTERS})
        self.counts.update(state["counts"])
        self._restart_idle_timers()
