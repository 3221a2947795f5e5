"""The model-updates topic: the trainer publishes model versions, serving replicas follow them.

`<topic>-model-updates`, one version per message (split into parts of at most PART_BYTES),
unbatched, in order. The payload is `streams/model_updates.py`'s encoding; the message
properties repeat what a reader needs without decoding it: `version`, `base`, `part`,
`parts` and `snapshot` (the serialized position of the newest full version).

- The publisher (rank 0) numbers versions on from the last one on the topic, so version
  numbers never go back, also when a relaunch resumes from a checkpoint older than what was
  served. It sends a full version first and every `snapshot_every` versions, deltas between.
- Retention: a durable cursor of its own is acknowledged up to the newest full version, so a
  real Pulsar keeps exactly what a replica starting now needs (with no retention policy set).
- A follower (a replica) starts at the newest full version (the last message names it), then
  applies every version in order. A version it cannot apply (a part or a version missed) is
  skipped until the next full one.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pulsar

from streams.model_updates import Header, Replica, UpdateError, decode, encode
from streams.pulsar.cursor import DurableCursor
from streams.pulsar.topics import full_topic_name

log = logging.getLogger(__name__)

#: the largest part of a version in one message (Pulsar's default limit is 5 MiB)
PART_BYTES = 1 << 20
RETENTION_SUBSCRIPTION = "hvd-online-model-updates"


def model_updates_topic(topic: str) -> str:
    """The topic a job's model versions go to.

    >>> model_updates_topic("samples")
    'persistent://public/default/samples-model-updates'
    """
    return f"{full_topic_name(topic)}-model-updates"


def last_message(client: pulsar.Client, topic: str) -> pulsar.Message | None:
    """The newest message of `topic`, or None if it has none. Raises if the broker cannot say.

    (pulsar-lite 0.2.0 answers the last-message-id request with an error on an empty topic,
    and does not support readers started at the latest message inclusive, so: a consumer
    that receives nothing asks for the id, and a reader reads that one message.)"""
    probe = client.create_reader(topic, pulsar.MessageId.earliest)
    try:
        probe.read_next(1000)
    except pulsar.Timeout:
        return None
    finally:
        probe.close()
    consumer = client.subscribe(topic, f"last-message-{time.monotonic_ns()}",
                                receiver_queue_size=0)
    try:
        last = consumer.get_last_message_id()
    finally:
        consumer.unsubscribe()
    reader = client.create_reader(topic, last, start_message_id_inclusive=True)
    try:
        return reader.read_next(5000)
    finally:
        reader.close()


class UpdatePublisher:
    """Rank 0: `offer(step, arrays)` from the training thread (cheap: newest wins); a thread
    of its own numbers, encodes and sends."""

    def __init__(self, client: pulsar.Client, topic: str, snapshot_every: int = 20) -> None:
        self.topic = topic
        self.snapshot_every = snapshot_every
        self._client = client
        self._producer = client.create_producer(topic, batching_enabled=False,
                                                block_if_queue_full=True)
        self._cursor = DurableCursor(client, topic, RETENTION_SUBSCRIPTION)
        self._pending: tuple[int, list[np.ndarray], int, int] | None = None
        self._wake = threading.Condition()
        self._closed = False
        self._previous: list[np.ndarray] | None = None
        self._snapshot = ""
        self._since_full = 0
        self._last_id: Any = None
        self.version = -1  # unknown until the topic is read
        self.sent = 0
        self.failed = 0
        self._thread = threading.Thread(target=self._run, name="model-updates", daemon=True)
        self._thread.start()

    def offer(self, step: int, arrays: list[np.ndarray], trained_ms: int | None = None) -> None:
        """`trained_ms`: when the oldest step these weights hold and no earlier version did
        was trained (update -> served is measured from there); default now."""
        now_ms = int(time.time() * 1000)
        with self._wake:
            self._pending = (step, arrays, now_ms, trained_ms or now_ms)
            self._wake.notify()

    def _run(self) -> None:
        while self.version < 0 and not self._closed:
            try:
                newest = last_message(self._client, self.topic)
                self.version = int(newest.properties()["version"]) if newest else 0
            except Exception as err:  # noqa: BLE001 - broker away: try again, publish nothing
                log.warning("%s: last version not read (%s); retrying", self.topic, err)
                time.sleep(1.0)
        if self.version < 0:
            return  # closed before the broker said where numbering goes on: send nothing
        while True:
            with self._wake:
                while self._pending is None and not self._closed:
                    self._wake.wait()
                if self._pending is None:
                    return
                step, arrays, created_ms, trained_ms = self._pending
                self._pending = None
            self._send(step, arrays, created_ms, trained_ms)

    def _send(self, step: int, arrays: list[np.ndarray], created_ms: int,
              trained_ms: int) -> None:
        full = self._previous is None or self._since_full + 1 >= self.snapshot_every
        version = self.version + 1
        header = Header(version, -1 if full else self.version, step, created_ms, self._snapshot,
                        trained_ms)
        try:
            payload = encode(header, arrays, None if full else self._previous)
            if full:  # the snapshot pointer names this version's first message
                first, ids = self._send_parts(header, payload, lead=True)
                self._snapshot = first.serialize().hex()
                if self._last_id is not None:  # keep from here on; older ones may go
                    self._cursor.acknowledge(self._last_id)
            else:
                _, ids = self._send_parts(header, payload, lead=False)
        except Exception as err:  # noqa: BLE001 - broker away: the next version goes full
            self.failed += 1
            self._previous = None
            log.warning("%s: version %d not published (%s)", self.topic, version, err)
            return
        self.version, self._previous, self.sent = version, arrays, self.sent + 1
        self._since_full = 0 if full else self._since_full + 1
        self._last_id = ids[-1]

    def _send_parts(self, header: Header, payload: bytes, lead: bool) -> tuple[Any, list[Any]]:
        parts = [payload[i : i + PART_BYTES] for i in range(0, len(payload), PART_BYTES)]
        ids: list[Any] = []
        for n, part in enumerate(parts):
            # a full version's pointer is its own first message: known once that is sent
            snapshot = "" if lead and n == 0 else (ids[0].serialize().hex() if lead
                                                    else header.snapshot)
            ids.append(self._producer.send(part, properties={
                "version": str(header.version), "base": str(header.base),
                "part": str(n), "parts": str(len(parts)), "snapshot": snapshot}))
        return ids[0], ids

    def close(self) -> None:
        with self._wake:
            self._closed = True
            self._wake.notify()
        self._thread.join(timeout=30)
        self._cursor.close()
        try:
            self._producer.flush()
            self._producer.close()
        except Exception:  # noqa: BLE001 - broker away at shutdown: nothing left to save
            pass


class UpdateFollower:
    """A replica's reader: starts at the newest full version, applies every version in order
    and hands each applied one to `on_version(header, arrays)`. Reconnects by itself."""

    def __init__(self, url: str, topic: str,
                 on_version: Callable[[Header, Sequence[np.ndarray]], None],
                 client_options: dict[str, Any] | None = None) -> None:
        from streams.pulsar.client import connect

        self.topic = topic
        self._client = connect(url, **(client_options or {}))
        self._on_version = on_version
        self.replica = Replica()
        self.skipped = 0
        self.connected = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="model-follower", daemon=True)
        self._thread.start()

    def _start_position(self) -> Any:
        newest = last_message(self._client, self.topic)
        if newest is None:
            return pulsar.MessageId.earliest
        snapshot = newest.properties().get("snapshot", "")
        if not snapshot:  # the newest is itself a full version's first part
            return newest.message_id()
        return pulsar.MessageId.deserialize(bytes.fromhex(snapshot))

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                reader = self._client.create_reader(self.topic, self._start_position(),
                                                    start_message_id_inclusive=True)
            except Exception as err:  # noqa: BLE001 - broker away: keep serving, retry
                log.warning("%s: not following yet (%s); retrying", self.topic, err)
                self._stop.wait(1.0)
                continue
            self.connected = True
            try:
                self._follow(reader)
            except Exception as err:  # noqa: BLE001 - e.g. the reader closed under it: again
                log.warning("%s: following again from the newest full version (%s)",
                            self.topic, err)
            finally:
                self.connected = False
                reader.close()

    def _follow(self, reader: Any) -> None:
        parts: list[bytes] = []
        while not self._stop.is_set():
            try:
                message = reader.read_next(500)
            except pulsar.Timeout:
                continue
            props = message.properties()
            part, count = int(props["part"]), int(props["parts"])
            if part != len(parts):  # a part missed: drop this version
                parts = []
                if part != 0:
                    self.skipped += 1
                    continue
            parts.append(message.data())
            if len(parts) < count:
                continue
            payload, parts = b"".join(parts), []
            try:
                header, arrays, version_parts = decode(payload)
                applied = self.replica.apply(header, arrays, version_parts)
            except UpdateError as err:
                log.error("%s: %s", self.topic, err)
                self.skipped += 1
                continue
            if applied:
                self._on_version(header, self.replica.arrays)
            elif header.version > self.replica.version:
                self.skipped += 1  # a delta past a gap: wait for the next full version

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        try:
            self._client.close()
        except Exception:  # noqa: BLE001 - closing during shutdown
            pass
