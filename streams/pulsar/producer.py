"""Publishing samples: one producer per partition, records routed by key.

`publish()` takes an iterable of structured numpy arrays (chunks of records), encodes them
with the topic's codec and sends them at a chosen rate (or as fast as possible).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import pulsar

from streams.codecs import Codec
from streams.errors import StreamsError
from streams.pulsar.topics import partition_topic


class PartitionedProducer:
    """Sends payloads to `TOPIC-partition-K`, K chosen by the caller or by key % partitions."""

    def __init__(self, client: pulsar.Client, topic: str, partitions: int,
                 batching: bool = True, **producer_options: Any) -> None:
        if partitions < 1:
            msg = f"partitions must be >= 1, got {partitions}"
            raise StreamsError(msg)
        self.partitions = partitions
        options = {
            # the client's default DROPS messages once 1000 are pending: never do that
            "block_if_queue_full": True,
            "batching_enabled": batching,
            "batching_max_publish_delay_ms": 5,
            **producer_options,
        }
        self._producers = [
            client.create_producer(partition_topic(topic, p), **options) for p in range(partitions)
        ]
        self._failed: list[str] = []
        self._next = 0

    def _done(self, result: Any, _msg_id: Any) -> None:
        if result != pulsar.Result.Ok:
            self._failed.append(str(result))

    def send(self, payload: bytes, key: int | None = None, partition: int | None = None,
             properties: dict[str, str] | None = None) -> int:
        if partition is None:
            if key is None:
                partition, self._next = self._next, (self._next + 1) % self.partitions
            else:
                partition = key % self.partitions
        self._producers[partition].send_async(payload, self._done, properties=properties)
        return partition

    def flush(self) -> None:
        for producer in self._producers:
            producer.flush()
        if self._failed:
            msg = f"{len(self._failed)} message(s) failed to publish: {self._failed[:3]}"
            raise StreamsError(msg)

    def close(self) -> None:
        self.flush()
        for producer in self._producers:
            producer.close()


class Progress:
    """A one-line progress bar on stderr (only when stderr is a terminal or forced)."""

    def __init__(self, total: int | None, enabled: bool | None = None) -> None:
        self.total = total
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self.start = time.monotonic()
        self._shown = 0.0

    def update(self, done: int, force: bool = False) -> None:
        now = time.monotonic()
        if not self.enabled or (not force and now - self._shown < 0.5):
            return
        self._shown = now
        rate = done / max(now - self.start, 1e-9)
        if self.total:
            width = 30
            filled = int(width * done / self.total)
            bar = "#" * filled + "-" * (width - filled)
            line = f"[{bar}] {done:,}/{self.total:,} ({rate:,.0f} msg/s)"
        else:
            line = f"{done:,} sent ({rate:,.0f} msg/s)"
        end = "\n" if force else ""
        print(f"\rproduce {line}", end=end, file=sys.stderr, flush=True)


def _send_packed(producer: PartitionedProducer, codec: Codec, chunk: np.ndarray,
                 key_field: str | None, per_message: int) -> None:
    if key_field:
        partition_of = chunk[key_field] % producer.partitions
    else:  # spread whole messages round-robin
        partition_of = (np.arange(len(chunk)) // per_message) % producer.partitions
    for partition in range(producer.partitions):
        rows = chunk[partition_of == partition]
        for payload in codec.encode_many(rows, per_message):
            producer.send(payload, partition=partition)


def publish(
    producer: PartitionedProducer,
    codec: Codec,
    chunks: Iterable[np.ndarray],
    rate: float = 0.0,
    limit: int | None = None,
    key_field: str | None = None,
    progress: Progress | None = None,
    sleep: Callable[[float], None] = time.sleep,
    per_message: int = 1,
) -> int:
    """Send every record of `chunks` (at most `limit`); `rate` in records/s, 0 = unlimited.

    With `per_message` > 1 each message carries up to that many records of one partition (in
    key order within the partition), so key routing holds for every record.
    """
    sent = 0
    start = time.monotonic()
    for chunk in chunks:
        if limit is not None:
            chunk = chunk[: max(0, limit - sent)]
        if per_message == 1:
            keys = chunk[key_field].tolist() if key_field else [None] * len(chunk)
            for payload, key in zip(codec.encode_many(chunk), keys, strict=True):
                producer.send(payload, key=key)
        else:
            _send_packed(producer, codec, chunk, key_field, per_message)
        sent += len(chunk)
        if progress:
            progress.update(sent)
        if rate > 0:
            ahead = sent / rate - (time.monotonic() - start)
            if ahead > 0:
                sleep(ahead)
        if limit is not None and sent >= limit:
            break
    producer.flush()
    if progress:
        progress.update(sent, force=True)
    return sent
