"""A PartitionSource over the official pulsar-client: one Exclusive consumer per partition.

Messages arrive through the client's listener thread into a bounded buffer (backpressure:
the listener waits when the buffer is full), so polling from the training thread never blocks.
Brokers redeliver (pulsar-lite sends many duplicates when a consumer lags a backlog, and any
broker does after a reconnect): positions only move forward, so anything at or before the last
position handed out is dropped here and counted.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any

import pulsar

from streams.source import PartitionSource, Record
from streams.topics import partition_topic


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
        buffer_size: int = 4096,
        start_after: bytes | None = None,
        consumer_options: dict[str, Any] | None = None,
    ) -> None:
        self.partition = partition
        self.topic = partition_topic(topic, partition)
        self._buffer: deque[Record] = deque()
        self._space = threading.Semaphore(buffer_size)
        self._closed = False
        self._last_enqueued: tuple[int, int, int] | None = None
        self._position: tuple[int, int, int] | None = None
        self._duplicates = 0
        self._backlog = 0
        self._backlog_checked = 0.0
        options = {"receiver_queue_size": 1000, **(consumer_options or {})}
        self._consumer = client.subscribe(
            self.topic,
            subscription,
            consumer_type=pulsar.ConsumerType.Exclusive,
            initial_position=pulsar.InitialPosition.Earliest,
            message_listener=self._on_message,
            **options,
        )
        if start_after is not None:
            resume = pulsar.MessageId.deserialize(start_after)
            self._last_enqueued = self._position = message_position(resume)
            self._consumer.seek(resume)

    def _on_message(self, consumer: Any, message: Any) -> None:
        message_id = message.message_id()
        position = message_position(message_id)
        if self._last_enqueued is not None and position <= self._last_enqueued:
            self._duplicates += 1
            return
        self._space.acquire()
        if self._closed:
            return
        self._last_enqueued = position
        self._buffer.append(
            Record(self.partition, position, message.data(), message.publish_timestamp(),
                   message_id)
        )
        if self.arrived is not None:
            self.arrived.set()

    def next_batch(self, max_count: int) -> list[Record]:
        out: list[Record] = []
        buffer = self._buffer
        while buffer and len(out) < max_count:
            out.append(buffer.popleft())
        if out:
            self._space.release(len(out))
            self._position = out[-1].position
        return out

    @property
    def position(self) -> tuple[int, int, int] | None:
        return self._position

    def acknowledge(self, record: Record) -> None:
        self._consumer.acknowledge_cumulative(record.message_id)

    def backlog(self, every_s: float = 2.0) -> int:
        """Messages published but not yet handed out (approximate; asked at most every_s)."""
        now = time.monotonic()
        if now - self._backlog_checked >= every_s:
            self._backlog_checked = now
            try:
                last = message_position(self._consumer.get_last_message_id())
            except Exception:  # noqa: BLE001 - lag is informative only; keep the last value
                return self._backlog
            here = self._position or (last[0], -1, -1)
            self._backlog = max(0, last[1] - here[1]) if last[0] == here[0] else self._backlog
        return self._backlog + len(self._buffer)

    def stats(self) -> dict[str, int]:
        return {"duplicates": self._duplicates, "buffered": len(self._buffer)}

    def close(self) -> None:
        self._closed = True
        self._space.release(1 << 20)  # wake a listener waiting for space
        try:
            self._consumer.close()
        except Exception:  # noqa: BLE001 - closing during shutdown; nothing to save
            pass
