"""PulsarPartitionSource against the real broker: a partition held by a killed process is read
on at once, a silent partition is reopened, the durable cursor is acknowledged at commit, and
nothing is lost or handed out twice."""

import json
import os
import signal
import subprocess
import sys
import time

import pulsar
import pytest

from benchmarks.kit.stragglers import freeze
from streams.pulsar.client import connect
from streams.pulsar.cursor import DurableCursor
from streams.pulsar.producer import PartitionedProducer
from streams.pulsar.pulsar_source import PulsarPartitionSource, message_position
from streams.pulsar.topics import partition_topic
from tests.integration.harness import REPO, wait_until

pytestmark = pytest.mark.integration


def publish(client, topic, first, count, batching=True):
    producer = PartitionedProducer(client, topic, 1, batching=batching)
    for i in range(first, first + count):
        producer.send(i.to_bytes(4, "big"), partition=0)
    producer.close()


def drain(source, want, timeout_s=20.0):
    got = []
    deadline = time.monotonic() + timeout_s
    while len(got) < want and time.monotonic() < deadline:
        batch = source.next_batch(64)
        got.extend(int.from_bytes(payload, "big") for payload in batch.payloads)
        if not batch:
            time.sleep(0.02)
    return got


class StalledDelivery:
    """The client's side of a dispatch the broker dropped and never retried: messages wait on
    the broker and none arrive (stands in for the source's real reader until it is
    reopened)."""

    def __init__(self, reader):
        self.real = reader
        self._consumer = self

    def receive(self, timeout_millis):
        raise pulsar.Timeout("nothing arrives")

    def is_connected(self):
        return True

    def close(self):
        self.real.close()


@pytest.fixture
def client(broker):
    client = connect(broker.url, operation_timeout_seconds=2)
    yield client
    client.close()


#: a process that reads partition 0 as a rank does, and also holds an Exclusive consumer the
#: way ranks did before readers; it prints its snapshot once it has read `want` messages
READING_PROCESS = """
import json, sys, time, pulsar
from streams.pulsar.client import connect
from streams.pulsar.cursor import DurableCursor
from streams.pulsar.pulsar_source import PulsarPartitionSource, message_position
url, topic, want = sys.argv[1], sys.argv[2], int(sys.argv[3])
client = connect(url)
held = client.subscribe(topic + "-partition-0", "exclusive", receiver_queue_size=1000,
                        initial_position=pulsar.InitialPosition.Earliest)
cursor = DurableCursor(connect(url), topic + "-partition-0", "job")
source = PulsarPartitionSource(client, topic, 0, cursor=cursor)
got = 0
while True:
    got += len(source.next_batch(64))
    try:
        while True:
            held.receive(0)
    except pulsar.Timeout:
        pass
    if got >= want:
        print(json.dumps({"snapshot": source.snapshot(), "got": got}), flush=True)
        want = 10**12
    time.sleep(0.005)
"""


