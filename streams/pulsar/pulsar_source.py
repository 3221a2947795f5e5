"""A PartitionSource over the official pulsar-client: a reader per partition, started right
after the partition's snapshot.

Why a reader and not an Exclusive consumer: the positions are ours (in the checkpoint), so
the broker need not own them, and a reader is never refused because a dead rank's consumer
still holds the partition. pulsar-lite 0.2.0 holds them for good: a connection that ends in
a TCP reset (a client killed while messages were on the wire to it, i.e. while its partitions
are published to) returns from its loop before the cleanup that removes its consumers
(`server_cnx.rs`, `frame.map_err(..)?`), so every later Exclusive subscribe of those
partitions is refused until the broker restarts. A real Pulsar drops a dead connection's
consumers once it notices: at once for a killed process, after its keepalive (30 s by
default) for a host cut off, and until then refuses the partition too.
(The cost on pulsar-lite: each reader leaves a subscription named `reader-...` on its topic,
which pulsar-lite keeps; a real broker deletes a reader's cursor with the reader.)

What a checkpoint covers is acknowledged on a `DurableCursor` (`streams/pulsar/cursor.py`), which
only keeps the broker's retention.

The training thread polls: `next_batch` drains what the client has prefetched with
`read_next(0)` and never blocks. The receiver queue bounds memory and is the backpressure.
Brokers redeliver (after a reconnect the client replays from its last position; pulsar-lite
also sends duplicates when a reader lags a backlog): positions only move forward, so anything
at or before the last position received is dropped here and counted.

A reader must never read a ledger's first entry when it is a batch: the client acknowledges
the first message of each batch it reads, which for entry 0 means entry -1, and pulsar-lite
0.2.0 then drops the connection and fails every later dispatch of that reader (measured: a
partition stalled from its first message). So a source with no position yet reads through a
temporary consumer of its own subscription, which acknowledges nothing, until it is past that
batch, then switches to a reader (pulsar-lite keeps one ledger per topic, so this is once).

A partition that stays silent is reopened, after `silence_s` and then twice as long each time
up to SILENCE_MAX_S, right after the last message received: pulsar-lite 0.2.0 sometimes drops
a dispatch under backpressure and never retries (seen in CI: 80 of 384 backlog messages never
came), and a new reader starts a new dispatch.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from typing import Any

import pulsar

from streams.pulsar.cursor import DurableCursor
from streams.pulsar.topics import partition_topic
from streams.source import Messages, PartitionSource

log = logging.getLogger(__name__)

#: the longest a silent partition waits between reopenings
SILENCE_MAX_S = 300.0


def message_position(message_id: Any) -> tuple[int, int, int]:
    """Order of a Pulsar MessageId within one partition."""
    return (message_id.ledger_id(), message_id.entry_id(), message_id.batch_index())


def next_message(handle: Any) -> Any:
    """The client's own receive of a reader or consumer (their public wrappers add a Python
    object per message)."""
    if isinstance(handle, pulsar.Reader):
        return handle._reader.read_next
    return handle._consumer.receive


class PulsarPartitionSource(PartitionSource):
    def __init__(
        self,
        client: pulsar.Client,
        topic: str,
        partition: int,
        resume_state: str | None = None,
        cursor: DurableCursor | None = None,
        buffer_size: int = 4096,
        reader_options: dict[str, Any] | None = None,
        silence_s: float = 10.0,
    ) -> None:
        """`resume_state`: a `snapshot()` of an earlier source of this partition; reading
        starts right after it (None: at the earliest message the broker keeps).
        `cursor`: where `commit` acknowledges (None: nowhere). `buffer_size`: records taken from the
        client but not yet handed out, at most. `reader_options` go to `create_reader`."""
        self.partition = partition
        self.topic = self.key = self.key_for(topic, partition)
        #: messages taken from the client and not yet handed out
        self._buffer = self._empty()
        self._buffer_size = buffer_size
        self._closed = False
        self._resume_state = resume_state
        #: where the next reader starts (exclusive): the last message id taken from a reader
        self._start: Any = pulsar.MessageId.earliest
        #: the id of the last message taken from the client (None: none yet)
        self._last_enqueued: Any = None
        if resume_state is not None:
            self._start = pulsar.MessageId.deserialize(bytes.fromhex(resume_state))
            self._last_enqueued = self._start
        #: the id of the last message handed out (what snapshot() covers)
        self._handed_out: Any = None
        #: the last snapshot taken and the message id it stands for (what commit() acks)
        self._snapshot: tuple[str, Any] | None = None
        self._duplicates = 0
        self._received = 0
        self._client = client
        self._cursor = cursor
        self._options = {"receiver_queue_size": 1000, **(reader_options or {})}
        self._silence_s = silence_s
        self._reopen_after = silence_s
        self._last_new = time.monotonic()
        self.resubscriptions = 0
        self._reopening = threading.Thread()  # never started: not alive
        self._reader = self._open_reader()

    @staticmethod
    def key_for(topic: str, partition: int) -> str:
        """The key of this partition's snapshot in a checkpoint: its topic's full name."""
        return partition_topic(topic, partition)

    @property
    def _before_first_batch(self) -> bool:
        """Nothing read past a ledger's first entry yet (see the module docstring)."""
        start = self._start
        return start.entry_id() < 0 or (start.entry_id() == 0 and start.batch_index() >= 0)

    def _open_reader(self) -> Any:
        """A reader after `self._start`, or before the first batch a temporary consumer."""
        if not self._before_first_batch:
            return self._client.create_reader(self.topic, self._start, **self._options)
        return self._client.subscribe(self.topic, f"first-{uuid.uuid4().hex[:12]}",
                                      initial_position=pulsar.InitialPosition.Earliest,
                                      **self._options)

    def _leave_first_batch(self) -> None:
        """Past the first entry's batch: the temporary consumer hands over to a reader (on
        the training thread, two round trips to the broker, once per partition)."""
        first, self._reader = self._reader, self._open_reader()
        try:
            first.unsubscribe()  # its subscription is gone from the broker too
        except Exception:  # noqa: BLE001 - broker away: close it at least
            first.close()

    def _empty(self) -> Messages:
        return Messages(self.partition, position_of=message_position)

    def _fill(self) -> None:
        """Take what the client has ready, up to the buffer's size, dropping redeliveries.
        (The hot loop of a rank: per message a read, a comparison and three appends. Ids
        compare by position in the C++ client, ledger, entry, batch index: 0.25 us against
        1.2 for `message_position` tuples, measured here.)"""
        buffer = self._buffer
        payloads, published, ids = buffer.payloads, buffer.publish_ms, buffer.ids
        read_next = next_message(self._reader)
        room = before = self._buffer_size - len(buffer)
        last = self._last_enqueued
        try:
            while room > 0:
                message = read_next(0)
                message_id = message.message_id()
                if last is not None and message_id <= last:
                    self._duplicates += 1
                    continue
                last = message_id
                payloads.append(message.data())
                published.append(message.publish_timestamp())
                ids.append(message_id)
                room -= 1
        except pulsar.Timeout:
            pass  # nothing more ready now
        except pulsar.PulsarException as err:  # closed by a reopening, or broker away
            log.debug("partition %d: read failed (%s)", self.partition, err)
        if last is not self._last_enqueued:
            self._received += before - room
            self._last_enqueued = last
            reading_first_batch = self._before_first_batch
            self._start = ids[-1]
            self._last_new = time.monotonic()
            self._reopen_after = self._silence_s
            if reading_first_batch and not self._before_first_batch:
                self._leave_first_batch()

    def next_batch(self, max_count: int) -> Messages:
        if len(self._buffer) < max_count:
            self._fill()
        buffer = self._buffer
        if len(buffer) <= max_count:  # all of it: hand the columns over, no copy
            out, self._buffer = buffer, self._empty()
        else:
            out = buffer.take(max_count)
        if out:
            self._handed_out = out.last_id
        elif (time.monotonic() - self._last_new >= self._reopen_after
              and not self._reopening.is_alive()):
            # off the training thread: opening a reader waits for the broker
            self._reopening = threading.Thread(target=self._reopen, daemon=True,
                                               name=f"reopen-{self.partition}")
            self._reopening.start()
        return out

    def _reopen(self) -> None:
        """Close this partition's reader and open one after the last message received (see
        the module docstring)."""
        self._last_new = time.monotonic()
        self._reopen_after = min(2 * self._reopen_after, SILENCE_MAX_S)
        try:
            self._reader.close()
        except Exception:  # noqa: BLE001 - already closed or broker away; reopen anyway
            pass
        try:
            reader = self._open_reader()
        except Exception as err:  # noqa: BLE001 - broker away: the next silence tries again
            log.warning("partition %d: reopening the reader failed (%s)", self.partition, err)
            return
        if self._closed:  # closed meanwhile (no join in close(): opening can be slow)
            reader.close()
            return
        self._reader = reader
        self.resubscriptions += 1
        log.info("partition %d: silent, reader reopened (next after %.0f s)", self.partition,
                 self._reopen_after)

    def snapshot(self) -> str | None:
        return self.snapshot_through(self._handed_out)

    def snapshot_through(self, message_id: Any) -> str | None:
        if message_id is None:
            return self._resume_state
        state = message_id.serialize().hex()
        self._snapshot = (state, message_id)
        return state

    def commit(self, snapshot: str | None) -> None:
        """Acknowledge on the durable cursor what `snapshot` covers, if this source took it; a
        restored snapshot was acknowledged by the run that took it."""
        if self._cursor is not None and self._snapshot is not None \
                and self._snapshot[0] == snapshot:
            self._cursor.acknowledge(self._snapshot[1])

    def backlog(self) -> int:
        """Messages taken from the client but not yet handed to training (what the client
        prefetched and nobody drained yet is not counted).

        (Not the broker's backlog: asking the broker, `get_last_message_id()`, stops
        pulsar-lite 0.2.0 from dispatching to that consumer — measured here.)
        """
        return len(self._buffer)

    def lag_ms(self) -> int:
        """Age of the oldest message waiting here (0 when caught up): how far behind we are."""
        published = self._buffer.publish_ms
        if not published:
            return 0
        return max(0, int(time.time() * 1000) - published[0])

    def connected(self) -> bool:
        return bool(self._reader.is_connected())

    def stats(self) -> dict[str, int]:
        return {"received": self._received, "duplicates": self._duplicates,
                "buffered": len(self._buffer), "connected": int(self.connected()),
                "resubscribed": self.resubscriptions}

    def close(self) -> None:
        self._closed = True
        try:
            self._reader.close()
        except Exception:  # noqa: BLE001 - closing during shutdown; nothing to save
            pass
