"""Topic names. Partitions are addressed as Pulsar names them: `TOPIC-partition-K`.

>>> full_topic_name("samples")
'persistent://public/default/samples'
>>> partition_topic("samples", 3)
'persistent://public/default/samples-partition-3'
>>> dead_letter_topic("persistent://t/ns/samples")
'persistent://t/ns/samples-dlq'
"""

from __future__ import annotations

from typing import Any

from streams.errors import StreamsError


def full_topic_name(topic: str) -> str:
    if not topic:
        msg = "stream topic is empty: set stream.topic in the config"
        raise StreamsError(msg)
    return topic if "://" in topic else f"persistent://public/default/{topic}"


def partition_topic(topic: str, partition: int) -> str:
    return f"{full_topic_name(topic)}-partition-{partition}"


def dead_letter_topic(topic: str) -> str:
    return f"{full_topic_name(topic)}-dlq"


def count_partitions(client: Any, topic: str, configured: int) -> int:
    """The configured count, or what the broker reports for a partitioned topic.

    pulsar-lite has no partitioned-topic metadata (it reports a partitioned topic as one
    plain topic), so there the count must come from the config.
    """
    if configured > 0:
        return configured
    names = client.get_topic_partitions(full_topic_name(topic))
    if len(names) == 1 and not names[0].rsplit("-partition-", 1)[-1].isdigit():
        msg = (f"topic {topic!r} is not partitioned on this broker: set stream.partitions "
               "(pulsar-lite cannot report partition counts)")
        raise StreamsError(msg)
    return len(names)
