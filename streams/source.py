"""The Source contract: one reader per partition, polled by the batching window.

Modelled on bytewax's `StatefulSourcePartition`: `next_batch()` never blocks for long and
returns an empty batch when nothing came. A source owns its resume state: `snapshot()` returns it
(opaque, JSON-serialisable; it covers every record handed out so far), a new source is
built from it (`resume_state=`), and `commit(snapshot)` says that a checkpoint holding it is
durable, so the broker may forget what it covers. Nobody else decodes a snapshot.

A poll returns one `Messages`: a partition's messages as columns (payloads, publish times,
broker ids), not an object per message, so a message costs the reading loop a few list
appends and everything after it (windows, decoding, snapshots) works per batch.

>>> from streams.testing import TestingSource
>>> source = TestingSource(0, [b"a", b"b", TestingSource.PAUSE, b"c"])
>>> source.next_batch(10).payloads, source.snapshot()
([b'a', b'b'], '1')
>>> resumed = TestingSource(0, [b"a", b"b", b"c"], resume_state=source.snapshot())
>>> resumed.next_batch(10).payloads, resumed.snapshot()
([b'c'], '2')
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple


class Record(NamedTuple):
    """One message as one object: what a dead letter carries (`Messages.record`).

    `position` orders messages within a partition (comparable; shown in dead letters);
    `message_id` is the broker's opaque id, which only the source that made it interprets.
    """

    partition: int
    position: Any
    payload: bytes
    publish_ms: int = 0
    message_id: Any = None


def _same(position: Any) -> Any:
    return position


@dataclass
class Messages:
    """Messages of one partition in the order read, as columns (one poll of a source).

    `ids` are the broker's message ids, which only the source that made them interprets
    (`snapshot_through`); `position_of(id)` orders them (shown in dead letters).
    """

    partition: int
    payloads: list[bytes] = field(default_factory=list)
    publish_ms: list[int] = field(default_factory=list)
    ids: list[Any] = field(default_factory=list)
    position_of: Callable[[Any], Any] = _same

    def __len__(self) -> int:
        return len(self.payloads)

    @property
    def last_id(self) -> Any:
        """The id of the last message (what a snapshot covering this batch stands for)."""
        return self.ids[-1]

    def take(self, count: int) -> Messages:
        """The first `count` messages, removed from this batch."""
        head = Messages(self.partition, self.payloads[:count], self.publish_ms[:count],
                        self.ids[:count], self.position_of)
        del self.payloads[:count], self.publish_ms[:count], self.ids[:count]
        return head

    def record(self, index: int) -> Record:
        """Message `index` as one object (for a dead letter)."""
        message_id = self.ids[index]
        return Record(self.partition, self.position_of(message_id), self.payloads[index],
                      self.publish_ms[index], message_id)


class PartitionSource(ABC):
    """Reads one partition. Subclasses fill `next_batch` and `snapshot`; the window drives
    them."""

    partition: int
    #: names this source's snapshot in a checkpoint: unique among the sources of a run
    #: (Pulsar sources use their partition topic's name)
    key: str
    #: set by any source of a window when data arrives, so the window can sleep until then
    arrived: threading.Event | None = None

    @abstractmethod
    def next_batch(self, max_count: int) -> Messages:
        """Up to `max_count` messages that are ready now (none: an empty batch). Never blocks
        for long."""

    @abstractmethod
    def snapshot(self) -> str | None:
        """Resume state covering every record handed out so far (None: nothing yet, start
        from the beginning of the subscription)."""

    def snapshot_through(self, message_id: Any) -> str | None:
        """Resume state covering the message `message_id` (from a batch of this source) and
        every one before it (None: the state it was built from). For a reader ahead of the
        checkpoint (the predictions stage of raw event streams hands messages over later than
        it reads them)."""
        raise NotImplementedError(f"{type(self).__name__} cannot snapshot a record")

    def commit(self, snapshot: str | None) -> None:  # noqa: B027 - optional hook
        """A checkpoint holding `snapshot` is durable: what it covers may be forgotten."""

    def backlog(self) -> int:
        """Records received but not yet handed out."""
        return 0

    def lag_ms(self) -> int:
        """Age of the oldest record waiting here, in ms (0 when caught up)."""
        return 0

    def stats(self) -> dict[str, int]:
        """Counters for the console and logs (e.g. duplicates dropped, backlog)."""
        return {}

    def connected(self) -> bool:
        """False while the broker cannot be reached (what arrives then says nothing about
        what was published)."""
        return True

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the consumer."""
