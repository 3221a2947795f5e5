"""`hvd-online train`: what each horovodrun rank executes."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from hvd_online import distributed
from hvd_online.config import Config
from hvd_online.control import Controls
from hvd_online.ledger import ledger_from_env
from hvd_online.reports import StepReport
from hvd_online.session import install_signal_handlers, train_rank
from hvd_online.template import load_template
from hvd_online.trainer import TrainerHook

log = logging.getLogger("hvd_online")


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
        if report.stopped or (report.count and (self._trained_steps - 1) % self.log_every == 0):
            log.info("%s", report.log_line())


class MetricsLog:
    """Rank 0 appends every step that trained something (and every event) to a JSONL file,
    for evaluation scripts and plots after the run."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(path, "a")  # noqa: SIM115 - lives as long as the run

    def on_applied(self, step: int, rows: Any) -> None:
        pass

    def on_report(self, report: StepReport, model: Any) -> None:
        if report.count or report.checkpoint or report.stopped:
            self._file.write(json.dumps(report.as_json()) + "\n")
            self._file.flush()


def train_command(config: Config) -> int:
    world = distributed.init_world(config.train.threads, config.train.pin_cores)
    controls = Controls()
    install_signal_handlers(controls)
    template = load_template(config.model.template, config.model.params)
    hooks: list[TrainerHook] = []
    ledger = ledger_from_env(world.rank, template.schema.key)
    if ledger:
        hooks.append(ledger)
    printer = ProgressPrinter(config.train.log_every) if world.is_chief else (lambda r: None)
    console = None
    if world.is_chief:
        hooks.append(MetricsLog(Path(config.run.dir) / "metrics.jsonl"))
    if world.is_chief and config.console.enabled:
        from console.server import start_console  # rank 0 only: the one web server

        console = start_console(config, template, controls)
        hooks.append(console)
    try:
        summary = train_rank(config, world, controls, hooks, printer)
    finally:
        if console:
            console.finish()
    # every rank prints its summary: equal weight digests show the ranks stayed in sync
    print(f"SUMMARY {json.dumps(summary, sort_keys=True)}", flush=True)
    return 0
