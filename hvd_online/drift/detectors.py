"""Concept-drift detection on the prequential loss: Page-Hinkley and ADWIN.

Both watch the global per-step mean loss (the same on every rank, since it comes out of the
step's allreduce), so every rank sees the same signal at the same step, at any world size.
Both are one-sided: only a rising loss is drift (a falling one is learning). Each says
WARNING when evidence builds up (a challenger may start) and DRIFT when it is conclusive.

>>> detector = PageHinkley()  # delta and threshold in units of the loss' own noise
>>> rng = np.random.default_rng(0)
>>> Signal.DRIFT in [detector.update(v) for v in rng.normal(0.1, 0.01, 100)]
False
>>> signals = [detector.update(v) for v in rng.normal(0.15, 0.01, 10)]
>>> signals.index(Signal.WARNING), signals.index(Signal.DRIFT)  # a few steps after the jump
(1, 3)
>>> tiny = PageHinkley()  # the same losses a thousand times smaller: the same steps
>>> rng = np.random.default_rng(0)
>>> Signal.DRIFT in [tiny.update(v) for v in rng.normal(1e-4, 1e-5, 100)]
False
>>> [tiny.update(v) for v in rng.normal(1.5e-4, 1e-5, 10)] == signals
True
>>> restored = PageHinkley()
>>> restored.restore(detector.snapshot()); restored.snapshot() == detector.snapshot()
True
"""

from __future__ import annotations

import enum
import math
from collections import deque
from typing import Any, Protocol

import numpy as np


class Signal(enum.Enum):
    NONE = "none"
    WARNING = "warning"
    DRIFT = "drift"


class Detector(Protocol):
    def update(self, value: float) -> Signal: ...

    def snapshot(self) -> dict[str, Any]: ...

    def restore(self, state: dict[str, Any]) -> None: ...


class PageHinkley:
    """Flags a sustained increase of the level of a series (here: the loss).

    `delta` is the change tolerated per step and `threshold` the cumulative evidence that
    raises a flag; `warning` is the fraction of it that raises a warning first. After a flag
    the detector restarts, so it can flag the next drift.

    `scale="spread"` (the default) measures both in units of the series' own step-to-step
    noise: the median absolute difference of consecutive values over the last `span` steps,
    read as a standard deviation. A median ignores the steep first steps of a learning curve
    and a drift's own jump. The same defaults then flag a regression loss near 0.007 as they
    flag a log loss near 0.5: scaling the series by any factor flags the same steps. Each
    value is compared with the series' recent level, the median of the `memory` values
    before it.

    `scale="absolute"` is hvd-online 0.1's detector: loss units, and each value compared with
    the mean since the last flag. That mean still carries the learning curve's first, high
    losses, so a drift that takes the loss back up only to it is never flagged (River's
    FriedmanDrift regression stream was not; benchmarks.detection replays 16 streams through
    both, which is where the defaults come from).
    """

    def __init__(self, delta: float = 0.5, threshold: float = 20.0, min_steps: int = 30,
                 warning: float = 0.5, scale: str = "spread", span: int = 100,
                 memory: int = 50) -> None:
        if scale not in ("spread", "absolute"):
            raise ValueError(f"scale is 'spread' or 'absolute', not {scale!r}")
        self.delta = delta
        self.threshold = threshold
        self.min_steps = min_steps
        self.warning = warning
        self.scale = scale
        self.diffs: deque[float] = deque(maxlen=span)
        self.recent: deque[float] = deque(maxlen=memory)
        self.last: float | None = None
        self.reset()

    def reset(self) -> None:
        """Restarts the evidence and the level (after a flag); the spread estimate goes on."""
        self.steps = 0
        self.mean = 0.0
        self.cumulative = 0.0
        self.minimum = 0.0
        self.recent.clear()

    def update(self, value: float) -> Signal:
        if not math.isfinite(value):
            return Signal.NONE
        self.steps += 1
        self.mean += (value - self.mean) / self.steps
        if self.scale == "absolute":
            self.cumulative += value - self.mean - self.delta
        else:
            level = float(np.median(self.recent)) if self.recent else value
            unit = self._unit(value, level)
            self.recent.append(value)
            if self.steps <= self.min_steps:  # the level and the spread need values first
                return Signal.NONE
            self.cumulative += (value - level) / unit - self.delta
        self.minimum = min(self.minimum, self.cumulative)
        if self.steps < self.min_steps:
            return Signal.NONE
        evidence = self.cumulative - self.minimum
        if evidence > self.threshold:
            self.reset()
            return Signal.DRIFT
        return Signal.WARNING if evidence > self.warning * self.threshold else Signal.NONE

    def _unit(self, value: float, level: float) -> float:
        """The current spread, updated with `value`; a series that has not moved gets a floor
        of a millionth of its level."""
        if self.last is not None:
            self.diffs.append(abs(value - self.last))
        self.last = value
        return max(self.spread, 1e-6 * abs(level), 1e-12)

    @property
    def spread(self) -> float:
        """The unit of `scale="spread"`, as a standard deviation of the series: for independent
        normal values X1, X2, the median of |X1 - X2| is 0.6745 * sqrt(2) sigma."""
        return float(np.median(self.diffs)) / (0.6745 * math.sqrt(2)) if self.diffs else 0.0

    def snapshot(self) -> dict[str, Any]:
        """The detector's evidence so far (a checkpoint carries it: a resumed run flags the
        same steps as an uninterrupted one)."""
        return {"steps": self.steps, "mean": self.mean, "cumulative": self.cumulative,
                "minimum": self.minimum, "diffs": list(self.diffs),
                "recent": list(self.recent), "last": self.last}

    def restore(self, state: dict[str, Any]) -> None:
        self.steps = int(state["steps"])
        self.mean = float(state["mean"])
        self.cumulative = float(state["cumulative"])
        self.minimum = float(state["minimum"])
        # a checkpoint of hvd-online 0.1 has neither: they are estimated afresh
        self.diffs.clear()
        self.diffs.extend(float(d) for d in state.get("diffs", ()))
        self.recent.clear()
        self.recent.extend(float(v) for v in state.get("recent", ()))
        self.last = None if state.get("last") is None else float(state["last"])


