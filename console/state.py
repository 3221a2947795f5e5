"""What the console knows about the run: fed by the console process's report reader (the
reports rank 0's training loop hands over), read by web threads.

`push()` never blocks: reports wait in a bounded queue that drops the oldest when no one
drains it (a slow or absent browser never holds the reader back, so never training).

>>> state = ConsoleState(run_config={}, queue_size=2)
>>> for step in range(3):
...     state.push({"step": step, "count": 1})
>>> [r["step"] for r in state.drain()], state.dropped
([1, 2], 1)
>>> [p["step"] for p in state.history()]
[0, 1, 2]

Raw event streams: the join's per-step counts and label delays add up to run totals (its
pending gauges and running totals arrive whole in each report).

>>> state.push({"step": 3, "count": 1, "join": {"step": {"joined": 2}, "pending": {"events": 9}}})
>>> state.push({"step": 4, "count": 1, "join": {"step": {"joined": 3}, "pending": {"events": 7}}})
>>> state.snapshot()["join_totals"]
{'step': {'joined': 5}, 'label_delays': {}}

The history survives a relaunch: a new console reads the run's metrics log back, and marks
where each launch started.

>>> import json, tempfile
>>> run = Path(tempfile.mkdtemp())
>>> rows = [{"step": s, "count": 8, "elapsed_s": e, "time_s": 100 + s}
...         for s, e in ((1, 1.0), (2, 2.0), (2, 0.5), (3, 1.5))]  # relaunched after step 2
>>> _ = (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\\n" for r in rows))
>>> again = ConsoleState({}, metrics_log=run / "metrics.jsonl")
>>> [p["step"] for p in again.history()], [m["kind"] for m in again.markers]
([1, 2, 2, 3], ['restart'])
"""

from __future__ import annotations

import json
import math
import statistics
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from streams.assignment import partitions_for_rank

#: predictions/s and predict latency are over this many recent seconds
PREDICT_WINDOW_S = 10.0
#: a relaunch reads back at most this much of the metrics log's end (it grows for weeks)
HISTORY_TAIL_BYTES = 8 << 20
#: a rank whose last step took this much longer than the others' median is shown lagging
LAG_FACTOR = 2.0
#: charted per point; everything else of a report is only in the latest one
POINT_KEYS = ("step", "time_s", "samples_total", "loss", "metric", "samples_per_s",
              "checkpoint", "stopped", "drift", "drift_action", "challenger_loss",
              "delayed_loss", "delayed_metric", "elapsed_s", "rejected_by_reason", "count",
              "rank_freshness_p50_ms", "rank_freshness_p99_ms")


