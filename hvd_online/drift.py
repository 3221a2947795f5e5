"""Concept-drift detection on the prequential loss: the Page-Hinkley test.

Every rank feeds it the same global per-step loss, so every rank flags the same step.

>>> detector = PageHinkley(delta=0.005, threshold=0.5, min_steps=10)
>>> [detector.update(0.1) for _ in range(50)].count(True)
0
>>> flags = [detector.update(0.6) for _ in range(10)]
>>> flags.index(True)  # a few steps after the loss jumps
1
>>> restored = PageHinkley(delta=0.005, threshold=0.5, min_steps=10)
>>> restored.restore(detector.snapshot()); restored.snapshot() == detector.snapshot()
True
"""

from __future__ import annotations

import math
from typing import Any


class PageHinkley:
    """Flags a sustained increase of the mean of a series (here: the loss).

    `delta` is the magnitude of change tolerated, `threshold` how much cumulative evidence
    raises a flag; after a flag the detector restarts, so it can flag the next drift.
    """

    def __init__(self, delta: float = 0.005, threshold: float = 1.0, min_steps: int = 30) -> None:
        self.delta = delta
        self.threshold = threshold
        self.min_steps = min_steps
        self.reset()

    def reset(self) -> None:
        self.steps = 0
        self.mean = 0.0
        self.cumulative = 0.0
        self.minimum = 0.0

    def update(self, value: float) -> bool:
        if not math.isfinite(value):
            return False
        self.steps += 1
        self.mean += (value - self.mean) / self.steps
        self.cumulative += value - self.mean - self.delta
        self.minimum = min(self.minimum, self.cumulative)
        if self.steps >= self.min_steps and self.cumulative - self.minimum > self.threshold:
            self.reset()
            return True
        return False

    def snapshot(self) -> dict[str, Any]:
        """The detector's evidence so far (a checkpoint carries it: a resumed run flags the
        same steps as an uninterrupted one)."""
        return {"steps": self.steps, "mean": self.mean, "cumulative": self.cumulative,
                "minimum": self.minimum}

    def restore(self, state: dict[str, Any]) -> None:
        self.steps = int(state["steps"])
        self.mean = float(state["mean"])
        self.cumulative = float(state["cumulative"])
        self.minimum = float(state["minimum"])
