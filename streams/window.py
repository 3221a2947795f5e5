"""Batching window per rank: a count window and a time window, whichever closes first.

This is the seed's Flink count window done in-process. The window polls its partitions
round-robin so a busy partition cannot starve a quiet one, and sleeps on the sources'
shared `arrived` event instead of spinning.

>>> from streams.source import TestingSource
>>> a = TestingSource(0, [b"a1", b"a2", b"a3"])
>>> b = TestingSource(1, [b"b1"])
>>> window = BatchWindow([a, b], batch_size=3, max_wait_s=0.01)
>>> [r.payload for r in window.collect()]
[b'a1', b'b1', b'a2']
>>> [r.payload for r in window.collect()]
[b'a3']
>>> window.collect()
[]
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

from streams.errors import StreamsError
from streams.source import PartitionSource, Record


class BatchWindow:
    def __init__(
        self,
        sources: Sequence[PartitionSource],
        batch_size: int,
        max_wait_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if batch_size < 1:
            msg = f"batch_size must be >= 1, got {batch_size}"
            raise StreamsError(msg)
        if max_wait_s < 0:
            msg = f"max_wait_s must be >= 0, got {max_wait_s}"
            raise StreamsError(msg)
        self.sources = list(sources)
        self.batch_size = batch_size
        self.max_wait_s = max_wait_s
        self.clock = clock
        self.arrived = threading.Event()
        for source in self.sources:
            source.arrived = self.arrived
        self._next = 0  # round-robin start, rotated each poll for fairness

    def _poll_once(self, out: list[Record]) -> None:
        """One pass over the sources, each giving a fair share of what is still missing."""
        n = len(self.sources)
        for i in range(n):
            missing = self.batch_size - len(out)
            if missing <= 0:
                break
            source = self.sources[(self._next + i) % n]
            out.extend(source.next_batch(max(1, missing // (n - i))))
        self._next = (self._next + 1) % max(n, 1)

    def collect(self) -> list[Record]:
        """Block until `batch_size` records are in hand or `max_wait_s` has passed."""
        out: list[Record] = []
        deadline = self.clock() + self.max_wait_s
        while True:
            self.arrived.clear()
            before = len(out)
            self._poll_once(out)
            if len(out) >= self.batch_size:
                return out
            if len(out) > before:
                continue  # sources still have data ready: keep filling before any wait
            remaining = deadline - self.clock()
            if remaining <= 0:
                return out
            # nothing ready: sleep until a source signals, or the window closes
            self.arrived.wait(remaining)
