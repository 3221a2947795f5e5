"""The soak's live streams, published in real time and never paused: a labelled stream of MLP
samples and a clicks-style raw event stream (impressions now, their clicks after a lognormal
delay), both skewed (60% on partition 1), with a 10x burst on request. Each remembers what it
sent, which the end checks compare with what was trained."""

from __future__ import annotations

import heapq
import threading
import time
from typing import Any

import numpy as np

from benchmarks.kit.generators import skewed_ids
from examples.clicks.producer import click_probability
from hvd_online.inputs.joined import check_schemas
from hvd_online.model.template import ModelTemplate
from streams.codecs import RecordCodec
from streams.pulsar.client import connect
from streams.pulsar.producer import PartitionedProducer

#: one payload in this many of the labelled stream is malformed (to the dead-letter topic)
MALFORMED_EVERY = 997


class LiveStream(threading.Thread):
    """Publishes `rate` records/s until `stop()`; `burst(seconds)` multiplies the rate by 10."""

    def __init__(self, url: str, rate: float, seed: int) -> None:
        super().__init__(daemon=True)
        self.url, self.rate, self.seed = url, rate, seed
        self.sent = 0
        self.failure: BaseException | None = None
        self._stopping = threading.Event()
        self._burst_until = 0.0

    def burst(self, seconds: float) -> None:
        self._burst_until = time.monotonic() + seconds

    def stop(self) -> None:
        self._stopping.set()
        self.join(120)

    def run(self) -> None:
        client = connect(self.url)
        try:
            self.open(client)
            start, due = time.monotonic(), 0.0
            while not self._stopping.is_set():
                now = time.monotonic()
                factor = 10.0 if now < self._burst_until else 1.0
                due += factor / self.rate
                self.send_one(int(time.time() * 1000))
                ahead = start + due - time.monotonic()
                if ahead > 0:
                    time.sleep(ahead)
                elif ahead < -1:  # behind (a broker restart blocked sends): do not rush
                    start, due = time.monotonic(), 0.0
            self.close()
        except BaseException as err:  # noqa: BLE001 - reported by the soak's checks
            self.failure = err
        finally:
            client.close()

    def next_id(self) -> int:
        """The id of the `self.sent`-th record of a skewed stream (ids come in blocks)."""
        block = self.sent // 4096
        if getattr(self, "_block", None) != block:
            self._block, self._ids = block, skewed_ids(4096, seed=self.seed, first=block * 4096)
        return int(self._ids[self.sent % 4096])

    def open(self, client: Any) -> None: ...

    def send_one(self, now_ms: int) -> None: ...

    def close(self) -> None: ...


class SampleStream(LiveStream):
    """Labelled MLP samples on `topic`; every MALFORMED_EVERY-th payload is cut short."""

    def __init__(self, url: str, topic: str, template: ModelTemplate, rate: float,
                 seed: int) -> None:
        super().__init__(url, rate, seed)
        self.topic, self.schema = topic, template.schema
        self.ids: list[int] = []
        self.malformed = 0

    def open(self, client: Any) -> None:
        self.producer = PartitionedProducer(client, self.topic, 4)
        self.codec = RecordCodec(self.schema)
        self.rng = np.random.default_rng(self.seed)

    def send_one(self, now_ms: int) -> None:
        from examples.mlp.producer import target

        row = np.zeros(1, self.schema.dtype)
        key = self.next_id()
        row["id"] = key
        row["x"] = self.rng.normal(size=(1, self.schema.feature_shape[0]))
        row["y"] = target(row["x"])
        payload = self.codec.encode_many(row)[0]
        self.sent += 1
        if self.sent % MALFORMED_EVERY == 0:
            self.producer.send(payload[:-3], key=key)
            self.malformed += 1
            return
        self.producer.send(payload, key=key)
        self.ids.append(key)

    def close(self) -> None:
        self.producer.close()


class ClickStream(LiveStream):
    """Impressions on `events_topic` with event time = now; a click on `labels_topic` after a
    lognormal delay (median `median_delay_s`), with the probability of examples/clicks."""

    def __init__(self, url: str, events_topic: str, labels_topic: str,
                 template: ModelTemplate, rate: float, seed: int,
                 median_delay_s: float = 0.6) -> None:
        super().__init__(url, rate, seed)
        self.topics = (events_topic, labels_topic)
        self.events, self.labels = check_schemas(template)
        self.median_delay_s = median_delay_s
        #: id -> click delay in ms, or -1: never clicked
        self.truth: dict[int, int] = {}
        self._due: list[tuple[int, int]] = []

    def open(self, client: Any) -> None:
        self.producers = [PartitionedProducer(client, t, 4) for t in self.topics]
        self.codecs = (RecordCodec(self.events), RecordCodec(self.labels))
        self.rng = np.random.default_rng(self.seed)

    def _send_labels_until(self, now_ms: int) -> None:
        while self._due and self._due[0][0] <= now_ms:
            when, key = heapq.heappop(self._due)
            label = np.zeros(1, self.labels.dtype)
            label["id"], label["t"], label["y"] = key, when, 1.0
            self.producers[1].send(self.codecs[1].encode_many(label)[0], key=key)

    def send_one(self, now_ms: int) -> None:
        self._send_labels_until(now_ms)
        key = self.next_id()
        event = np.zeros(1, self.events.dtype)
        event["id"], event["t"] = key, now_ms
        event["x"] = self.rng.normal(size=(1, self.events.dtype["x"].shape[0]))
        clicked = self.rng.random() < float(click_probability(event["x"])[0])
        delay = int(self.rng.lognormal(np.log(self.median_delay_s * 1000), 1.0))
        self.truth[key] = delay if clicked else -1
        if clicked:
            heapq.heappush(self._due, (now_ms + delay, key))
        self.producers[0].send(self.codecs[0].encode_many(event)[0], key=key)
        self.sent += 1

    def close(self, last_s: float = 5.0) -> None:
        """Send the clicks due in the next `last_s` when they are due; later ones (far past
        any join window) are never sent, and recorded as no click."""
        end = time.time() * 1000 + last_s * 1000
        while self._due and self._due[0][0] <= end:
            time.sleep(max(0.0, (self._due[0][0] - time.time() * 1000) / 1000))
            self._send_labels_until(int(time.time() * 1000))
        for _, key in self._due:
            self.truth[key] = -1
        for producer in self.producers:
            producer.close()
