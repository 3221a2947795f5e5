"""What a step trains on. The trainer asks its input for a `Batch` once per step; the input
owns its sources and any stateful operators (their snapshots go into checkpoints).

- `LabelledInput` (labelled.py): pre-labelled samples on one topic (a count/time window,
  decode, dead letters).
- `JoinedInput` (joined.py): raw events predicted on arrival and joined with labels that come
  later on another topic.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import chain
from typing import Any, Protocol

import numpy as np

from hvd_online.model.prediction_copy import PredictionCopy
from hvd_online.state.run_state import Stateful
from streams.codecs import Codec, DeadLetters, Rejected
from streams.source import Messages, PartitionSource, Record


@dataclass(frozen=True)
class Batch:
    #: samples to train on, of the template's schema dtype
    rows: np.ndarray
    #: publish time (ms) of the messages that made samples trainable, and how many samples
    #: each made (freshness: publish -> applied)
    published_ms: np.ndarray
    sizes: np.ndarray
    #: this rank's sums for the step's stats vector, by the input's `counters` names
    sums: dict[str, float] = field(default_factory=dict)


class StepInput(Protocol):
    sources: list[PartitionSource]
    #: stateful operators by checkpoint key
    operators: dict[str, Stateful]
    #: names of the sums every Batch carries (summed over ranks each step)
    counters: tuple[str, ...]
    dead_letters: list[DeadLetters]

    def start(self, make_copy: Callable[[], PredictionCopy]) -> None:
        """Before the first take. An input that predicts on a thread of its own calls
        `make_copy` for a copy of the trained weights, which each take refreshes."""
        ...

    def take(self, step: int) -> Batch:
        """The samples of step `step` (called on the training thread, between steps)."""
        ...

    def drain(self) -> bool:
        """At a clean stop, before one last take: stop reading ahead, so that the last take
        gets everything read (and predicted) so far and the final checkpoint covers it; then
        nothing predicted is read, and published, again after a restart. True if the input
        reads ahead (then the trainer makes that last take and step), the same on every
        rank."""
        ...

    def stop(self) -> None:
        """After the last take (stops any thread the input started)."""
        ...

    def report_fields(self, sums: dict[str, float]) -> dict[str, Any]:
        """StepReport fields from the step's summed counters."""
        ...


@dataclass(frozen=True)
class Decoded:
    """Batches of messages decoded: the rows, and per message that decoded its sample count,
    publish time and partition (columns, in the order read)."""

    rows: np.ndarray
    sizes: np.ndarray  # int64, rows per message
    publish_ms: np.ndarray  # int64
    partitions: np.ndarray  # int64
    #: the messages that did not decode, and why (for the dead-letter topic)
    rejected: list[tuple[Record, Rejected]]

    def row_times(self, time_field: str | None) -> np.ndarray:
        """Each row's time (ms): its `time_field`, or else its message's publish time."""
        if time_field is not None:
            return self.rows[time_field].astype(np.int64)
        return np.repeat(self.publish_ms, self.sizes)

    def row_partitions(self) -> np.ndarray:
        return np.repeat(self.partitions, self.sizes)


def decode(codec: Codec, batches: Sequence[Messages]) -> Decoded:
    """One decode of every message of `batches` (one numpy pass, not one per batch)."""
    payloads = list(chain.from_iterable(m.payloads for m in batches))
    rows, rejected = codec.decode(payloads)
    count = len(payloads)
    sizes = codec.sample_counts(payloads)
    publish = np.fromiter(chain.from_iterable(m.publish_ms for m in batches), np.int64, count)
    partitions = np.repeat(np.array([m.partition for m in batches], np.int64),
                           [len(m) for m in batches])
    if not rejected:
        return Decoded(rows, sizes, publish, partitions, [])
    keep = np.ones(count, bool)
    keep[[item.index for item in rejected]] = False
    return Decoded(rows, sizes[keep], publish[keep], partitions[keep],
                   [(message_at(batches, item.index), item) for item in rejected])


def message_at(batches: Sequence[Messages], index: int) -> Record:
    """Message `index` of the batches counted one after another, as a Record."""
    for messages in batches:
        if index < len(messages):
            return messages.record(index)
        index -= len(messages)
    raise IndexError(index)


def decode_or_dead_letter(codec: Codec, batches: Sequence[Messages],
                          dead_letters: DeadLetters) -> Decoded:
    """`decode`, with the rejected messages sent to the dead-letter topic."""
    decoded = decode(codec, batches)
    for record, why in decoded.rejected:
        dead_letters.send(record, why)
    return decoded