def test_a_partition_read_by_a_killed_process_is_read_on_at_once(broker, client, topic):
    """kill -9 of a reader while its partition is published to: the connection ends in a
    TCP reset (the frozen process left messages unread), which pulsar-lite 0.2.0 never cleans
    up. An Exclusive subscription stays refused (the broker's quirk, shown here), but a new
    source reads on from the killed one's snapshot, each message once."""
    publish(client, topic, 0, 300)
    child = subprocess.Popen([sys.executable, "-c", READING_PROCESS, broker.url, topic, "300"],
                             cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        seen = json.loads(child.stdout.readline())
        assert seen["got"] == 300
        freeze(child.pid)  # stops reading: what comes next stays unread in its socket
        publish(client, topic, 300, 200)
        time.sleep(0.5)
        os.kill(child.pid, signal.SIGKILL)
        child.wait(10)
    finally:
        if child.poll() is None:
            child.kill()
    with pytest.raises(pulsar.PulsarException):
        client.subscribe(partition_topic(topic, 0), "exclusive",
                         consumer_type=pulsar.ConsumerType.Exclusive)

    start = time.monotonic()
    cursor_client = connect(broker.url, operation_timeout_seconds=2)
    cursor = DurableCursor(cursor_client, partition_topic(topic, 0), "job")
    source = PulsarPartitionSource(client, topic, 0, resume_state=seen["snapshot"],
                                   cursor=cursor)
    assert drain(source, 200) == list(range(300, 500)), "after the snapshot, each once"
    assert time.monotonic() - start < 5
    wait_until(lambda: cursor.is_open, 10, "the durable cursor, where the killed one was")
    source.close()
    cursor.close()
    cursor_client.close()


def test_commit_acknowledges_the_durable_cursor(client, topic):
    """The job's subscription is a cursor that only retention reads: a commit moves it to
    right after the snapshot; readers still start from the snapshot they are given."""
    publish(client, topic, 0, 100, batching=False)
    cursor = DurableCursor(client, partition_topic(topic, 0), "job")
    source = PulsarPartitionSource(client, topic, 0, cursor=cursor)
    assert drain(source, 100) == list(range(100))
    state = source.snapshot()
    publish(client, topic, 100, 50, batching=False)
    wait_until(lambda: cursor.is_open, 10, "the durable cursor")
    source.commit(state)
    time.sleep(0.5)  # the client groups acknowledgements for up to 100 ms
    source.close()
    cursor.close()
    fresh = PulsarPartitionSource(client, topic, 0)
    assert drain(fresh, 150) == list(range(150)), "no snapshot: from the earliest message"
    fresh.close()
    cursor = client.subscribe(partition_topic(topic, 0), "job",
                              initial_position=pulsar.InitialPosition.Earliest)
    first = int.from_bytes(cursor.receive(5000).data(), "big")
    cursor.close()
    assert first == 100, "the cursor stands right after the committed snapshot"


def test_a_silent_partition_is_reopened_and_delivers_the_rest_once(client, topic):
    publish(client, topic, 0, 1)  # the first entry alone: what follows is read by a reader
    publish(client, topic, 1, 199)
    source = PulsarPartitionSource(client, topic, 0, silence_s=0.5)
    assert drain(source, 200) == list(range(200))
    source._reader = StalledDelivery(source._reader)
    publish(client, topic, 200, 100)
    rest = drain(source, 100)
    assert rest == list(range(200, 300)), "after reopening, each message once, in order"
    stats = source.stats()
    assert stats["resubscribed"] >= 1
    assert stats["duplicates"] == 0, "reopened right after the last message: nothing replayed"
    source.close()


def test_a_replay_is_dropped_by_comparing_message_ids(client, topic):
    """The redelivery check compares the client's MessageIds, not position tuples (5x
    cheaper): they must order as (ledger, entry, batch index), batched or not, and against
    an id restored from a snapshot. Then a replay from the start, as a client makes after a
    reconnect, hands nothing out twice."""
    publish(client, topic, 0, 100, batching=False)
    publish(client, topic, 100, 200)  # batched
    source = PulsarPartitionSource(client, topic, 0)
    ids = []
    deadline = time.monotonic() + 20
    while len(ids) < 300 and time.monotonic() < deadline:
        ids += source.next_batch(64).ids
        time.sleep(0.01)
    assert len(ids) == 300
    restored = [pulsar.MessageId.deserialize(i.serialize()) for i in ids[::37]]
    every = ids + restored
    assert all((a <= b) == (message_position(a) <= message_position(b))
               for a in every for b in every)
    source._reader.close()
    source._reader = client.create_reader(partition_topic(topic, 0), pulsar.MessageId.earliest)
    publish(client, topic, 300, 50)
    assert drain(source, 50) == list(range(300, 350)), "the replay dropped, the rest once"
    assert source.stats()["duplicates"] == 300
    source.close()


def test_a_partition_whose_first_entry_is_a_batch_is_read_whole(broker, client, topic):
    """A batched first message (entry 0) is read by a temporary consumer, not a reader (a
    reader would acknowledge entry -1: pulsar-lite then fails its dispatch for good); the
    source then reads on through a reader, and the temporary subscription is gone."""
    publish(client, topic, 0, 500)  # batched: entry 0 holds many of them
    source = PulsarPartitionSource(client, topic, 0)
    handover = source._leave_first_batch
    at_handover = []

    def leave_first_batch():
        at_handover.append(source.stats()["duplicates"])
        handover()

    source._leave_first_batch = leave_first_batch
    assert drain(source, 500) == list(range(500))
    publish(client, topic, 500, 500)
    assert drain(source, 500) == list(range(500, 1000))
    assert isinstance(source._reader, pulsar.Reader), "past the first batch: a reader"
    assert len(at_handover) == 1, "one handover"
    # pulsar-lite may redeliver to the temporary (exclusive) consumer before the handover
    # (dropped, counted; seen once in CI: the 500 of entry 0 again): the reader itself must
    # start after the consumer's last message and replay nothing
    assert source.stats()["duplicates"] == at_handover[0], "the reader replayed messages"
    source.close()
    log = (broker.data_dir / "broker.log").read_text()
    assert f"{partition_topic(topic, 0)}': out of range" not in log


def test_an_idle_partition_is_reopened_ever_less_often(client, topic):
    publish(client, topic, 0, 10)
    source = PulsarPartitionSource(client, topic, 0, silence_s=0.2)
    assert drain(source, 10) == list(range(10))
    start = time.monotonic()
    while time.monotonic() - start < 2.0:
        assert len(source.next_batch(8)) == 0
        time.sleep(0.01)
    # silent since ~start: reopened at about 0.2, 0.6 and 1.4 s, not every 0.2 s
    assert 2 <= source.resubscriptions <= 4
    publish(client, topic, 10, 5)
    assert drain(source, 5) == list(range(10, 15))
    source.close()
