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
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Any


class ConsoleState:
    def __init__(self, run_config: dict[str, Any], queue_size: int = 1000,
                 max_history: int = 4000) -> None:
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
        #: run totals of the join's per-step counts and label delays (raw event streams)
        self.join_totals: dict[str, dict[str, float]] = {"step": {}, "label_delays": {}}

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
            self._record(report)

    def _record(self, report: dict[str, Any]) -> None:
        """Keep a bounded, evenly thinned history for pages opened mid-run."""
        important = (report.get("checkpoint") or report.get("stopped") or report.get("drift")
                     or report.get("drift_action"))
        if not report.get("count") and not important:
            return
        self._seen += 1
        if self._seen % self._stride and not important:
            return
        self._history.append(_chart_point(report))
        if len(self._history) > self._max_history:
            self._history = self._history[::2]
            self._stride *= 2

    def drain(self) -> list[dict[str, Any]]:
        with self._lock:
            out = list(self._queue)
            self._queue.clear()
        return out

    def history(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._history)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {"status": self.status, "latest": self.latest,
                    "last_checkpoint": self.last_checkpoint, "dropped": self.dropped,
                    "join_totals": {k: dict(v) for k, v in self.join_totals.items()}}


def _chart_point(report: dict[str, Any]) -> dict[str, Any]:
    keys = ("step", "samples_total", "loss", "metric", "samples_per_s", "checkpoint", "stopped",
            "drift", "drift_action", "challenger_loss", "delayed_loss", "delayed_metric",
            "elapsed_s")
    return {k: report.get(k) for k in keys}
