"""The predictions topic: every event's prediction, published as it arrives.

`<events_topic>-predictions`, one JSON message per event, keyed by the event's key:

    {"key": 17, "prediction": 0.031, "step": 1200, "event_time_ms": ..., "publish_ms": ...}

`step` is the training step of the weights that made it. After a crash, events after the last
checkpoint are predicted again (possibly by other weights): a consumer keeps one prediction
per key (the first, or the newest step). Sends are asynchronous with `block_if_queue_full`:
a slow topic slows the trainer (backpressure) instead of growing memory or dropping.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import pulsar

from streams.pulsar.topics import full_topic_name

log = logging.getLogger(__name__)


def predictions_topic(events_topic: str) -> str:
    """The topic every prediction of an events topic goes to.

    >>> predictions_topic("clicks")
    'persistent://public/default/clicks-predictions'
    """
    return f"{full_topic_name(events_topic)}-predictions"


def prediction_messages(keys: Sequence[int], predictions: np.ndarray, step: int,
                        event_times_ms: Sequence[int], now_ms: int) -> list[bytes]:
    """One JSON message per event (a one-output model gives a number, others a list).

    >>> prediction_messages([3], np.array([[0.25]]), 7, [1000], 1010)
    [b'{"key": 3, "prediction": 0.25, "step": 7, "event_time_ms": 1000, "publish_ms": 1010}']
    """
    flat = predictions.reshape(len(keys), -1)
    out = []
    for key, value, when in zip(keys, flat.tolist(), event_times_ms, strict=True):
        out.append(json.dumps({"key": int(key), "prediction": value[0] if len(value) == 1
                               else value, "step": step, "event_time_ms": int(when),
                               "publish_ms": now_ms}).encode())
    return out


class PredictionSink:
    def __init__(self, client: Any, events_topic: str) -> None:
        self.topic = predictions_topic(events_topic)
        self._producer = client.create_producer(self.topic, block_if_queue_full=True,
                                                batching_enabled=True,
                                                batching_max_publish_delay_ms=5)
        self.sent = 0
        self.failed = 0

    def publish(self, keys: Sequence[int], payloads: Sequence[bytes]) -> None:
        for key, payload in zip(keys, payloads, strict=True):
            self._producer.send_async(payload, self._done, partition_key=str(int(key)))
        self.sent += len(payloads)

    def _done(self, result: Any, _message_id: Any) -> None:
        if result != pulsar.Result.Ok:
            self.failed += 1
            log.error("prediction publish to %s failed: %s", self.topic, result)

    def close(self) -> None:
        self._producer.flush()
        self._producer.close()
