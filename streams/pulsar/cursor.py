"""The durable cursor of one partition: the job's subscription, acknowledged at checkpoints,
so that a real broker retains what the next resume may read and no more.

Sources read through readers (`streams/pulsar/pulsar_source.py`); this cursor never receives a
message: Failover with a receiver queue of 0, so it costs no dispatch and any number of its
consumers may coexist. Give it a client of its own (`hvd_online/inputs/open.py` opens one for a
rank's cursors): a connection that carries no messages ends with a FIN when its process is
killed, so pulsar-lite 0.2.0 runs the cleanup it skips after a TCP reset (see
pulsar_source.py). That matters because pulsar-lite keys a subscription's consumers by the
client's consumer id, which a relaunch hands out again in the same order: a consumer left
behind would refuse the relaunch's cursor and drop its connection.

Opened off the training thread and best effort: while it is missing, acknowledgements wait for
the next checkpoint, which delays retention, never training.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import pulsar

log = logging.getLogger(__name__)


class DurableCursor:
    def __init__(self, client: pulsar.Client, topic: str, subscription: str) -> None:
        """`topic`: one partition's full topic name."""
        self.topic = topic
        self.subscription = subscription
        self._client = client
        self._consumer: Any = None
        self._closed = False
        self._opening = threading.Thread()  # never started: not alive
        self._open_in_background()

    @property
    def is_open(self) -> bool:
        return self._consumer is not None

    def _open_in_background(self) -> None:
        if self._consumer is None and not self._opening.is_alive() and not self._closed:
            self._opening = threading.Thread(target=self._open, daemon=True,
                                             name=f"cursor-{self.topic}")
            self._opening.start()

    def _open(self) -> None:
        try:
            consumer = self._client.subscribe(
                self.topic, self.subscription, consumer_type=pulsar.ConsumerType.Failover,
                receiver_queue_size=0, initial_position=pulsar.InitialPosition.Earliest)
        except Exception as err:  # noqa: BLE001 - broker away or refused: the next ack retries
            log.warning("%s: durable cursor %r not opened (%s); acknowledgements wait for it",
                        self.topic, self.subscription, err)
            return
        if self._closed:
            consumer.close()
            return
        self._consumer = consumer

    def acknowledge(self, message_id: Any) -> None:
        """Everything up to `message_id` (a MessageId read from this partition) is done."""
        if message_id.entry_id() == 0 and message_id.batch_index() >= 0:
            # Inside a batch in a ledger's first entry nothing whole can be acknowledged yet:
            # the client would send entry -1, and pulsar-lite 0.2.0 then drops the connection
            # (measured here: a 2-rank run stalled for good after its first checkpoint). The
            # next checkpoint acknowledges instead.
            return
        consumer = self._consumer
        if consumer is None:
            self._open_in_background()
            return
        try:
            consumer.acknowledge_cumulative(message_id)
        except Exception as err:  # noqa: BLE001 - broker away: the next checkpoint acks again
            log.warning("%s: acknowledge failed (%s); retried at the next checkpoint",
                        self.topic, err)

    def close(self) -> None:
        self._closed = True
        if self._consumer is not None:
            try:
                self._consumer.close()
            except Exception:  # noqa: BLE001 - closing during shutdown; nothing to save
                pass
