"""The Source contract: one reader per partition, polled by the batching window.

Modelled on bytewax's `StatefulSourcePartition`: `next_batch()` never blocks for long and
returns `[]` when nothing came. A source owns its resume state: `snapshot()` returns it
(opaque, JSON-serialisable; it covers every record handed out so far), a new source is
built from it (`resume_state=`), and `commit(snapshot)` says that a checkpoint holding it is
durable, so the broker may forget what it covers. Nobody else decodes a snapshot.

>>> from streams.testing import TestingSource
>>> source = TestingSource(0, [b"a", b"b", TestingSource.PAUSE, b"c"])
>>> [r.payload for r in source.next_batch(10)], source.snapshot()
([b'a', b'b'], '1')
>>> resumed = TestingSource(0, [b"a", b"b", b"c"], resume_state=source.snapshot())
>>> [r.payload for r in resumed.next_batch(10)], resumed.snapshot()
([b'c'], '2')
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from typing import Any, NamedTuple


class Record(NamedTuple):
    """One message as the trainer sees it (a tuple: one is made per message, so it is cheap).

    `position` orders messages within a partition (comparable; shown in dead letters);
    `message_id` is the broker's opaque id, which only the source that made it interprets.
    """

    partition: int
    position: Any
    payload: bytes
    publish_ms: int = 0
    message_id: Any = None


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
    def next_batch(self, max_count: int) -> list[Record]:
        """Up to `max_count` records that are ready now; `[]` if none. Never blocks for long."""

    @abstractmethod
    def snapshot(self) -> str | None:
        """Resume state covering every record handed out so far (None: nothing yet, start
        from the beginning of the subscription)."""

    def snapshot_through(self, record: Record | None) -> str | None:
        """Resume state covering `record` and every record of this source before it (None:
        the state it was built from). For a reader ahead of the checkpoint (the predictions
        stage of raw event streams hands records over later than it reads them)."""
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
