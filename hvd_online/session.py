"""What one rank reads from: the broker connection, its partition sources (built from the
resume state), and the dead-letter sink. `hvd-online train` opens them with `open_inputs`."""

from __future__ import annotations

import logging
import signal
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass

from hvd_online import distributed
from hvd_online.checkpoint import Resume, load_latest_checkpoint
from hvd_online.config import Config
from hvd_online.control import Controls, Flag
from hvd_online.distributed import World
from hvd_online.layout import RunLayout
from streams.assignment import partitions_for_rank
from streams.broker import EmbeddedBroker
from streams.client import connect
from streams.dead_letter import DeadLetterSink
from streams.pulsar_source import PulsarPartitionSource
from streams.topics import count_partitions

log = logging.getLogger(__name__)


def read_resume(layout: RunLayout, world: World) -> Resume | None:
    """Rank 0 reads the newest valid checkpoint; every rank receives its run state (the
    arrays stay on rank 0 until the initial broadcast)."""
    checkpoint = load_latest_checkpoint(layout.checkpoints) if world.is_chief else None
    found = (checkpoint.state, checkpoint.skipped_newer > 0) if checkpoint else None
    found = distributed.broadcast_object(found)
    if found is None:
        return None
    state, rewind = found
    log.info("rank %d resuming from step %d", world.rank, state.step)
    return Resume(state, rewind, checkpoint)


@contextmanager
def broker_url(config: Config, world: World, layout: RunLayout) -> Iterator[str]:
    """The configured Pulsar URL, or an embedded pulsar-lite broker started by rank 0.

    The embedded broker listens on 127.0.0.1, so it serves ranks of one host (the laptop
    case); several hosts need a real cluster URL.
    """
    if config.stream.url:
        yield config.stream.url
        return
    broker = None
    if world.is_chief:
        broker = EmbeddedBroker(layout.broker_data, port=config.stream.embedded_port).start()
        log.info("embedded pulsar-lite broker at %s (data in %s)", broker.url,
                 layout.broker_data)
    url = distributed.broadcast_object(broker.url if broker else None)
    try:
        yield url
    finally:
        if broker:
            broker.stop()


@dataclass(frozen=True)
class RankInputs:
    sources: list[PulsarPartitionSource]
    #: partitions of the topic (all ranks together)
    partitions: int
    dead_letters: DeadLetterSink


@contextmanager
def open_inputs(config: Config, world: World, layout: RunLayout,
                resume: Resume | None) -> Iterator[RankInputs]:
    """This rank's partition sources, each built from its snapshot in `resume`."""
    snapshots = resume.state.sources if resume else {}
    with ExitStack() as stack:
        url = stack.enter_context(broker_url(config, world, layout))
        client = connect(url, **config.stream.client_options)
        stack.callback(client.close)
        partitions = count_partitions(client, config.stream.topic, config.stream.partitions)
        owned = partitions_for_rank(partitions, world.rank, world.size)
        log.info("rank %d/%d owns partitions %s of %s", world.rank, world.size, owned,
                 config.stream.topic)
        sources = []
        for p in owned:
            source = PulsarPartitionSource(
                client, config.stream.topic, p, config.stream.subscription,
                resume_state=snapshots.get(PulsarPartitionSource.key_for(config.stream.topic,
                                                                         p)),
                rewind=bool(resume and resume.rewind),
                consumer_options=config.stream.consumer_options)
            stack.callback(source.close)
            sources.append(source)
        dead_letters = DeadLetterSink(client, config.stream.topic)
        stack.callback(dead_letters.close)
        yield RankInputs(sources, partitions, dead_letters)


def install_signal_handlers(controls: Controls) -> None:
    """SIGTERM (kill -15) saves a checkpoint at the next step boundary, then exits 0."""
    signal.signal(signal.SIGTERM, lambda *_: controls.request(Flag.SIGTERM))
