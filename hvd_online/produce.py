"""`hvd-online produce`: publish a config's generator (or dataset) into its topic."""

from __future__ import annotations

import logging

from hvd_online.config import Config
from hvd_online.errors import ConfigError
from hvd_online.loading import load_object
from hvd_online.template import load_template
from streams.client import connect
from streams.codecs import make_codec
from streams.producer import PartitionedProducer, Progress, publish

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
    codec = make_codec(config.stream.codec, template.schema)
    generator = load_object(spec.generator)
    total = count if count is not None else spec.count
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