class Adwin:
    """ADWIN (Bifet & Gavaldà, 2007) over the last `max_window` values, in its exact form:
    every `clock` values, each split of the window into an older and a newer part is tested
    with ADWIN's variance-based bound (the one River and scikit-multiflow use). When the newer
    part's mean is higher by more than the bound at confidence `delta`, that is DRIFT and the
    older part is dropped; at confidence `warning_delta` (looser) it is a WARNING.

    The window holds per-step means, not samples, so `max_window` steps is cheap to keep
    exactly (a numpy pass per check) and needs no exponential histogram. The bound's range
    term assumes values of order 1 (a classifier's log loss or error rate), which makes ADWIN
    slower than Page-Hinkley to flag a jump but steadier on noise; the quality benchmark
    measures both.

    >>> detector = Adwin(delta=0.002, min_steps=20)
    >>> rng = np.random.default_rng(0)
    >>> flat = [detector.update(v) for v in rng.normal(0.1, 0.02, 400)]
    >>> Signal.DRIFT in flat
    False
    >>> jumped = [detector.update(v) for v in rng.normal(0.5, 0.02, 50)]
    >>> jumped.index(Signal.DRIFT), detector.width  # the 400 old values are dropped
    (23, 50)
    """

    def __init__(self, delta: float = 0.002, warning_delta: float = 0.02, min_steps: int = 30,
                 max_window: int = 2000, clock: int = 4, min_side: int = 5) -> None:
        self.delta = delta
        self.warning_delta = warning_delta
        self.min_steps = min_steps
        self.clock = clock
        self.min_side = min_side
        self.window: deque[float] = deque(maxlen=max_window)
        self.steps = 0

    @property
    def width(self) -> int:
        return len(self.window)

    def update(self, value: float) -> Signal:
        if not math.isfinite(value):
            return Signal.NONE
        self.window.append(value)
        self.steps += 1
        if (self.steps < self.min_steps or self.steps % self.clock
                or len(self.window) < 2 * self.min_side):
            return Signal.NONE
        cut, warned = self._test()
        if cut:
            for _ in range(cut):
                self.window.popleft()
            self.steps = 0  # like Page-Hinkley: new evidence before the next flag
            return Signal.DRIFT
        return Signal.WARNING if warned else Signal.NONE

    def _test(self) -> tuple[int, bool]:
        """(how many old values to drop, 0 if none; whether the warning bound was crossed)."""
        values = np.fromiter(self.window, float)
        n = len(values)
        n0 = np.arange(self.min_side, n - self.min_side + 1)  # size of the older part
        n1 = n - n0
        prefix = np.cumsum(values)[n0 - 1]
        gap = (values.sum() - prefix) / n1 - prefix / n0  # newer mean - older mean
        m = 1 / (n0 - self.min_side + 1) + 1 / (n1 - self.min_side + 1)
        variance = values.var()

        def bound(delta: float) -> np.ndarray:
            dd = math.log(2 * math.log(n) / delta)
            return np.sqrt(2 * m * variance * dd) + 2 / 3 * dd * m

        over = np.flatnonzero(gap > bound(self.delta))
        if len(over):
            return int(n0[over[-1]]), True  # drop the most old values the test allows
        return 0, bool(np.any(gap > bound(self.warning_delta)))

    def snapshot(self) -> dict[str, Any]:
        return {"window": list(self.window), "steps": self.steps}

    def restore(self, state: dict[str, Any]) -> None:
        self.window.clear()
        self.window.extend(float(v) for v in state["window"])
        self.steps = int(state["steps"])
