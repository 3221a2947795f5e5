"""PulsarPartitionSource against the real broker: a partition that goes silent is resubscribed
and nothing is lost or handed out twice."""

import time

import pulsar
import pytest

from streams.client import connect
from streams.producer import PartitionedProducer
from streams.pulsar_source import PulsarPartitionSource

pytestmark = pytest.mark.integration


def publish(client, topic, first, count):
    producer = PartitionedProducer(client, topic, 1)
    for i in range(first, first + count):
        producer.send(i.to_bytes(4, "big"), partition=0)
    producer.close()


def drain(source, want, timeout_s=20.0):
    got = []
    deadline = time.monotonic() + timeout_s
    while len(got) < want and time.monotonic() < deadline:
        batch = source.next_batch(64)
        got.extend(int.from_bytes(r.payload, "big") for r in batch)
        if not batch:
            time.sleep(0.02)
    return got


class StalledDelivery:
    """The client's side of a dispatch the broker dropped and never retried: messages wait on
    the broker and none arrive (stands in for the source's real consumer until it is
    resubscribed)."""

    def __init__(self, consumer):
        self.real = consumer
        self._consumer = self

    def receive(self, timeout_millis):
        raise pulsar.Timeout("nothing arrives")

    def close(self):
        self.real.close()


@pytest.fixture
def client(broker):
    client = connect(broker.url, operation_timeout_seconds=2)
    yield client
    client.close()


def test_a_silent_partition_is_resubscribed_and_delivers_the_rest_once(client, topic):
    publish(client, topic, 0, 200)
    source = PulsarPartitionSource(client, topic, 0, "sub", silence_s=0.5)
    assert drain(source, 200) == list(range(200))
    source._consumer = StalledDelivery(source._consumer)
    publish(client, topic, 200, 100)
    rest = drain(source, 100)
    assert rest == list(range(200, 300)), "after resubscribing, each message once, in order"
    stats = source.stats()
    assert stats["resubscribed"] >= 1
    assert stats["duplicates"] >= 200, "nothing was acknowledged: the replay was dropped"
    source.close()


def test_an_idle_partition_is_resubscribed_ever_less_often(client, topic):
    publish(client, topic, 0, 10)
    source = PulsarPartitionSource(client, topic, 0, "sub", silence_s=0.2)
    assert drain(source, 10) == list(range(10))
    start = time.monotonic()
    while time.monotonic() - start < 2.0:
        assert source.next_batch(8) == [], "the replay after a resubscription is dropped"
        time.sleep(0.01)
    # silent since ~start: resubscribed at about 0.2, 0.6 and 1.4 s, not every 0.2 s
    assert 2 <= source.resubscriptions <= 4
    source.close()


def test_a_consumer_already_taken_does_not_stop_the_source(client, topic):
    """Resubscribing can fail (here: someone else holds the Exclusive subscription); the
    source keeps polling, never blocked, and retries at the next silence."""
    publish(client, topic, 0, 5)
    source = PulsarPartitionSource(client, topic, 0, "sub", silence_s=0.2)
    assert drain(source, 5) == list(range(5))
    source._consumer.close()
    rival = client.subscribe(f"{topic}-partition-0", "sub",
                             consumer_type=pulsar.ConsumerType.Exclusive)
    time.sleep(0.3)
    start = time.monotonic()
    assert source.next_batch(8) == []  # starts a resubscription, which is refused
    assert time.monotonic() - start < 0.5, "polling does not wait for the broker"
    time.sleep(3)  # the refusal comes after the client's operation timeout
    assert source.resubscriptions == 0
    rival.close()
    publish(client, topic, 5, 5)
    assert drain(source, 5) == list(range(5, 10))
    assert source.resubscriptions == 1
    source.close()
