"""The Source contract: one reader per partition, polled by the batching window.

Modelled on bytewax's partitioned input: `next_batch()` never blocks for long and returns
`[]` when nothing came; `position` is the resumable state; `close()` releases the consumer.

>>> source = TestingSource(partition=0, payloads=[b"a", b"b", TestingSource.PAUSE, b"c"])
>>> [r.payload for r in source.next_batch(10)]
[b'a', b'b']
>>> source.next_batch(10)
[]
>>> [r.payload for r in source.next_batch(10)], source.position
([b'c'], 2)
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Record:
    """One message as the trainer sees it.

    `position` orders messages within a partition (comparable); `message_id` is the broker's
    opaque id (a Pulsar MessageId) used to acknowledge and, serialized, to seek.
    """

    partition: int
    position: Any
    payload: bytes
    publish_ms: int = 0
    message_id: Any = None


class PartitionSource(ABC):
    """Reads one partition. Subclasses fill `next_batch`; the window drives them."""

    partition: int
    #: set by any source of a window when data arrives, so the window can sleep until then
    arrived: threading.Event | None = None

    @abstractmethod
    def next_batch(self, max_count: int) -> list[Record]:
        """Up to `max_count` records that are ready now; `[]` if none. Never blocks for long."""

    @property
    @abstractmethod
    def position(self) -> Hashable | None:
        """Position of the last record handed out (None before the first)."""

    def acknowledge(self, record: Record) -> None:  # noqa: B027 - optional hook
        """Tell the broker everything up to `record` is done with (cumulative)."""

    def backlog(self) -> int:
        """Records received but not yet handed out."""
        return 0

    def lag_ms(self) -> int:
        """Age of the oldest record waiting here, in ms (0 when caught up)."""
        return 0

    def stats(self) -> dict[str, int]:
        """Counters for the console and logs (e.g. duplicates dropped, backlog)."""
        return {}

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the consumer."""


@dataclass
class TestingSource(PartitionSource):
    """In-memory source for unit tests: plays `payloads`; `PAUSE` makes one poll come back
    empty (like a quiet partition); `EOF` (or running out) ends it.
    """

    __test__ = False  # not a pytest class

    PAUSE = object()
    EOF = object()

    partition: int
    payloads: Iterable[Any]
    acked: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._items = list(self.payloads)
        self._cursor = 0
        self._position: int | None = None

    def next_batch(self, max_count: int) -> list[Record]:
        out: list[Record] = []
        while len(out) < max_count and self._cursor < len(self._items):
            item = self._items[self._cursor]
            if item is self.EOF:
                break
            if item is self.PAUSE:
                if not out:  # the pause itself is one empty poll
                    self._cursor += 1
                break
            self._cursor += 1
            position = 0 if self._position is None else self._position + 1
            self._position = position
            out.append(Record(self.partition, position, item, int(time.time() * 1000)))
        return out

    @property
    def position(self) -> int | None:
        return self._position

    def acknowledge(self, record: Record) -> None:
        self.acked.append(record.position)

    @property
    def exhausted(self) -> bool:
        return self._cursor >= len(self._items) or self._items[self._cursor] is self.EOF
