"""`hvd-online train`: what each horovodrun rank executes.

    init Horovod -> read the resume state -> open this rank's sources -> build the trainer
    -> ONE loop hands every StepReport to its consumers -> write this rank's summary
"""

from __future__ import annotations

import json
import logging
import os
import resource
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from hvd_online.commands.supervisor import STANDBY_ENV
from hvd_online.config import Config
from hvd_online.errors import ConfigError, TemplateError
from hvd_online.inputs.open import RankInputs, open_inputs
from hvd_online.model.loading import load_object
from hvd_online.model.template import ModelTemplate, build_model
from hvd_online.observers.metrics_log import MetricsLog
from hvd_online.observers.progress import ProgressPrinter
from hvd_online.observers.serving import ServingExporter, remove_versions_after
from hvd_online.observers.tensorboard_log import TensorBoardLog
from hvd_online.state.manager import read_resume
from hvd_online.state.run_dir import RunLayout
from hvd_online.sync import collectives
from hvd_online.sync.collectives import World
from hvd_online.sync.control import Controls, Flag
from hvd_online.training.health import memory_breakdown
from hvd_online.training.reports import StepReport
from hvd_online.training.trainer import (
    OnlineTrainer,
    StepHook,
    TrainingCore,
    prepare_training,
    weights_digest,
)
from streams.errors import AssignmentError

log = logging.getLogger(__name__)

ReportConsumer = Callable[[StepReport], None]


def load_step_hooks(config: Config, world: World, template: ModelTemplate) -> list[StepHook]:
    """`train.step_hooks = [{use = "file.py:Factory", ...params}]`: each factory is called
    with `rank=`, `schema=` and the params, and returns a StepHook."""
    hooks = []
    for spec in config.train.step_hooks:
        params = dict(spec)
        use = params.pop("use")  # checked at load: a "file.py:Factory" string
        hooks.append(load_object(use)(rank=world.rank, schema=template.schema, **params))
    return hooks


@contextmanager
def report_consumers(config: Config, world: World, layout: RunLayout, template: ModelTemplate,
                     controls: Controls, trainer: OnlineTrainer) -> Iterator[list[ReportConsumer]]:
    """Who reads the step reports: on rank 0 the printer, the metrics log, TensorBoard, the
    serving exporter, the model-updates publisher and the console."""
    if not world.is_chief:
        yield []
        return
    with ExitStack() as stack:
        metrics = MetricsLog(layout.metrics)
        stack.callback(metrics.close)
        tensorboard = TensorBoardLog(layout.tensorboard)
        stack.callback(tensorboard.close)
        consumers: list[ReportConsumer] = [ProgressPrinter(config.train.log_every), metrics,
                                           tensorboard]
        exporter = serving_exporter(config, layout, template, trainer)
        stack.callback(exporter.close)
        consumers.append(exporter)
        if config.serving.updates and config.stream.url:  # unit tests run without a broker
            from hvd_online.observers.model_updates import ModelUpdates

            updates = ModelUpdates(config, trainer.model.get_weights)
            stack.callback(updates.close)
            consumers.append(updates)
        if config.console.enabled:
            from hvd_online.observers.console_link import start_console

            link = start_console(config, layout, controls, trainer.model.get_weights)
            stack.callback(link.close)
            consumers.append(link)
        yield consumers


def serving_exporter(config: Config, layout: RunLayout, template: ModelTemplate,
                     trainer: OnlineTrainer) -> ServingExporter:
    """TF-Serving versions of this run, reconciled first with the step it resumes from."""
    base = layout.serving(config.console.model_name)
    rolled_back = remove_versions_after(base, trainer.progress.step)
    if rolled_back:
        log.warning("serving: removed versions %s, newer than the resumed step %d",
                    rolled_back, trainer.progress.step)
    # built after the trainer's model: Keras names layers by a process-wide counter
    copy = build_model(template, config.model.pretrained)
    return ServingExporter(base, template, copy, trainer.model.get_weights,
                           config.serving.export_every_s, config.serving.keep)


def rank_summary(world: World, trainer: OnlineTrainer, inputs: RankInputs,
                 last: StepReport | None, drift_events: list[list[Any]]) -> dict[str, Any]:
    return {
        "rank": world.rank, "steps": trainer.progress.step,
        "samples_total": trainer.progress.samples_total,
        "stopped": last.stopped if last else None,
        "elapsed_s": round(last.elapsed_s, 2) if last else 0.0,
        "checkpoint": last.checkpoint if last else None,
        "rejected": dict(trainer.dead_letters()),
        "partitions": {s.key: s.stats() for s in inputs.step_input.sources},
        "freshness": trainer.freshness.summary(),
        "steady_freshness": trainer.steady_freshness.summary(),
        "weights_sha256": weights_digest(trainer.model),
        "drift_events": drift_events,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "memory_at_end": memory_breakdown(),
    }


