"""Pre-labelled samples on one topic: each step a window of them, decoded; what does not
decode goes to the dead-letter topic."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from hvd_online.inputs.batch import Batch, decode_or_dead_letter
from hvd_online.model.prediction_copy import PredictionCopy
from hvd_online.state.run_state import Stateful
from streams.codecs import Codec, DeadLetters
from streams.source import PartitionSource
from streams.window import BatchWindow


class LabelledInput:
    """Pre-labelled samples on one topic: each step a window of them."""

    operators: dict[str, Stateful] = {}
    counters: tuple[str, ...] = ()

    def __init__(self, sources: Sequence[PartitionSource], codec: Codec,
                 dead_letters: DeadLetters, batch_size: int, max_wait_s: float) -> None:
        self.sources = list(sources)
        self.codec = codec
        self.dead_letters = [dead_letters]
        self.window = BatchWindow(self.sources, batch_size, max_wait_s,
                                  sample_counts=codec.sample_counts)

    def start(self, make_copy: Callable[[], PredictionCopy]) -> None:
        """Nothing to predict here."""

    def drain(self) -> bool:
        """Nothing read ahead: a step's take is what its checkpoint covers."""
        return False

    def stop(self) -> None:
        """No thread of its own."""

    def take(self, step: int) -> Batch:
        decoded = decode_or_dead_letter(self.codec, self.window.collect(),
                                        self.dead_letters[0])
        return Batch(decoded.rows, decoded.publish_ms.astype(np.float64), decoded.sizes)

    def report_fields(self, sums: dict[str, float]) -> dict[str, Any]:
        return {}
