"""The run's figures for Prometheus, served read-only at GET /metrics.

`RunMetrics` consumes the same step reports as the dashboard (JSON form) and keeps its own
registry (not the process-wide default), so each app - and each test - starts from zero.
Reports carry running totals; counters advance by the difference, so they only go up, also
across a resume (the first report adds what the run had before).

>>> metrics = RunMetrics(serving_version=lambda: 7)
>>> metrics.observe({"step": 3, "samples_total": 96, "loss": 0.5, "metric": 0.25,
...                  "partition_backlog": [2], "partition_lag_ms": [1500],
...                  "rejected_by_reason": {"wrong size": 1}, "duplicates_total": 0,
...                  "skipped_steps": 0, "drift": False, "drift_action": None, "join": None,
...                  "checkpoint": None})
>>> text = metrics.render().decode()
>>> "hvd_online_samples_total 96.0" in text, "hvd_online_serving_version 7.0" in text
(True, True)
>>> 'hvd_online_partition_lag_seconds{partition="0"} 1.5' in text
True
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

#: predict latency buckets in seconds: the target is p99 < 20 ms
PREDICT_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0)


class RunMetrics:
    def __init__(self, serving_version: Callable[[], int]) -> None:
        self.registry = registry = CollectorRegistry()

        def counter(name: str, doc: str, labels: tuple[str, ...] = ()) -> Counter:
            return Counter(f"hvd_online_{name}", doc, labels, registry=registry)

        def gauge(name: str, doc: str, labels: tuple[str, ...] = ()) -> Gauge:
            return Gauge(f"hvd_online_{name}", doc, labels, registry=registry)

        self.samples = counter("samples", "Samples trained, all ranks")
        self.steps = counter("steps", "Synchronised steps taken")
        self.loss = gauge("loss", "Prequential mean loss of the last step with samples")
        self.metric = gauge("metric", "Prequential mean metric of the last step with samples")
        self.backlog = gauge("partition_backlog_messages",
                             "Messages received but not yet trained", ("partition",))
        self.lag = gauge("partition_lag_seconds", "Age of the oldest message waiting",
                         ("partition",))
        self.dead_letters = counter("dead_letters", "Malformed messages sent to the DLQ",
                                    ("reason",))
        self.duplicates = counter("duplicates_dropped", "Redelivered messages dropped")
        self.skipped = counter("skipped_steps", "Steps skipped (non-finite gradients)")
        self.checkpoint_failures = counter("checkpoint_failures",
                                           "Checkpoints the disk refused (full, read-only)")
        self.drift = counter("drift_events", "Drift flags and the responses taken", ("action",))
        self.table_rows = gauge("table_rows", "Rows owned by IDs in a dynamic embedding table",
                                ("table",))
        self.table_capacity = gauge("table_capacity_rows",
                                    "Rows a dynamic embedding table holds at most", ("table",))
        self.table_events = {
            name: counter(f"table_{name}", doc, ("table",)) for name, doc in (
                ("inserts", "IDs given a row of their own in a dynamic embedding table"),
                ("evictions", "Rows of quiet IDs reused for new ones"),
                ("default_hits", "Lookups answered by the shared default row"),
                ("full", "New IDs left on the default row: the table was full, none quiet"))}
        self.ranks = gauge("ranks", "Ranks training in this launch")
        per_rank = ("rank", "host")
        self.rank_memory = gauge("rank_resident_memory_bytes",
                                 "Resident memory of each rank's process at its last step",
                                 per_rank)
        self.rank_cpu = gauge("rank_cpu_usage_ratio",
                              "CPU used by each rank's process since its previous step, "
                              "in cores", per_rank)
        self.rank_step = gauge("rank_step_seconds", "Each rank's last step, wall time",
                               per_rank)
        self.predict_latency = Histogram(
            "hvd_online_predict_latency_seconds", "Predict route latency, validation to reply",
            buckets=PREDICT_BUCKETS, registry=registry)
        gauge("serving_version", "Training step of the weights predict answers with") \
            .set_function(lambda: float(serving_version()))
        self._checkpoint_at: float | None = None
        gauge("checkpoint_age_seconds", "Seconds since the last checkpoint (-1: none yet)") \
            .set_function(lambda: -1.0 if self._checkpoint_at is None
                          else time.time() - self._checkpoint_at)
        self._join_counters: dict[str, Counter] = {}
        self._join_gauges: dict[str, Gauge] = {}
        self._last: dict[str, float] = {}

    def _advance(self, counter: Counter, key: str, total: float) -> None:
        """Move `counter` up to the running `total` reported under `key`."""
        delta = total - self._last.get(key, 0.0)
        if delta > 0:
            counter.inc(delta)
        self._last[key] = max(total, self._last.get(key, 0.0))

    def observe(self, report: dict[str, Any]) -> None:
        """One step report, as `StepReport.as_json()` gives it."""
        self._advance(self.samples, "samples", report["samples_total"])
        self._advance(self.steps, "steps", report["step"])
        for gauge, key in ((self.loss, "loss"), (self.metric, "metric")):
            if report.get(key) is not None:
                gauge.set(report[key])
        for p, waiting in enumerate(report.get("partition_backlog", [])):
            self.backlog.labels(str(p)).set(waiting)
        for p, lag_ms in enumerate(report.get("partition_lag_ms", [])):
            self.lag.labels(str(p)).set(lag_ms / 1000)
        for reason, total in report.get("rejected_by_reason", {}).items():
            self._advance(self.dead_letters.labels(reason), f"dlq:{reason}", total)
        self._advance(self.duplicates, "duplicates", report.get("duplicates_total", 0))
        self._advance(self.skipped, "skipped", report.get("skipped_steps", 0))
        self._advance(self.checkpoint_failures, "checkpoint_failures",
                      report.get("checkpoint_failures", 0))
        if report.get("drift"):
            self.drift.labels("detected").inc()
        if report.get("drift_action"):
            self.drift.labels(report["drift_action"]).inc()
        if report.get("checkpoint"):
            self._checkpoint_at = time.time()
        self._observe_join(report.get("join"))
        self._observe_ranks(report)
        for table, counts in (report.get("tables") or {}).items():
            self.table_rows.labels(table).set(counts["size"])
            self.table_capacity.labels(table).set(counts["capacity"])
            for name, family in self.table_events.items():
                self._advance(family.labels(table), f"table:{table}:{name}", counts[name])

    def _observe_ranks(self, report: dict[str, Any]) -> None:
        times = report.get("rank_step_time_s") or []
        if not times:
            return
        self.ranks.set(len(times))
        hosts = report.get("rank_hosts") or [""] * len(times)
        memory = report.get("rank_rss_mb") or [0.0] * len(times)
        cpu = report.get("rank_cpu_percent") or [0.0] * len(times)
        for rank, (host, seconds, mb, percent) in enumerate(zip(hosts, times, memory, cpu,
                                                                strict=True)):
            labels = (str(rank), host)
            self.rank_step.labels(*labels).set(seconds)
            self.rank_memory.labels(*labels).set(mb * 2**20)
            self.rank_cpu.labels(*labels).set(percent / 100)

    def _observe_join(self, join: dict[str, dict[str, float]] | None) -> None:
        """The event/label join's figures, by kind: what waits now is a gauge; this step's
        counts and the running totals are counters (the label delays are the console's)."""
        if not join:
            return
        for name, value in join["pending"].items():
            self._join_gauge(f"pending_{name}").set(value)
        for name, value in join["step"].items():
            if value > 0:
                self._join_counter(name).inc(value)
        for name, total in join["totals"].items():
            self._advance(self._join_counter(name), f"join:{name}", total)

    def _join_gauge(self, name: str) -> Gauge:
        if name not in self._join_gauges:
            self._join_gauges[name] = Gauge(f"hvd_online_join_{name}",
                                            f"Join: {name.replace('_', ' ')}",
                                            registry=self.registry)
        return self._join_gauges[name]

    def _join_counter(self, name: str) -> Counter:
        if name not in self._join_counters:
            self._join_counters[name] = Counter(f"hvd_online_join_{name}",
                                                f"Join: {name.replace('_', ' ')}",
                                                registry=self.registry)
        return self._join_counters[name]

    def render(self) -> bytes:
        return generate_latest(self.registry)
