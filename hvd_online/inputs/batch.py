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
from typing import Any, Protocol

import numpy as np

from hvd_online.model.prediction_copy import PredictionCopy
from hvd_online.state.run_state import Stateful
from streams.codecs import Codec, DeadLetters, Rejected
from streams.source import PartitionSource, Record


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

    def stop(self) -> None:
        """After the last take (stops any thread the input started)."""
        ...

    def report_fields(self, sums: dict[str, float]) -> dict[str, Any]:
        """StepReport fields from the step's summed counters."""
        ...


def decode(codec: Codec, records: Sequence[Record]
           ) -> tuple[np.ndarray, list[Record], list[tuple[Record, Rejected]]]:
    """Rows of the records that decode, those records, and the rejected ones with why."""
    rows, rejected = codec.decode([r.payload for r in records])
    if not rejected:
        return rows, list(records), []
    dropped = {item.index for item in rejected}
    return (rows, [r for i, r in enumerate(records) if i not in dropped],
            [(records[item.index], item) for item in rejected])


def row_times(rows: np.ndarray, records: Sequence[Record], sizes: Sequence[int],
              time_field: str | None) -> np.ndarray:
    """Each decoded row's time (ms): its `time_field`, or else its message's publish time
    (`sizes`: rows per record)."""
    if time_field is not None:
        return rows[time_field].astype(np.int64)
    return np.repeat([r.publish_ms for r in records], sizes).astype(np.int64)


def decode_or_dead_letter(codec: Codec, records: Sequence[Record],
                          dead_letters: DeadLetters) -> tuple[np.ndarray, list[Record]]:
    """Rows of the records that decode, and those records (rejected ones go to the DLQ)."""
    rows, accepted, rejected = decode(codec, records)
    for record, why in rejected:
        dead_letters.send(record, why)
    return rows, accepted