def end_line(summary: dict[str, Any], path: Path) -> str:
    r"""One short line per rank at the end of its run.

    >>> fresh = {"samples": 10, "p50_ms": 12.3, "p99_ms": 80.0}
    >>> print(*end_line({"rank": 1, "stopped": "max_samples", "samples_total": 2000, "steps": 31,
    ...                  "elapsed_s": 9.5, "freshness": fresh, "steady_freshness": fresh,
    ...                  "peak_rss_mb": 700.2, "weights_sha256": "ab12" * 16},
    ...                 Path("s.json")).split("; "), sep="\n")
    rank 1 done (max_samples): 2,000 samples in 31 steps, 9.5 s
    publish -> trained p50 12 ms, p99 80 ms (after start-up: p50 12 ms, p99 80 ms)
    peak RSS 700 MB
    weights ab12ab12ab12
    the rest in s.json
    """
    def quantiles(f: dict[str, Any]) -> str:
        if not f["samples"]:
            return "no samples"
        return f"p50 {f['p50_ms']:,.0f} ms, p99 {f['p99_ms']:,.0f} ms"

    return (f"rank {summary['rank']} done ({summary['stopped']}): "
            f"{summary['samples_total']:,} samples in {summary['steps']:,} steps, "
            f"{summary['elapsed_s']:.1f} s; publish -> trained {quantiles(summary['freshness'])}"
            f" (after start-up: {quantiles(summary['steady_freshness'])}); "
            f"peak RSS {summary['peak_rss_mb']:.0f} MB; "
            f"weights {summary['weights_sha256'][:12]}; the rest in {path}")


def install_signal_handlers(controls: Controls) -> None:
    """SIGTERM (kill -15) saves a checkpoint at the next step boundary, then exits 0."""
    signal.signal(signal.SIGTERM, lambda *_: controls.request(Flag.SIGTERM))


def train_command(config: Config, template: ModelTemplate) -> int:
    """`template`: the config's, loaded and checked (commands/check.py)."""
    layout = RunLayout.of(config)
    try:
        return _train(config, template, layout)
    except (ConfigError, TemplateError, AssignmentError) as err:
        # found only now (e.g. the broker's partitions): a relaunch would fail the same way
        layout.record_config_error(f"{err}")
        raise


def wait_for_go(go: Path, poll_s: float = 0.02) -> None:
    """A standby launch's rank (hvd_online/commands/supervisor.py): everything is imported
    and its step traced; wait here, before Horovod starts (an initialised Horovod cycles:
    ~15% of a core per idle rank, measured), until the launch before it failed. The
    supervisor ends a standby it does not need with kill -9 of its process group."""
    log.info("standby: waiting for %s", go)
    while not go.exists():
        time.sleep(poll_s)


def start_world(config: Config,
                template: ModelTemplate) -> tuple[World, TrainingCore | None, float]:
    """Horovod started; for a standby launch's rank, its model built and its step traced
    before its go (measured on the MLP demo: the trace took 4-7 of the 7-9 s from a kill -9
    to training again, two ranks tracing at once beside the console's start); and when the
    start began (for a standby: its go)."""
    go, planned = os.environ.get(STANDBY_ENV), collectives.planned_world()
    threads, pin = config.train.threads, config.train.pin_cores
    if not go:
        began = time.monotonic()
        return collectives.init_world(threads, pin), None, began
    core = None
    if planned is not None:
        collectives.pin_threads(planned, threads, pin)
        with collectives.tracing_before_init(planned.size):
            core = prepare_training(config, template, planned.size)
    wait_for_go(Path(go))
    began = time.monotonic()
    world = collectives.init_world(threads, pin, pinned=planned is not None)
    if planned is not None and (world.rank, world.size) != (planned.rank, planned.size):
        core = None  # not the world it was traced for (never seen): build it again
    return world, core, began


def _train(config: Config, template: ModelTemplate, layout: RunLayout) -> int:
    world, core, began = start_world(config, template)
    ready_s = time.monotonic() - began
    controls = Controls()
    install_signal_handlers(controls)
    if world.is_chief:  # before the first collective: no rank of this run wrote one yet
        layout.clear_summaries()  # a crashed rank, or a smaller world, leaves none behind
    resume = read_resume(layout.checkpoints, world)
    with ExitStack() as stack:
        inputs = stack.enter_context(open_inputs(config, world, layout, template, resume))
        trainer = OnlineTrainer(config, template, world, inputs.step_input, inputs.partitions,
                                controls, load_step_hooks(config, world, template), resume,
                                core)
        consumers = stack.enter_context(report_consumers(config, world, layout, template,
                                                         controls, trainer))
        # where a (re)launch's seconds go before its first step (benchmarks/failover.py)
        log.info("rank %d: Horovod ready in %.2f s, inputs and trainer %.2f s more%s",
                 world.rank, ready_s, time.monotonic() - began - ready_s,
                 " (a standby launch: imports and trace done before)" if core else "")
        last = None
        drift_events: list[list[Any]] = []  # every rank's own record: they must agree
        for report in trainer.run():
            for consume in consumers:
                consume(report)
            if report.drift or report.drift_action:
                drift_events.append([report.step, report.drift, report.drift_action])
            last = report
        summary = rank_summary(world, trainer, inputs, last, drift_events)
    # for people (the whole summary is in the file): equal digests show the ranks in sync
    print(end_line(summary, layout.summary(world.rank)), flush=True)
    code = 0
    if last is not None and last.stopped and not last.checkpoint:
        log.error("stopped (%s) without a final checkpoint: the next run resumes from the "
                  "last durable one and trains again on what came after it", last.stopped)
        code = 1
    try:
        layout.summary(world.rank).write_text(json.dumps(summary, sort_keys=True, indent=1))
    except OSError as err:
        log.error("rank %d: summary not written: %s", world.rank, err)
        code = 1
    return code
