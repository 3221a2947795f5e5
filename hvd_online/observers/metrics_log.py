"""Rank 0's step reports as JSON lines (RUN_DIR/metrics.jsonl), for evaluation scripts and
plots after the run."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from hvd_online.training.reports import StepReport

log = logging.getLogger(__name__)


class MetricsLog:
    """Rank 0 appends every step that trained something (and every event) to a JSONL file,
    for evaluation scripts and plots after the run."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(path, "a")  # noqa: SIM115 - lives as long as the run
        self.lines_lost = 0

    def __call__(self, report: StepReport) -> None:
        if report.count or report.checkpoint or report.stopped:
            try:
                self._file.write(json.dumps(report.as_json()) + "\n")
                self._file.flush()
            except OSError as err:  # a full disk must not end training; say it once
                if not self.lines_lost:
                    log.error("metrics log %s: %s; its lines are lost until there is room",
                              self._file.name, err)
                self.lines_lost += 1

    def close(self) -> None:
        try:
            self._file.close()
        except OSError as err:
            log.error("metrics log %s: %s", self._file.name, err)