class PredictWindow:
    """The predict route's recent requests: rate and latency quantiles over the last
    `PREDICT_WINDOW_S` seconds (the histogram on /metrics has the whole run)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._recent: deque[tuple[float, float]] = deque(maxlen=20_000)
        self._lock = threading.Lock()

    def add(self, seconds: float) -> None:
        with self._lock:
            self._recent.append((self._clock(), seconds))

    def summary(self) -> dict[str, float | None]:
        """>>> w = PredictWindow(clock=lambda: 5.0)
        >>> for ms in range(1, 101):
        ...     w.add(ms / 1000)
        >>> w.summary()
        {'per_s': 10.0, 'p50_ms': 50.0, 'p99_ms': 99.0}
        """
        now = self._clock()
        with self._lock:
            while self._recent and self._recent[0][0] < now - PREDICT_WINDOW_S:
                self._recent.popleft()
            latencies = sorted(s for _, s in self._recent)
        if not latencies:
            return {"per_s": 0.0, "p50_ms": None, "p99_ms": None}

        def quantile(q: float) -> float:  # nearest rank
            return round(1000 * latencies[max(0, math.ceil(q * len(latencies)) - 1)], 2)

        return {"per_s": round(len(latencies) / PREDICT_WINDOW_S, 2), "p50_ms": quantile(0.5),
                "p99_ms": quantile(0.99)}


class ConsoleState:
    def __init__(self, run_config: dict[str, Any], queue_size: int = 1000,
                 max_history: int = 4000, metrics_log: Path | None = None,
                 serving_dir: Path | None = None) -> None:
        """`metrics_log`: the run's, read back for the history of earlier launches;
        `serving_dir`: where the TF-Serving versions appear (each gets a marker)."""
        self.run_config = run_config
        self._lock = threading.Lock()
        self._queue: deque[dict[str, Any]] = deque(maxlen=queue_size)
        self._history: list[dict[str, Any]] = []
        self._max_history = max_history
        self._stride = 1  # history keeps every stride-th step once it has been thinned
        self._seen = 0
        self.dropped = 0
        self.latest: dict[str, Any] | None = None
        self.last_checkpoint: dict[str, Any] | None = None
        self.status = "starting"
        self.started_at = time.time()
        #: run totals of the join's per-step counts and label delays (raw event streams)
        self.join_totals: dict[str, dict[str, float]] = {"step": {}, "label_delays": {}}
        #: checkpoints, serving versions, drift responses and relaunches, on the time axis
        self.markers: deque[dict[str, Any]] = deque(maxlen=500)
        self.predicts = PredictWindow()
        #: the training step of the weights the predict route answers with
        self.serving_version: Callable[[], int] = lambda: 0
        self._serving_dir = serving_dir
        self._serving_seen: set[str] = set()
        self._serving_checked = 0.0
        self._steps: deque[tuple[float, int]] = deque(maxlen=50)  # (time, step): steps/s
        self._last_elapsed: float | None = None
        if metrics_log is not None:
            self._read_back(metrics_log)
        self._serving_seen = set(self._serving_versions())

    # -- input ------------------------------------------------------------------------------

    def push(self, report: dict[str, Any]) -> None:
        with self._lock:
            if len(self._queue) == self._queue.maxlen:
                self.dropped += 1
            self._queue.append(report)
            self.latest = report
            join = report.get("join") or {}
            for kind, totals in self.join_totals.items():
                for name, value in join.get(kind, {}).items():
                    totals[name] = totals.get(name, 0) + value
            if report.get("checkpoint"):
                self.last_checkpoint = {"step": report["step"], "path": report["checkpoint"]}
            if report.get("stopped"):
                self.status = "stopped"
            elif self.status == "starting":
                self.status = "training"
            self._steps.append((time.monotonic(), report["step"]))
            self._record(report)
            self._check_serving(report)

    def _record(self, report: dict[str, Any]) -> None:
        """Keep a bounded, evenly thinned history for pages opened mid-run, and the
        markers."""
        at = {"time_s": report.get("time_s"), "step": report.get("step")}
        elapsed = report.get("elapsed_s")
        if elapsed is not None:
            if self._last_elapsed is not None and elapsed < self._last_elapsed:
                self.markers.append({**at, "kind": "restart", "label": "relaunch"})
            self._last_elapsed = elapsed
        if report.get("checkpoint"):
            self.markers.append({**at, "kind": "checkpoint", "label": "checkpoint"})
        if report.get("drift_action"):
            self.markers.append({**at, "kind": "drift", "label": report["drift_action"]})
        elif report.get("drift"):
            self.markers.append({**at, "kind": "drift", "label": "drift"})
        important = (report.get("checkpoint") or report.get("stopped") or report.get("drift")
                     or report.get("drift_action"))
        if not report.get("count") and not important:
            return
        self._seen += 1
        if self._seen % self._stride and not important:
            return
        self._history.append({k: report.get(k) for k in POINT_KEYS})
        if len(self._history) > self._max_history:
            self._history = self._history[::2]
            self._stride *= 2

    def _read_back(self, path: Path) -> None:
        """The history of earlier launches of this run, from the end of its metrics log."""
        self._log_path, self._log_offset = path, 0
        if not path.exists():
            return
        size = path.stat().st_size
        self._log_offset = max(0, size - HISTORY_TAIL_BYTES)
        self.catch_up(skip_first=size > HISTORY_TAIL_BYTES)  # the first line is cut there
        if self.latest is not None:
            self.status = "starting"  # until this launch reports

    def catch_up(self, skip_first: bool = False) -> None:
        """Read what rank 0 logged since the last read: a standby console read the history
        when it loaded, and reads only the rest when it takes over."""
        path = getattr(self, "_log_path", None)
        if path is None or not path.exists():
            return
        with path.open("rb") as log:
            log.seek(self._log_offset)
            data = log.read()
        whole = data.rfind(b"\n") + 1  # a last line still being written waits
        self._log_offset += whole
        lines = data[:whole].split(b"\n")
        for line in lines[1:] if skip_first else lines:
            try:
                report = json.loads(line)
            except ValueError:  # the empty last line, or one cut by kill -9
                continue
            with self._lock:
                self._record(report)
                self.latest = report

    def _serving_versions(self) -> list[str]:
        if self._serving_dir is None or not self._serving_dir.is_dir():
            return []
        return [p.name for p in self._serving_dir.iterdir() if p.name.isdigit()]

    def _check_serving(self, report: dict[str, Any]) -> None:
        """A marker for each TF-Serving version written (the directory, once a second)."""
        now = time.monotonic()
        if self._serving_dir is None or now - self._serving_checked < 1.0:
            return
        self._serving_checked = now
        for version in sorted(set(self._serving_versions()) - self._serving_seen, key=int):
            self._serving_seen.add(version)
            self.markers.append({"time_s": report.get("time_s"), "step": int(version),
                                 "kind": "serving", "label": f"version {version}"})

    # -- output -----------------------------------------------------------------------------

    def drain(self) -> list[dict[str, Any]]:
        with self._lock:
            out = list(self._queue)
            self._queue.clear()
        return out

    def history(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._history)

    def features(self) -> dict[str, bool]:
        """What is on in this run: the page shows panels and legends only for these."""
        drift = self.run_config.get("drift", {})
        return {"drift": bool(drift.get("detector")),
                "challenger": bool(drift.get("detector")) and drift.get("action") == "challenger",
                "join": bool(self.run_config.get("join", {}).get("events_topic")),
                "local_sgd": self.run_config.get("train", {}).get("sync_every", 1) > 1,
                "tables": bool((self.latest or {}).get("tables"))}

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {"status": self.status, "latest": self.latest,
                    "last_checkpoint": self.last_checkpoint, "dropped": self.dropped,
                    "join_totals": {k: dict(v) for k, v in self.join_totals.items()},
                    "header": self._header(), "ranks": self._ranks(),
                    "predict": self.predicts.summary(), "markers": list(self.markers),
                    "features": self.features(), "steps_per_s": self._steps_per_s()}

    def _header(self) -> dict[str, Any]:
        """The figures the page's header shows (and /api/status, for scripts)."""
        r = self.latest or {}
        p99 = r.get("rank_freshness_p99_ms") or []
        lag = r.get("partition_lag_ms") or []
        return {"status": self.status, "uptime_s": round(time.time() - self.started_at, 1),
                "samples_total": r.get("samples_total", 0), "step": r.get("step", 0),
                "lag_s": round(max(lag) / 1000, 3) if lag else None,
                "freshness_p99_ms": round(max(p99), 1) if p99 else None,
                "serving_version": self.serving_version()}

    def _steps_per_s(self) -> float:
        if len(self._steps) < 2:
            return 0.0
        (t0, s0), (t1, s1) = self._steps[0], self._steps[-1]
        return round((s1 - s0) / (t1 - t0), 2) if t1 > t0 else 0.0

    def _ranks(self) -> list[dict[str, Any]]:
        """One row per rank of the latest report; `lagging` when its last step took
        LAG_FACTOR times the others' median or more."""
        r = self.latest or {}
        times = r.get("rank_step_time_s") or []
        size, backlog = len(times), r.get("partition_backlog") or []
        rows = []
        for rank, seconds in enumerate(times):
            others = [t for i, t in enumerate(times) if i != rank]
            typical = statistics.median(others) if others else seconds
            owned = partitions_for_rank(len(backlog), rank, size) if len(backlog) >= size \
                else []

            def of(key: str, rank: int = rank) -> Any:
                values = r.get(key) or []
                return values[rank] if rank < len(values) else None

            rows.append({"rank": rank, "host": of("rank_hosts"), "rss_mb": of("rank_rss_mb"),
                         "cpu_percent": of("rank_cpu_percent"), "step_ms": 1000 * seconds,
                         "freshness_p99_ms": of("rank_freshness_p99_ms"),
                         "partitions": owned, "backlog": sum(backlog[p] for p in owned),
                         "lagging": seconds > LAG_FACTOR * typical and seconds > 0.05})
        return rows
