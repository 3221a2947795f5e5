"""Malformed messages go to `TOPIC-dlq` with the reason in their properties, and are counted.

The original payload is kept byte for byte, so nothing is lost and the message can be fixed
and replayed.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

import pulsar

from streams.codecs import Rejected, reason_kind
from streams.pulsar.topics import dead_letter_topic
from streams.source import Record

log = logging.getLogger(__name__)


class DeadLetterSink:
    def __init__(self, client: Any, topic: str) -> None:
        self.topic = dead_letter_topic(topic)
        self._producer = client.create_producer(self.topic, block_if_queue_full=True,
                                                batching_enabled=False)
        self.counts: Counter[str] = Counter()
        self.failed = 0

    def send(self, record: Record, rejected: Rejected) -> None:
        self.counts[reason_kind(rejected.reason)] += 1
        properties = {
            "reason": rejected.reason,
            "source_partition": str(record.partition),
            "source_position": ".".join(map(str, record.position)),
        }
        # asynchronous: a broker outage must not stall training; failures are counted/logged
        self._producer.send_async(record.payload, self._sent, properties=properties)

    def _sent(self, result: Any, _message_id: Any) -> None:
        if result != pulsar.Result.Ok:
            self.failed += 1
            log.error("dead-letter publish to %s failed: %s", self.topic, result)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def close(self) -> None:
        self._producer.flush()
        self._producer.close()
