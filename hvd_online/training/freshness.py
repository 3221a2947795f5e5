"""Freshness: how long after its publication a sample changed the weights.

Every trained sample adds `applied_time - publish_time` to a histogram with fixed log-spaced
buckets: constant memory on an endless stream, ranks merge by adding counts, and a quantile is
good to half a bucket (under 2%). Publish times come from the producer's clock, so across hosts
the figure includes their clock skew.

>>> h = FreshnessHistogram()
>>> h.add(np.array([10.0, 20.0, 1000.0]), np.array([98, 1, 1]))
>>> h.count, [round(h.quantile(q)) for q in (0.5, 0.99, 1.0)]  # within 2% of 10, 20, 1000
(100, [10, 20, 987])
>>> merged = FreshnessHistogram.from_json(h.to_json()); merged.merge(h); merged.count
200
"""

from __future__ import annotations

from typing import Any

import numpy as np

# 0 ms, then 1 ms .. 1 hour in steps of ~3.5%; anything longer lands in the last bucket
EDGES_MS = np.concatenate([[0.0], np.geomspace(1.0, 3_600_000.0, 440)])


class FreshnessHistogram:
    def __init__(self) -> None:
        self.counts = np.zeros(len(EDGES_MS), dtype=np.int64)

    def add(self, latency_ms: np.ndarray, weights: np.ndarray) -> None:
        """`weights[i]` samples became part of the weights `latency_ms[i]` after publication."""
        buckets = np.searchsorted(EDGES_MS, np.maximum(latency_ms, 0.0), side="right") - 1
        self.counts += np.bincount(buckets, weights=weights,
                                   minlength=len(EDGES_MS)).astype(np.int64)

    @property
    def count(self) -> int:
        return int(self.counts.sum())

    def quantile(self, q: float) -> float:
        """The geometric middle of the bucket holding the q-quantile."""
        if not self.count:
            return float("nan")
        index = int(np.searchsorted(np.cumsum(self.counts), q * self.count, side="left"))
        low = EDGES_MS[index]
        high = EDGES_MS[index + 1] if index + 1 < len(EDGES_MS) else low
        return float(np.sqrt(low * high)) if low > 0 else float(high)

    def merge(self, other: FreshnessHistogram) -> None:
        self.counts += other.counts

    def summary(self) -> dict[str, Any]:
        return {"samples": self.count, "p50_ms": round(self.quantile(0.5), 1),
                "p99_ms": round(self.quantile(0.99), 1), "max_ms": round(self.quantile(1.0), 1),
                "histogram": self.to_json()}

    def to_json(self) -> dict[str, int]:
        """Non-empty buckets only: {bucket index: samples}."""
        return {str(i): int(c) for i, c in enumerate(self.counts) if c}

    @classmethod
    def from_json(cls, data: dict[str, int]) -> FreshnessHistogram:
        histogram = cls()
        for index, count in data.items():
            histogram.counts[int(index)] += count
        return histogram


def weighted_quantiles(values: np.ndarray, weights: np.ndarray,
                       qs: tuple[float, ...]) -> tuple[float, ...]:
    """Exact quantiles of a small window (`weights[i]` samples took `values[i]`).

    >>> weighted_quantiles(np.array([5.0, 1.0, 100.0]), np.array([1, 98, 1]), (0.5, 0.99))
    (1.0, 5.0)
    """
    order = np.argsort(values)
    cumulative = np.cumsum(weights[order])
    at = np.searchsorted(cumulative, np.array(qs) * cumulative[-1], side="left")
    return tuple(float(values[order][min(i, len(values) - 1)]) for i in at)
