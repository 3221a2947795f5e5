"""Wires one rank together: broker connection, this rank's partition sources, dead letters,
resume state, hooks. `hvd-online train` calls `train_rank`."""

from __future__ import annotations

import logging
import resource
import signal
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from hvd_online import distributed
from hvd_online.checkpoint import Checkpoint, load_latest_checkpoint
from hvd_online.config import Config
from hvd_online.control import Controls
from hvd_online.distributed import World
from hvd_online.reports import StepReport
from hvd_online.template import load_template
from hvd_online.trainer import OnlineTrainer, TrainerHook, weights_digest
from streams.assignment import partitions_for_rank
from streams.broker import EmbeddedBroker
from streams.client import connect
from streams.dead_letter import DeadLetterSink
from streams.pulsar_source import PulsarPartitionSource
from streams.topics import count_partitions

log = logging.getLogger("hvd_online")


@contextmanager
def broker_url(config: Config, world: World) -> Iterator[str]:
    """The configured Pulsar URL, or an embedded pulsar-lite broker started by rank 0.

    The embedded broker listens on 127.0.0.1, so it serves ranks of one host (the laptop
    case); several hosts need a real cluster URL.
    """
    if config.stream.url:
        yield config.stream.url
        return
    broker = None
    if world.is_chief:
        data_dir = Path(config.run.dir) / "broker"
        broker = EmbeddedBroker(data_dir, port=config.stream.embedded_port).start()
        log.info("embedded pulsar-lite broker at %s (data in %s)", broker.url, data_dir)
    url = distributed.broadcast_object(broker.url if broker else None)
    try:
        yield url
    finally:
        if broker:
            broker.stop()


def _resume_state(config: Config, world: World) -> Checkpoint | None:
    """Rank 0 reads the newest valid checkpoint; every rank learns its stream positions."""
    checkpoint = None
    if world.is_chief:
        checkpoint = load_latest_checkpoint(Path(config.run.dir) / "checkpoints")
    found = (checkpoint.state, checkpoint.skipped_newer) if checkpoint else None
    found = distributed.broadcast_object(found)
    if found is None:
        return None
    if checkpoint is None:  # other ranks: arrays come with the variable broadcast
        checkpoint = Checkpoint(Path(), [], [], found[0], skipped_newer=found[1])
    return checkpoint


def train_rank(config: Config, world: World, controls: Controls,
               hooks: list[TrainerHook], on_report: Callable[[StepReport], None]) -> dict[str, Any]:
    template = load_template(config.model.template, config.model.params)
    resume = _resume_state(config, world)
    if resume is not None:
        log.info("rank %d resuming from step %s", world.rank, resume.state["step"])
    positions = resume.state.get("positions", {}) if resume else {}
    with ExitStack() as stack:
        url = stack.enter_context(broker_url(config, world))
        client = connect(url, **config.stream.client_options)
        stack.callback(client.close)
        partitions = count_partitions(client, config.stream.topic, config.stream.partitions)
        owned = partitions_for_rank(partitions, world.rank, world.size)
        log.info("rank %d/%d owns partitions %s of %s", world.rank, world.size, owned,
                 config.stream.topic)
        sources = []
        for p in owned:
            start_after = bytes.fromhex(positions[str(p)]) if str(p) in positions else None
            source = PulsarPartitionSource(
                client, config.stream.topic, p, config.stream.subscription,
                start_after=start_after, seek=bool(resume and resume.skipped_newer),
                consumer_options=config.stream.consumer_options)
            stack.callback(source.close)
            sources.append(source)
        dead_letters = DeadLetterSink(client, config.stream.topic)
        stack.callback(dead_letters.close)
        trainer = OnlineTrainer(config, template, world, sources, partitions, dead_letters,
                                controls, hooks, resume)
        last = None
        for report in trainer.run():
            on_report(report)
            last = report
        return {
            "rank": world.rank, "steps": trainer.step,
            "samples_total": trainer.samples_total,
            "stopped": last.stopped if last else None,
            "elapsed_s": round(last.elapsed_s, 2) if last else 0.0,
            "checkpoint": last.checkpoint if last else None,
            "rejected": dict(dead_letters.counts),
            "partitions": {s.partition: s.stats() for s in sources},
            "freshness": trainer.freshness.summary(),
            "weights_sha256": weights_digest(trainer.model),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        }


def install_signal_handlers(controls: Controls) -> None:
    """SIGTERM (kill -15) saves a checkpoint at the next step boundary, then exits 0."""
    signal.signal(signal.SIGTERM, lambda *_: controls.request("sigterm"))
