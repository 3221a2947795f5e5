"""Test doubles that ship with the library (as bytewax's `TestingSource` does), so unit tests
of the window, the trainer and the operators need no broker.

>>> source = TestingSource(3, [b"a", TestingSource.PAUSE, b"b", TestingSource.EOF, b"c"])
>>> source.next_batch(5).payloads, len(source.next_batch(5))
([b'a'], 0)
>>> source.next_batch(5).payloads, source.exhausted, source.key
([b'b'], True, 'testing-3')
>>> sink = CountingSink()
>>> sink.send(Record(0, 0, b"x"), Rejected(0, "wrong size: 1 bytes"))
>>> sink.total, dict(sink.counts)
(1, {'wrong size': 1})
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

from streams.codecs import Rejected, reason_kind
from streams.source import Messages, PartitionSource, Record


class TestingSource(PartitionSource):
    """Plays `payloads` in memory; `PAUSE` makes one poll come back empty (a quiet
    partition); `EOF` (or running out) ends it. Positions count the payloads from 0; a
    source built from a snapshot skips what that snapshot covers."""

    __test__ = False  # not a pytest class

    PAUSE = object()
    EOF = object()

    def __init__(self, partition: int, payloads: Iterable[Any],
                 resume_state: str | None = None, key: str | None = None) -> None:
        self.partition = partition
        self.key = key or f"testing-{partition}"
        self._items = list(payloads)
        self._cursor = 0
        self._resume_state = resume_state
        self._position = -1 if resume_state is None else int(resume_state)
        skip = self._position + 1
        while skip and self._cursor < len(self._items):  # resume: pass over what was covered
            if self._items[self._cursor] not in (self.PAUSE, self.EOF):
                skip -= 1
            self._cursor += 1
        #: snapshots committed (a checkpoint covering them was durable)
        self.committed: list[str | None] = []

    def next_batch(self, max_count: int) -> Messages:
        out = Messages(self.partition)
        while len(out) < max_count and self._cursor < len(self._items):
            item = self._items[self._cursor]
            if item is self.EOF:
                break
            if item is self.PAUSE:
                if not out:  # the pause itself is one empty poll
                    self._cursor += 1
                break
            self._cursor += 1
            self._position += 1
            out.payloads.append(item)
            out.publish_ms.append(int(time.time() * 1000))
            out.ids.append(self._position)
        return out

    def snapshot(self) -> str | None:
        return None if self._position < 0 else str(self._position)

    def snapshot_through(self, message_id: Any) -> str | None:
        return self._resume_state if message_id is None else str(message_id)

    def commit(self, snapshot: str | None) -> None:
        self.committed.append(snapshot)

    @property
    def exhausted(self) -> bool:
        return self._cursor >= len(self._items) or self._items[self._cursor] is self.EOF


class CountingSink:
    """Keeps rejected records in memory (unit tests, and runs without a broker)."""

    def __init__(self) -> None:
        self.records: list[tuple[Record, Rejected]] = []
        self.counts: Counter[str] = Counter()

    def send(self, record: Record, rejected: Rejected) -> None:
        self.counts[reason_kind(rejected.reason)] += 1
        self.records.append((record, rejected))

    @property
    def total(self) -> int:
        return len(self.records)

    def close(self) -> None:
        pass


class ListSink:
    """Keeps published predictions in memory (the `PredictionSink` double)."""

    def __init__(self) -> None:
        self.messages: list[tuple[int, bytes]] = []

    def publish(self, keys: Sequence[int], payloads: Sequence[bytes]) -> None:
        self.messages.extend(zip((int(k) for k in keys), payloads, strict=True))

    def close(self) -> None:
        pass


class FakeClock:
    """A controllable clock in ms for tests: `clock.now = ...` or `clock.advance(ms)`."""

    def __init__(self, now_ms: float = 0.0) -> None:
        self.now = now_ms

    def advance(self, ms: float) -> None:
        self.now += ms

    def __call__(self) -> float:
        return self.now
