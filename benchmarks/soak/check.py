"""What the soak checks at the end, against the broker and the ledgers.

- Exactly once: over all launches of a job (each launch's steps up to where the next launch
  resumed), every message the topic holds was trained once (labelled), every impression once
  (join; a repeated impression is a duplicate the join drops).
- No label lost: an impression clicked within the window trained with 1, one never clicked
  (or clicked after the window and its lateness) with 0.
- Every impression predicted; every prediction carries its key and step (so a consumer can
  keep one per key).
- Dead letters: every malformed payload of the labelled stream is on its dead-letter topic.
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pulsar

from benchmarks.kit.ledger import read_labelled_ledger
from streams.pulsar.dead_letter import dead_letter_topic
from streams.pulsar.predictions import predictions_topic
from streams.pulsar.pulsar_source import PulsarPartitionSource, message_position

#: a partition that gave nothing new for this long has given every message (the check runs
#: after its stream ended)
QUIET_S = 3.0


def resume_steps(log: str) -> dict[int, int | None]:
    """Per launch of `hvd-online run`, the step it resumed from (None: it never got there)."""
    parts = re.split(r"launch (\d+) on ", log)[1:]
    out: dict[int, int | None] = {}
    for number, text in zip(parts[::2], parts[1::2], strict=True):
        found = re.search(r"rank 0 resuming from step (\d+)", text)
        out[int(number)] = int(found.group(1)) if found else (0 if number == "1" else None)
    return out


def kept_ledger(ledger: Path, log: str) -> list[tuple[int, float | None]]:
    """(id, label) of every sample in the model that survived: each launch's steps up to the
    step the next launch that got going resumed from."""
    resumed = resume_steps(log)
    kept: list[tuple[int, float | None]] = []
    for number in sorted(resumed):
        later = [resumed[n] for n in sorted(resumed) if n > number and resumed[n] is not None]
        kept += read_labelled_ledger(ledger / f"launch-{number}", later[0] if later else None)
    return kept


def read_topic(url: str, topic: str, partitions: int | None = 4) -> list[bytes]:
    """Every message of `topic` (of each of its partitions) once, oldest first, once nothing
    publishes to it any more.

    A partitioned topic is read by the trainer's own partition source (it starts around
    pulsar-lite 0.2.0's stall on a batched first entry and drops redeliveries: see
    streams/pulsar/pulsar_source.py) until it gave nothing new for QUIET_S. The sinks' topics
    (dead letters, predictions) are one topic each: a plain reader, as before."""
    client = pulsar.Client(url, logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Error))
    out: list[bytes] = []
    try:
        if partitions is None:
            return read_unbatched(client, topic)
        for partition in range(partitions):
            source = PulsarPartitionSource(client, topic, partition)
            news = time.monotonic()
            while time.monotonic() - news < QUIET_S:
                batch = source.next_batch(4096)
                if batch:
                    out += batch.payloads
                    news = time.monotonic()
                else:
                    time.sleep(0.05)
            source.close()
    finally:
        client.close()
    return out


def read_unbatched(client: pulsar.Client, topic: str) -> list[bytes]:
    reader = client.create_reader(topic, pulsar.MessageId.earliest)
    out, seen = [], set()
    try:
        reader.has_message_available()
    except pulsar.PulsarException:
        # pulsar-lite 0.2.0 answers the last-message-id request of a topic that has none
        # with an error (a soak whose dead-letter topic stayed empty failed on it)
        if not _has_any(reader):
            reader.close()
            return []
    while reader.has_message_available():
        message = reader.read_next(10_000)
        if message_position(message.message_id()) not in seen:  # pulsar-lite redelivers
            seen.add(message_position(message.message_id()))
            out.append(message.data())
    reader.close()
    return out


def _has_any(reader: pulsar.Reader) -> bool:
    """Whether the topic has a first message (read from the start within a second)."""
    try:
        reader.read_next(1000)
    except pulsar.Timeout:
        return False
    reader.seek(pulsar.MessageId.earliest)
    return True


def check_labelled(job, url: str) -> dict:
    schema = job.stream.schema
    size = schema.dtype.itemsize
    held = [np.frombuffer(p, schema.dtype)["id"][0] for p in read_topic(url, job.stream.topic)
            if len(p) == size]
    topic_ids = Counter(int(i) for i in held)
    kept = Counter(k for k, _ in kept_ledger(job.ledger, job.log.read_text()))
    dead = read_topic(url, dead_letter_topic(job.stream.topic), None)
    return {"samples_in_topic": sum(topic_ids.values()), "trained": sum(kept.values()),
            "producer_repeats": sum(topic_ids.values()) - len(job.stream.ids),
            "sent_not_in_topic": len(set(job.stream.ids) - set(topic_ids)),
            "missing": sum((topic_ids - kept).values()),
            "repeated": sum((kept - topic_ids).values()),
            "malformed_sent": job.stream.malformed, "dead_letters": len(dead),
            "ok": kept == topic_ids and len(dead) >= job.stream.malformed}


def check_join(job, url: str, window_ms: int, lateness_ms: int) -> dict:
    events = job.stream.events
    topic_ids = {int(np.frombuffer(p, events.dtype)["id"][0])
                 for p in read_topic(url, job.stream.topics[0])}
    kept = kept_ledger(job.ledger, job.log.read_text())
    counts = Counter(k for k, _ in kept)
    label = dict(kept)
    truth = job.stream.truth
    clicks = {int(np.frombuffer(p, job.stream.labels.dtype)["id"][0])
              for p in read_topic(url, job.stream.topics[1])}
    # judged on what the broker holds: an impression or click it lost is reported apart
    in_time = [k for k, d in truth.items() if 0 <= d <= window_ms - lateness_ms
               and k in topic_ids and k in clicks]
    never = [k for k, d in truth.items() if d < 0 or d > window_ms + lateness_ms]
    lost = [k for k in in_time if label.get(k) != 1.0]
    wrong = [k for k in never if k in topic_ids and label.get(k, 0.0) != 0.0]
    predicted: Counter[int] = Counter()
    unkeyed = 0
    for payload in read_topic(url, predictions_topic(job.stream.topics[0]), None):
        message = json.loads(payload)
        unkeyed += "key" not in message or "step" not in message
        predicted[message.get("key")] += 1
    not_predicted = topic_ids - set(predicted)
    return {"events_in_topic": len(topic_ids), "trained": len(kept),
            "labels_sent": sum(1 for d in truth.values() if d >= 0),
            "events_sent_not_in_topic": len(set(truth) - topic_ids),
            "clicks_sent_not_in_topic": len({k for k, d in truth.items() if d >= 0} - clicks),
            "missing": len(topic_ids - set(counts)),
            "repeated": sum(c - 1 for c in counts.values() if c > 1),
            "clicks_lost": len(lost), "wrong_expiry": len(wrong),
            "predictions": sum(predicted.values()), "not_predicted": len(not_predicted),
            "predictions_without_key_or_step": unkeyed,
            "ok": (set(counts) == topic_ids and max(counts.values(), default=1) == 1
                   and not lost and not wrong and not not_predicted and not unkeyed)}
