"""Rank 0's progress lines: one every `train.log_every` steps that trained something, and
every event (checkpoint, drift, drift response, stop)."""

from __future__ import annotations

import logging

from hvd_online.training.reports import StepReport

log = logging.getLogger(__name__)


DRIFT_ACTIONS = {
    "boost": "learning rate boosted, optimizer moments reset",
    "challenger": "challenger model started",
    "restarted": "challenger restarted at the drift flag (it had started at an early warning)",
    "promoted": "challenger promoted: it replaces the model",
    "dropped": "challenger dropped: it never beat the model",
}


class ProgressPrinter:
    """Rank 0 prints a line every `log_every` steps that trained something, and events."""

    def __init__(self, log_every: int) -> None:
        self.log_every = max(1, log_every)
        self._trained_steps = 0

    def __call__(self, report: StepReport) -> None:
        if report.count:
            self._trained_steps += 1
        if report.checkpoint:
            log.info("checkpoint step %d -> %s", report.step, report.checkpoint)
        if report.drift:
            log.warning("DRIFT detected at step %d (after %d samples): prequential loss rose",
                        report.step, report.samples_total)
        if report.drift_action:
            log.warning("drift response at step %d: %s", report.step, DRIFT_ACTIONS.get(
                report.drift_action, report.drift_action))
        if report.stopped or (report.count and (self._trained_steps - 1) % self.log_every == 0):
            log.info("%s", report.log_line())
