"""A PartitionSource over the official pulsar-client: one Exclusive consumer per partition.

Messages arrive through the client's listener thread into a bounded buffer, so polling from
the training thread never blocks. Backpressure pauses this consumer's listener when its buffer
is full, never blocks the listener thread: that thread is shared by every consumer of the
client, and blocking it for one full partition starved the others (one partition ran ahead
of its siblings by tens of thousands of messages - measured here).
Brokers redeliver (pulsar-lite sends many duplicates when a consumer lags a backlog, and any
broker does after a reconnect): positions only move forward, so anything at or before the last
position received is dropped here and counted. The source's snapshot is the serialized
MessageId of the last record handed out.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import Any

import pulsar

from streams.source import PartitionSource, Record
from streams.topics import partition_topic

log = logging.getLogger(__name__)


def message_position(message_id: Any) -> tuple[int, int, int]:
    """Order of a Pulsar MessageId within one partition."""
    return (message_id.ledger_id(), message_id.entry_id(), message_id.batch_index())


class PulsarPartitionSource(PartitionSource):
    def __init__(
        self,
        client: pulsar.Client,
        topic: str,
        partition: int,
        subscription: str,
        resume_state: str | None = None,
        rewind: bool = False,
        buffer_size: int = 4096,
        consumer_options: dict[str, Any] | None = None,
    ) -> None:
        """`resume_state`: a `snapshot()` of an earlier source of this partition; records
        it covers are not handed out again. `rewind`: the subscription's acknowledged cursor
        may be ahead of that snapshot (a newer checkpoint was unusable), so seek back."""
        self.partition = partition
        self.topic = self.key = self.key_for(topic, partition)
        self._buffer: deque[Record] = deque()
        self._buffer_size = buffer_size
        self._paused = False
        self._pause_lock = threading.Lock()
        self._closed = False
        self._last_enqueued: tuple[int, int, int] | None = None
        self._resume_state = resume_state
        self._handed_out: Record | None = None
        #: the last snapshot taken and the message id it stands for (what commit() acks)
        self._snapshot: tuple[str, Any] | None = None
        self._duplicates = 0
        self._received = 0
        resume = (pulsar.MessageId.deserialize(bytes.fromhex(resume_state))
                  if resume_state is not None else None)
        if resume is not None:
            # set before subscribing: the listener may deliver before seek() returns
            self._last_enqueued = message_position(resume)
        options = {"receiver_queue_size": 1000, **(consumer_options or {})}
        self._consumer = client.subscribe(
            self.topic,
            subscription,
            consumer_type=pulsar.ConsumerType.Exclusive,
            initial_position=pulsar.InitialPosition.Earliest,
            message_listener=self._on_message,
            **options,
        )
        if resume is not None and rewind:
            # Otherwise the acknowledged cursor is at or behind the snapshot and the position
            # filter drops what was already trained, so no seek is needed - and seeking
            # pulsar-lite 0.2.0 consumers sometimes stopped their delivery (measured here).
            self._consumer.seek(resume)

    @staticmethod
    def key_for(topic: str, partition: int) -> str:
        """The key of this partition's snapshot in a checkpoint: its topic's full name."""
        return partition_topic(topic, partition)

    def _on_message(self, consumer: Any, message: Any) -> None:
        message_id = message.message_id()
        position = message_position(message_id)
        if self._last_enqueued is not None and position <= self._last_enqueued:
            self._duplicates += 1
            return
        if self._closed:
            return
        self._received += 1
        self._last_enqueued = position
        self._buffer.append(
            Record(self.partition, position, message.data(), message.publish_timestamp(),
                   message_id)
        )
        if self.arrived is not None:
            self.arrived.set()
        if len(self._buffer) >= self._buffer_size:
            with self._pause_lock:
                if not self._paused:
                    self._paused = True
                    consumer.pause_message_listener()

    def next_batch(self, max_count: int) -> list[Record]:
        out: list[Record] = []
        buffer = self._buffer
        while buffer and len(out) < max_count:
            out.append(buffer.popleft())
        if out:
            self._handed_out = out[-1]
        if self._paused and len(buffer) <= self._buffer_size // 2:
            with self._pause_lock:
                if self._paused:
                    self._paused = False
                    self._consumer.resume_message_listener()
        return out

    def snapshot(self) -> str | None:
        if self._handed_out is None:
            return self._resume_state
        message_id = self._handed_out.message_id
        state = message_id.serialize().hex()
        self._snapshot = (state, message_id)
        return state

    def commit(self, snapshot: str | None) -> None:
        """Acknowledge (cumulatively) what `snapshot` covers, if this source took it; a
        restored snapshot was acknowledged by the run that took it."""
        if self._snapshot is None or self._snapshot[0] != snapshot:
            return
        message_id = self._snapshot[1]
        if message_id.entry_id() == 0 and message_id.batch_index() >= 0:
            # Inside a batch in a ledger's first entry nothing whole can be acknowledged yet:
            # the client would send entry -1, and pulsar-lite 0.2.0 then drops the connection
            # and stops dispatching to every consumer of it (measured here: a 2-rank run
            # stalled for good after its first checkpoint). The next checkpoint acks instead.
            return
        try:
            self._consumer.acknowledge_cumulative(message_id)
        except Exception as err:  # noqa: BLE001 - broker away: the next checkpoint acks again
            log.warning("partition %d: acknowledge failed (%s); retried at the next checkpoint",
                        self.partition, err)

    def backlog(self) -> int:
        """Messages received from the broker but not yet handed to training.

        (Not the broker's backlog: asking the broker, `consumer.get_last_message_id()`,
        stops pulsar-lite 0.2.0 from dispatching to that consumer — measured here.)
        """
        return len(self._buffer)

    def lag_ms(self) -> int:
        """Age of the oldest message waiting here (0 when caught up): how far behind we are."""
        try:
            oldest = self._buffer[0]
        except IndexError:
            return 0
        return max(0, int(time.time() * 1000) - oldest.publish_ms)

    def stats(self) -> dict[str, int]:
        return {"received": self._received, "duplicates": self._duplicates,
                "buffered": len(self._buffer), "connected": int(self._consumer.is_connected())}

    def close(self) -> None:
        self._closed = True
        try:
            self._consumer.close()
        except Exception:  # noqa: BLE001 - closing during shutdown; nothing to save
            pass
