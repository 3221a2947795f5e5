"""Batching window per rank: a count window and a time window, whichever closes first.

Each pass asks every partition for its fair share of the samples still missing, starting from
a partition that rotates pass by pass, so a hot partition cannot starve a quiet one (and the
quiet one's few samples do not wait for the hot one's backlog). Between passes it sleeps on
the sources' shared `arrived` event, which sources that push (test doubles) set, for at most
POLL_S: sources that are polled (the Pulsar one) are asked again after that.
`batch_size` counts samples: `sample_counts(payloads)` says how many each message carries
(packed record payloads carry several), 1 each by default. A window is the list of batches
its polls returned (`Messages`, one partition each).

>>> from streams.testing import TestingSource
>>> a = TestingSource(0, [b"a1", b"a2", b"a3"])
>>> b = TestingSource(1, [b"b1"])
>>> window = BatchWindow([a, b], batch_size=3, max_wait_s=0.01)
>>> [m.payloads for m in window.collect()]
[[b'a1'], [b'b1'], [b'a2']]
>>> [m.payloads for m in window.collect()]
[[b'a3']]
>>> window.collect()
[]
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

import numpy as np

from streams.errors import StreamsError
from streams.source import Messages, PartitionSource

#: the longest a window sleeps between polls when nothing is ready (added latency, at most;
#: an idle rank polls its partitions this often)
POLL_S = 0.001


class BatchWindow:
    def __init__(
        self,
        sources: Sequence[PartitionSource],
        batch_size: int,
        max_wait_s: float,
        clock: Callable[[], float] = time.monotonic,
        sample_counts: Callable[[Sequence[bytes]], np.ndarray] | None = None,
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
        self.sample_counts = sample_counts
        # samples per message (largest of the last poll) turns missing samples into a number
        # of messages to ask for; unknown until the first message, so that one is asked alone
        self._per_message: int | None = None if sample_counts else 1
        self.arrived = threading.Event()
        for source in self.sources:
            source.arrived = self.arrived
        self._next = 0  # round-robin start, rotated each poll for fairness

    def _poll_once(self, out: list[Messages], filled: int) -> int:
        """One pass over the sources, each giving a fair share of the samples still missing;
        returns how many samples `out` holds now."""
        n = len(self.sources)
        for i in range(n):
            missing = self.batch_size - filled
            if missing <= 0:
                break
            source = self.sources[(self._next + i) % n]
            if self._per_message is None:
                want = 1
            else:
                want = max(1, -(-missing // self._per_message) // (n - i))
            got = source.next_batch(want)
            if not got:
                continue
            out.append(got)
            if self.sample_counts is None:
                filled += len(got)
            else:
                sizes = self.sample_counts(got.payloads)
                filled += int(sizes.sum())
                self._per_message = int(sizes.max())
        self._next = (self._next + 1) % max(n, 1)
        return filled

    def collect(self) -> list[Messages]:
        """Block until `batch_size` samples are in hand or `max_wait_s` has passed (messages are
        not split: with equal-size messages a window overshoots by less than one message)."""
        out: list[Messages] = []
        filled = 0
        deadline = self.clock() + self.max_wait_s
        while True:
            self.arrived.clear()
            before = filled
            filled = self._poll_once(out, filled)
            if filled >= self.batch_size:
                return out
            if filled > before:
                continue  # sources still have data ready: keep filling before any wait
            remaining = deadline - self.clock()
            if remaining <= 0:
                return out
            # nothing ready: sleep until a source signals, the next poll, or the window closes
            self.arrived.wait(min(remaining, POLL_S))
