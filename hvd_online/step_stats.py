"""The per-step vector every rank contributes to the step's allreduce (summed).

Flags and counters ride on the same collective as the gradients, so control and metrics
reach every rank at the same step boundary without a side channel. Per-rank and
per-partition values are "gathered" by summing vectors in which each rank fills its own slots.

>>> layout = StatsLayout(world_size=2, partitions=4)
>>> local = layout.local(rank=1, flags={"save": 1}, step_time_s=0.5, fill=0.25,
...                      partitions={1: (10, 40), 3: (7, 0)}, rejected=2, duplicates=0)
>>> summed = layout.decode(np.concatenate([[1.0, 0.5, 8.0], local]))
>>> summed.flags["save"], summed.rank_step_time_s, summed.partition_backlog
(1.0, [0.0, 0.5], [0, 10, 0, 7])
>>> summed.partition_lag_ms
[0, 40, 0, 0]
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

FLAGS = ("stop", "save", "idle", "sigterm")


@dataclass(frozen=True)
class GlobalStats:
    loss_sum: float
    metric_sum: float
    count: int
    flags: dict[str, float]
    rejected: int
    duplicates: int
    rank_step_time_s: list[float]
    rank_fill: list[float]
    partition_backlog: list[int]
    partition_lag_ms: list[int]


class StatsLayout:
    HEAD = 3  # loss_sum, metric_sum, count: computed inside the step, before `local`

    def __init__(self, world_size: int, partitions: int) -> None:
        self.world_size = world_size
        self.partitions = partitions
        self.length = len(FLAGS) + 2 + 2 * world_size + 2 * partitions

    def local(self, rank: int, flags: Mapping[str, int], step_time_s: float, fill: float,
              partitions: Mapping[int, tuple[int, int]], rejected: int,
              duplicates: int) -> np.ndarray:
        """`partitions`: {partition: (messages waiting, age of the oldest in ms)}."""
        v = np.zeros(self.length, dtype=np.float32)
        for i, name in enumerate(FLAGS):
            v[i] = flags.get(name, 0)
        base = len(FLAGS)
        v[base], v[base + 1] = rejected, duplicates
        base += 2
        v[base + rank] = step_time_s
        v[base + self.world_size + rank] = fill
        base += 2 * self.world_size
        for partition, (waiting, lag_ms) in partitions.items():
            v[base + partition] = waiting
            v[base + self.partitions + partition] = lag_ms
        return v

    def decode(self, summed: np.ndarray) -> GlobalStats:
        head, rest = summed[: self.HEAD], summed[self.HEAD :]
        n, w = len(FLAGS), self.world_size
        return GlobalStats(
            loss_sum=float(head[0]),
            metric_sum=float(head[1]),
            count=int(round(head[2])),
            flags={name: float(rest[i]) for i, name in enumerate(FLAGS)},
            rejected=int(round(rest[n])),
            duplicates=int(round(rest[n + 1])),
            rank_step_time_s=[float(t) for t in rest[n + 2 : n + 2 + w]],
            rank_fill=[float(f) for f in rest[n + 2 + w : n + 2 + 2 * w]],
            partition_backlog=[int(round(b)) for b in rest[n + 2 + 2 * w :][: self.partitions]],
            partition_lag_ms=[int(round(b)) for b in rest[n + 2 + 2 * w :][self.partitions :]],
        )
