"""`hvd-online produce`: publish a config's generator (or dataset) into its topic."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from hvd_online.config import Config
from hvd_online.errors import ConfigError
from hvd_online.inputs.joined import check_schemas
from hvd_online.model.loading import load_object
from hvd_online.model.template import ModelTemplate, load_template
from streams.codecs import make_codec
from streams.pulsar.client import connect
from streams.pulsar.producer import PartitionedProducer, Progress, publish
from streams.timeline import publish_timeline

log = logging.getLogger(__name__)


def produce(config: Config, url: str, count: int | None = None, rate: float | None = None,
            progress: bool | None = None) -> int:
    spec = config.produce
    if not spec.generator:
        msg = "nothing to produce: set [produce] generator = 'file.py:function' in the config"
        raise ConfigError(msg)
    if config.stream.partitions < 1:
        msg = "set stream.partitions: the producer routes records to TOPIC-partition-K"
        raise ConfigError(msg)
    template = load_template(config.model.template, config.model.params)
    generator = load_object(spec.generator)
    total = count if count is not None else spec.count
    if config.join.events_topic:
        return produce_joined(config, url, template, generator, total)
    codec = make_codec(config.stream.codec, template.schema)
    chunks = generator(schema=template.schema, **spec.params)
    client = connect(url, **config.stream.client_options)
    try:
        producer = PartitionedProducer(client, config.stream.topic, config.stream.partitions)
        sent = publish(producer, codec, chunks, rate=spec.rate if rate is None else rate,
                       limit=total or None, key_field=template.schema.key,
                       per_message=spec.samples_per_message,
                       progress=Progress(total or None, enabled=progress))
        producer.close()
    finally:
        client.close()
    log.info("produced %d records to %s (%d partitions)", sent, config.stream.topic,
             config.stream.partitions)
    return sent


def produce_joined(config: Config, url: str, template: ModelTemplate, generator: Any,
                   total: int) -> int:
    """Raw event streams: the generator yields (events, labels) chunks with time offsets;
    each record goes out when its time comes, keyed so partition p of both topics holds the
    same keys."""
    events, labels = check_schemas(template)
    join, partitions = config.join, config.stream.partitions
    codecs = {"events": (make_codec(join.events_codec, events), events.key),
              "labels": (make_codec(join.labels_codec, labels), labels.key)}
    client = connect(url, **config.stream.client_options)
    try:
        producers = {"events": PartitionedProducer(client, join.events_topic, partitions),
                     "labels": PartitionedProducer(client, join.labels_topic, partitions)}

        def send(side: str, row: np.void) -> None:
            codec, key = codecs[side]
            payload = codec.encode_many(np.array([row], row.dtype))[0]
            producers[side].send(payload, key=int(row[key]))

        chunks = generator(event_schema=events, label_schema=labels, **config.produce.params)
        sent, labelled = publish_timeline(chunks, events, labels, send, limit=total or None)
        for producer in producers.values():
            producer.close()
    finally:
        client.close()
    log.info("produced %d events to %s and %d labels to %s", sent, join.events_topic,
             labelled, join.labels_topic)
    return sent
