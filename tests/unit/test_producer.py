import numpy as np
import pytest

from streams.codecs import RecordCodec
from streams.pulsar.producer import publish
from streams.schema import Schema

SCHEMA = Schema.from_fields([("id", "<i8"), ("x", "<f4", (2,))], features="x", label="x",
                            key="id")


class RecordingProducer:
    """Stands in for PartitionedProducer: keeps what would have been sent, per partition."""

    partitions = 4

    def __init__(self) -> None:
        self.sent: list[tuple[int, bytes]] = []

    def send(self, payload: bytes, key: int | None = None, partition: int | None = None) -> int:
        if partition is None:
            partition = key % self.partitions if key is not None else 0
        self.sent.append((partition, payload))
        return partition

    def flush(self) -> None:
        pass


def chunks(n: int, size: int):
    for start in range(0, n, size):
        rows = np.zeros(min(size, n - start), dtype=SCHEMA.dtype)
        rows["id"] = np.arange(start, start + len(rows))
        yield rows


@pytest.mark.parametrize("per_message", [1, 5])
def test_packed_messages_keep_key_routing_and_lose_nothing(per_message):
    codec = RecordCodec(SCHEMA)
    producer = RecordingProducer()
    sent = publish(producer, codec, chunks(103, 40), key_field="id",  # type: ignore[arg-type]
                   per_message=per_message)
    assert sent == 103
    seen = []
    for partition, payload in producer.sent:
        ids = codec.decode([payload])[0]["id"]
        assert 1 <= len(ids) <= per_message
        assert all(i % 4 == partition for i in ids)  # every record on its key's partition
        assert list(ids) == sorted(ids)  # in order within the partition
        seen.extend(ids.tolist())
    assert sorted(seen) == list(range(103))
    # chunks of 40, 40, 23 rows: 10 per partition -> 2 messages each; 6/6/6/5 -> 2+2+2+1
    assert len(producer.sent) == {1: 103, 5: 8 + 8 + 7}[per_message]
