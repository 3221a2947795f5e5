"""The per-step vector every rank contributes to the step's allreduce (summed).

Flags and counters ride on the same collective as the gradients, so control and metrics
reach every rank at the same step boundary without a side channel. Per-rank and
per-partition values are "gathered" by summing vectors in which each rank fills its own slots.
`report_fields` turns the summed vector straight into `StepReport` fields.

>>> layout = StatsLayout(world_size=2, partitions=4, counters=("joined",))
>>> local = layout.local(rank=1, flags={Flag.SAVE}, step_time_s=0.5, fill=0.25,
...                      health=(700.0, 95.0, 30.0, 80.0), partitions={1: (10, 40), 3: (7, 0)},
...                      rejected={"wrong size": 2}, duplicates=0, sums={"joined": 5})
>>> summed = np.concatenate([[1.0, 0.5, 8.0], local])
>>> layout.count(summed), layout.flags(summed)
(8, {<Flag.SAVE: 'save'>})
>>> fields = layout.report_fields(summed)
>>> fields["loss"], fields["rank_step_time_s"], fields["partition_backlog"]
(0.125, [0.0, 0.5], [0, 10, 0, 7])
>>> fields["rank_rss_mb"], fields["rank_cpu_percent"]
([0.0, 700.0], [0.0, 95.0])
>>> fields["partition_lag_ms"], fields["rejected_by_reason"], layout.sums(summed)
([0, 40, 0, 0], {'wrong size': 2}, {'joined': 5.0})
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence, Set
from typing import Any

import numpy as np

from hvd_online.sync.control import Flag
from streams.codecs import REASON_KINDS

#: what the step itself computes, in front of every rank's local part
HEAD = ("loss_sum", "metric_sum", "count")
LOSS_SUM, METRIC_SUM, COUNT = range(len(HEAD))
FLAGS = tuple(Flag)
#: dead letters by kind of reason, then duplicates dropped: running totals of each rank
COUNTS = len(REASON_KINDS) + 1
#: what each rank fills in its own slots: step time, window fill, resident MB, CPU %, and
#: publish -> trained p50 and p99 of its last trained window (ms)
PER_RANK = ("rank_step_time_s", "rank_fill", "rank_rss_mb", "rank_cpu_percent",
            "rank_freshness_p50_ms", "rank_freshness_p99_ms")


def mean_or_nan(total: float, count: float) -> float:
    return total / count if count else math.nan


class StatsLayout:
    """The one owner of the vector's slots: `local` writes a rank's part, the rest read the
    summed vector by name."""

    def __init__(self, world_size: int, partitions: int, counters: Sequence[str] = ()) -> None:
        self.world_size = world_size
        self.partitions = partitions
        #: named sums the step's input adds (e.g. the join's), after the per-partition slots
        self.counters = tuple(counters)
        self._counters_at = len(FLAGS) + COUNTS + len(PER_RANK) * world_size + 2 * partitions
        self.length = self._counters_at + len(self.counters)

    def local(self, rank: int, flags: Set[Flag], step_time_s: float, fill: float,
              health: tuple[float, ...], partitions: Mapping[int, tuple[int, int]],
              rejected: Mapping[str, int], duplicates: int,
              sums: Mapping[str, float] | None = None) -> np.ndarray:
        """`health`: (resident MB, CPU %, freshness p50 ms, p99 ms); `partitions`:
        {partition: (messages waiting, age of the oldest in ms)}; `rejected`: dead letters
        so far by `reason_kind`."""
        v = np.zeros(self.length, dtype=np.float32)
        for i, flag in enumerate(FLAGS):
            v[i] = flag in flags
        base = len(FLAGS)
        for kind, n in rejected.items():
            kind = kind if kind in REASON_KINDS else "other"
            v[base + REASON_KINDS.index(kind)] += n
        v[base + len(REASON_KINDS)] = duplicates
        base += COUNTS
        for i, value in enumerate((step_time_s, fill, *health)):
            v[base + i * self.world_size + rank] = value
        base += len(PER_RANK) * self.world_size
        for partition, (waiting, lag_ms) in partitions.items():
            v[base + partition] = waiting
            v[base + self.partitions + partition] = lag_ms
        for i, name in enumerate(self.counters):
            v[self._counters_at + i] = (sums or {})[name]
        return v

    def count(self, summed: np.ndarray) -> int:
        """Samples in this step across all ranks."""
        return int(round(summed[COUNT]))

    def flags(self, summed: np.ndarray) -> set[Flag]:
        """The flags any rank raised this step."""
        rest = summed[len(HEAD) :]
        return {flag for i, flag in enumerate(FLAGS) if rest[i] > 0}

    def report_fields(self, summed: np.ndarray) -> dict[str, Any]:
        """The `StepReport` fields this vector carries."""
        n, w, p = len(FLAGS), self.world_size, self.partitions
        rest = summed[len(HEAD) :]
        rejected = [int(round(r)) for r in rest[n : n + len(REASON_KINDS)]]
        per_rank = rest[n + COUNTS : n + COUNTS + len(PER_RANK) * w]
        at = n + COUNTS + len(PER_RANK) * w
        per_partition = rest[at : at + 2 * p]
        count = self.count(summed)
        return {
            "count": count,
            "loss": mean_or_nan(float(summed[LOSS_SUM]), count),
            "metric": mean_or_nan(float(summed[METRIC_SUM]), count),
            "rejected_total": sum(rejected),
            "rejected_by_reason": {kind: r for kind, r in zip(REASON_KINDS, rejected,
                                                              strict=True) if r},
            "duplicates_total": int(round(rest[n + len(REASON_KINDS)])),
            **{name: [float(value) for value in per_rank[i * w : (i + 1) * w]]
               for i, name in enumerate(PER_RANK)},
            "partition_backlog": [int(round(b)) for b in per_partition[:p]],
            "partition_lag_ms": [int(round(b)) for b in per_partition[p:]],
        }

    def sums(self, summed: np.ndarray) -> dict[str, float]:
        """The named sums, over all ranks."""
        at = len(HEAD) + self._counters_at
        return {name: float(summed[at + i]) for i, name in enumerate(self.counters)}
