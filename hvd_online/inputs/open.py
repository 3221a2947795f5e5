"""What one rank reads from: the broker connection, its partition sources (built from the
resume state), dead-letter sinks and, for raw event streams, the predictions topic.
`hvd-online train` opens them with `open_inputs`."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass

import pulsar

from hvd_online.config import Config
from hvd_online.errors import ConfigError
from hvd_online.inputs.batch import StepInput
from hvd_online.inputs.joined import JoinedInput, check_schemas
from hvd_online.inputs.labelled import LabelledInput
from hvd_online.model.template import ModelTemplate
from hvd_online.state.checkpoint import Resume
from hvd_online.state.run_dir import RunLayout
from hvd_online.sync import collectives
from hvd_online.sync.collectives import World
from streams.assignment import partitions_for_rank
from streams.codecs import make_codec
from streams.pulsar.broker import EmbeddedBroker
from streams.pulsar.client import connect
from streams.pulsar.cursor import DurableCursor
from streams.pulsar.dead_letter import DeadLetterSink
from streams.pulsar.predictions import PredictionSink
from streams.pulsar.pulsar_source import PulsarPartitionSource
from streams.pulsar.topics import count_partitions

log = logging.getLogger(__name__)


def embedded_broker(config: Config) -> EmbeddedBroker:
    """The run's own pulsar-lite broker (no stream.url): data in RUN_DIR/broker. Started by
    `hvd-online run` for its producer and ranks, or by rank 0 of a bare `train`."""
    return EmbeddedBroker(RunLayout.of(config).broker_data, port=config.stream.embedded_port)


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
        broker = embedded_broker(config).start()
        log.info("embedded pulsar-lite broker at %s (data in %s)", broker.url,
                 layout.broker_data)
    url = collectives.broadcast_object(broker.url if broker else None)
    try:
        yield url
    finally:
        if broker:
            broker.stop()


@dataclass(frozen=True)
class RankInputs:
    step_input: StepInput
    #: partitions of the topic (all ranks together)
    partitions: int


@contextmanager
def open_inputs(config: Config, world: World, layout: RunLayout, template: ModelTemplate,
                resume: Resume | None) -> Iterator[RankInputs]:
    """This rank's input: its partition sources (each built from its snapshot in `resume`),
    dead-letter sinks and, for raw event streams, the predictions topic."""
    snapshots = resume.state.sources if resume else {}
    join = config.join
    with ExitStack() as stack:
        url = stack.enter_context(broker_url(config, world, layout))
        client = connect(url, **config.stream.client_options)
        stack.callback(client.close)
        # the durable cursors' own connection carries no messages (see streams/pulsar/cursor.py)
        cursor_client = connect(url, **config.stream.client_options)
        stack.callback(cursor_client.close)
        topics = [join.events_topic, join.labels_topic] if join.events_topic else [
            config.stream.topic]
        partitions = _partition_count(client, topics, config.stream.partitions)
        owned = partitions_for_rank(partitions, world.rank, world.size)
        log.info("rank %d/%d owns partitions %s of %s", world.rank, world.size, owned,
                 " and ".join(topics))

        def sources(topic: str) -> list[PulsarPartitionSource]:
            made = []
            for p in owned:
                key = PulsarPartitionSource.key_for(topic, p)
                cursor = DurableCursor(cursor_client, key, config.stream.subscription)
                stack.callback(cursor.close)
                source = PulsarPartitionSource(
                    client, topic, p, resume_state=snapshots.get(key), cursor=cursor,
                    reader_options=config.stream.consumer_options)
                stack.callback(source.close)
                made.append(source)
            return made

        def dead_letters(topic: str) -> DeadLetterSink:
            sink = DeadLetterSink(client, topic)
            stack.callback(sink.close)
            return sink

        window = config.window
        step_input: StepInput
        if join.events_topic:
            events, labels = check_schemas(template)
            predictions = PredictionSink(client, join.events_topic)
            stack.callback(predictions.close)
            step_input = JoinedInput(
                join, template, sources(join.events_topic), sources(join.labels_topic),
                (make_codec(join.events_codec, events), make_codec(join.labels_codec, labels)),
                (dead_letters(join.events_topic), dead_letters(join.labels_topic)),
                predictions, window.batch_size, window.max_wait_ms / 1000)
            # its predictions stage stops before the sources it reads close (also when the
            # loop ended by an error and its generator was not closed yet)
            stack.callback(step_input.stop)
        else:
            step_input = LabelledInput(
                sources(config.stream.topic), make_codec(config.stream.codec, template.schema),
                dead_letters(config.stream.topic), window.batch_size, window.max_wait_ms / 1000)
        yield RankInputs(step_input, partitions)


def _partition_count(client: pulsar.Client, topics: list[str], configured: int) -> int:
    """Every topic of a job has the same partitions (events and labels are co-partitioned:
    partition p of both is joined on one rank)."""
    counts = {topic: count_partitions(client, topic, configured) for topic in topics}
    if len(set(counts.values())) > 1:
        msg = (f"the topics must have the same number of partitions (key % P routes both): "
               f"{counts}")
        raise ConfigError(msg)
    return counts[topics[0]]
