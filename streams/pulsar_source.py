"""A PartitionSource over the official pulsar-client: one Exclusive consumer per partition.

The training thread polls: `next_batch` drains what the client has prefetched with
`receive(timeout_millis=0)` and never blocks. The client prefetches up to its receiver queue
while a step trains, which bounds memory and is the backpressure: the broker sends no more
than the queue takes. (A message listener cost three times as much per message - a callback
from the client's thread into Python, fighting the training thread for the GIL - measured
here: 22.7k against 62-75k samples/s at one sample per message.)
Brokers redeliver (pulsar-lite sends many duplicates when a consumer lags a backlog, and any
broker does after a reconnect): positions only move forward, so anything at or before the last
position received is dropped here and counted. The source's snapshot is the serialized
MessageId of the last record handed out.
A partition that stays silent is resubscribed, after `silence_s` and then twice as long each
time up to SILENCE_MAX_S: a broker that dropped a dispatch under backpressure and never retried
(pulsar-lite 0.2.0, seen once in CI: 80 of 384 backlog messages never came) starts again from
the acknowledged cursor. On a partition that is only idle this costs a replay of what came
since the last checkpoint's acknowledgement, dropped here as duplicates.
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

#: the longest a silent partition waits between resubscriptions
SILENCE_MAX_S = 300.0
#: how long a subscription refused as busy is retried before the rank gives up
HELD_WAIT_S = 180.0


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
        silence_s: float = 10.0,
    ) -> None:
        """`resume_state`: a `snapshot()` of an earlier source of this partition; records
        it covers are not handed out again. `rewind`: the subscription's acknowledged cursor
        may be ahead of that snapshot (a newer checkpoint was unusable), so seek back.
        `buffer_size`: records taken from the client but not yet handed out, at most."""
        self.partition = partition
        self.topic = self.key = self.key_for(topic, partition)
        self._buffer: deque[Record] = deque()
        self._buffer_size = buffer_size
        self._closed = False
        self._last_enqueued: tuple[int, int, int] | None = None
        self._resume_state = resume_state
        self._handed_out: Record | None = None
        #: the last snapshot taken and the message id it stands for (what commit() acks)
        self._snapshot: tuple[str, Any] | None = None
        self._duplicates = 0
        self._received = 0
        self._client = client
        self._subscription = subscription
        self._silence_s = silence_s
        self._resubscribe_after = silence_s
        self._last_new = time.monotonic()
        self.resubscriptions = 0
        self._resubscribing = threading.Thread()  # never started: not alive
        resume = (pulsar.MessageId.deserialize(bytes.fromhex(resume_state))
                  if resume_state is not None else None)
        if resume is not None:
            self._last_enqueued = message_position(resume)
        self._options = {"receiver_queue_size": 1000, **(consumer_options or {})}
        # Without rewind the acknowledged cursor is at or behind the snapshot and the position
        # filter drops what was already trained, so no seek is needed - and seeking
        # pulsar-lite 0.2.0 consumers sometimes stopped their delivery (measured here).
        # (The client discards what it prefetched before a seek completes.)
        #: where a (re)subscription seeks back to when the acknowledged cursor may be ahead
        self._seek_back_to: Any = resume if rewind else None
        self._consumer = self._subscribe_when_free()

    def _subscribe_when_free(self) -> Any:
        """Subscribe, waiting while a consumer of a lost rank still holds the partition: the
        broker drops it once its keepalive fails (measured with pulsar-lite: ~40 s after
        the rank's host was cut off; Pulsar's default keepalive is 30 s)."""
        deadline = time.monotonic() + HELD_WAIT_S
        while True:
            try:
                return self._subscribe()
            except (pulsar.ConsumerBusy, pulsar.Timeout) as err:  # pulsar-lite: Timeout
                if time.monotonic() > deadline:
                    raise
                log.warning("partition %d: subscription refused (%s): still held by a lost "
                            "rank's consumer, or the broker is away; retrying",
                            self.partition, type(err).__name__)
                time.sleep(2.0)

    def _subscribe(self) -> Any:
        consumer = self._client.subscribe(
            self.topic,
            self._subscription,
            consumer_type=pulsar.ConsumerType.Exclusive,
            initial_position=pulsar.InitialPosition.Earliest,
            **self._options,
        )
        if self._seek_back_to is not None:
            consumer.seek(self._seek_back_to)
        return consumer

    @staticmethod
    def key_for(topic: str, partition: int) -> str:
        """The key of this partition's snapshot in a checkpoint: its topic's full name."""
        return partition_topic(topic, partition)

    def _fill(self) -> None:
        """Take what the client has ready, up to the buffer's size, dropping redeliveries."""
        buffer = self._buffer
        # the client's own consumer: its public wrapper adds a Python object per message
        receive = self._consumer._consumer.receive
        room = before = self._buffer_size - len(buffer)
        last = self._last_enqueued
        partition = self.partition
        try:
            while room > 0:
                message = receive(0)
                message_id = message.message_id()
                position = message_position(message_id)
                if last is not None and position <= last:
                    self._duplicates += 1
                    continue
                last = position
                buffer.append(Record(partition, position, message.data(),
                                     message.publish_timestamp(), message_id))
                room -= 1
        except pulsar.Timeout:
            pass  # nothing more ready now
        except pulsar.PulsarException as err:  # closed by a resubscription, or broker away
            log.debug("partition %d: receive failed (%s)", partition, err)
        if last is not self._last_enqueued:
            self._received += before - room
            self._last_enqueued = last
            self._last_new = time.monotonic()
            self._resubscribe_after = self._silence_s
            if self._seek_back_to is not None:
                self._seek_back_to = buffer[-1].message_id

    def next_batch(self, max_count: int) -> list[Record]:
        buffer = self._buffer
        if len(buffer) < max_count:
            self._fill()
        out = [buffer.popleft() for _ in range(min(max_count, len(buffer)))]
        if out:
            self._handed_out = out[-1]
        elif (time.monotonic() - self._last_new >= self._resubscribe_after
              and not self._resubscribing.is_alive()):
            # off the training thread: a refused subscribe blocks for the operation timeout
            self._resubscribing = threading.Thread(target=self._resubscribe, daemon=True,
                                                   name=f"resubscribe-{self.partition}")
            self._resubscribing.start()
        return out

    def _resubscribe(self) -> None:
        """Close this partition's consumer and subscribe again (see the module docstring)."""
        self._last_new = time.monotonic()
        self._resubscribe_after = min(2 * self._resubscribe_after, SILENCE_MAX_S)
        try:
            self._consumer.close()
        except Exception:  # noqa: BLE001 - already closed or broker away; subscribe anyway
            pass
        try:
            consumer = self._subscribe()
        except Exception as err:  # noqa: BLE001 - broker away: the next silence tries again
            log.warning("partition %d: resubscribing failed (%s)", self.partition, err)
            return
        if self._closed:  # closed meanwhile (no join in close(): a refused subscribe is slow)
            consumer.close()
            return
        self._consumer = consumer
        self.resubscriptions += 1
        log.info("partition %d: silent, resubscribed (next after %.0f s)", self.partition,
                 self._resubscribe_after)

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
        """Messages taken from the client but not yet handed to training (what the client
        prefetched and nobody drained yet is not counted).

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
                "buffered": len(self._buffer), "connected": int(self._consumer.is_connected()),
                "resubscribed": self.resubscriptions}

    def close(self) -> None:
        self._closed = True
        try:
            self._consumer.close()
        except Exception:  # noqa: BLE001 - closing during shutdown; nothing to save
            pass
