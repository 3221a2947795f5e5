"""What the training loop yields once per step: consumed by the log printer, the console and
the tests alike (River's progressive-validation style)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class StepReport:
    step: int
    #: samples in this step across all ranks
    count: int
    #: samples trained so far across all ranks
    samples_total: int
    #: prequential mean loss/metric of this step's samples (before the update); NaN if none
    loss: float
    metric: float
    applied: bool
    elapsed_s: float
    samples_per_s: float
    rank_step_time_s: list[float] = field(default_factory=list)
    rank_fill: list[float] = field(default_factory=list)
    #: each rank's resident memory and CPU use (% of one core) at its last step, and host
    rank_rss_mb: list[float] = field(default_factory=list)
    rank_cpu_percent: list[float] = field(default_factory=list)
    rank_hosts: list[str] = field(default_factory=list)
    #: publish -> trained p50 / p99 (ms) of each rank's last trained window
    rank_freshness_p50_ms: list[float] = field(default_factory=list)
    rank_freshness_p99_ms: list[float] = field(default_factory=list)
    #: wall clock at the step's end (Unix seconds): the console's time axis
    time_s: float = 0.0
    #: per partition: messages received but not yet trained, and the oldest one's age
    partition_backlog: list[int] = field(default_factory=list)
    partition_lag_ms: list[int] = field(default_factory=list)
    rejected_total: int = 0
    #: dead letters so far by kind of reason (`streams.codecs.REASON_KINDS`)
    rejected_by_reason: dict[str, int] = field(default_factory=dict)
    duplicates_total: int = 0
    skipped_steps: int = 0
    #: raw event streams ([join]): loss/metric of the predictions made at the events' arrival,
    #: scored now that their labels came (NaN if none this step), and the join's figures
    delayed_loss: float = math.nan
    delayed_metric: float = math.nan
    join: dict[str, dict[str, float]] | None = None
    #: dynamic embedding tables by layer name: rows owned and running totals of inserts,
    #: evictions, default-row hits and IDs left out by a full table (equal on every rank)
    tables: dict[str, dict[str, int]] | None = None
    #: the drift detector flagged this step
    drift: bool = False
    #: what the drift response did at this step: "boost", "challenger" (started), "restarted"
    #: (at a drift flag, from the model), "promoted" (the challenger replaced the model),
    #: "dropped" (it never won)
    drift_action: str | None = None
    #: a running challenger's prequential mean loss on this step's samples (NaN otherwise)
    challenger_loss: float = math.nan
    #: set on the step where a checkpoint was written
    checkpoint: str | None = None
    #: checkpoints the disk refused so far in this process (full, read-only)
    checkpoint_failures: int = 0
    #: "max_samples", "max_steps", "idle", "stop", "sigterm" on the last step
    stopped: str | None = None

    def as_json(self) -> dict[str, Any]:
        """JSON-safe (NaN becomes None)."""
        data = asdict(self)
        for key in ("loss", "metric", "delayed_loss", "delayed_metric", "challenger_loss"):
            if isinstance(data[key], float) and not math.isfinite(data[key]):
                data[key] = None
        return data

    def log_line(self) -> str:
        loss = f"{self.loss:.5f}" if math.isfinite(self.loss) else "-"
        metric = f"{self.metric:.4f}" if math.isfinite(self.metric) else "-"
        line = (f"step {self.step:6d}  samples {self.samples_total:9,d}  loss {loss:>9}  "
                f"metric {metric:>7}  {self.samples_per_s:9,.0f} samples/s  "
                f"rejected {self.rejected_total}")
        if self.join is not None:  # raw event streams: the honest online figures too
            delayed = (f"{self.delayed_loss:.5f} / {self.delayed_metric:.4f}"
                       if math.isfinite(self.delayed_loss) else "-")
            pending = self.join["pending"]
            line += (f"  delayed loss/metric {delayed}  pending {pending['events']:,.0f}"
                     f" events {pending['labels']:,.0f} labels")
        return line
