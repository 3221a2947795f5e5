import threading

import numpy as np
import pytest

from streams.errors import StreamsError
from streams.testing import TestingSource
from streams.window import BatchWindow


def records(window_out):
    """A window's batches as one Record per message."""
    return [m.record(i) for m in window_out for i in range(len(m))]


def test_count_window_closes_at_batch_size_without_waiting():
    source = TestingSource(0, [bytes([i]) for i in range(10)])
    window = BatchWindow([source], batch_size=4, max_wait_s=3600)
    assert [len(records(window.collect())) for _ in range(2)] == [4, 4]


def test_time_window_closes_with_fewer_records():
    source = TestingSource(0, [b"a", b"b"])
    window = BatchWindow([source], batch_size=100, max_wait_s=0.02)
    assert [r.payload for r in records(window.collect())] == [b"a", b"b"]
    assert window.collect() == []  # nothing more: an empty window after max_wait


def test_window_wakes_when_data_arrives():
    source = TestingSource(0, [TestingSource.PAUSE, b"late"])
    window = BatchWindow([source], batch_size=1, max_wait_s=5)
    timer = threading.Timer(0.05, window.arrived.set)
    timer.start()
    assert [r.payload for r in records(window.collect())] == [b"late"]
    timer.join()


def test_busy_partition_does_not_starve_quiet_ones():
    busy = TestingSource(0, [b"b"] * 1000)
    quiet = TestingSource(1, [b"q1", b"q2"])
    window = BatchWindow([busy, quiet], batch_size=10, max_wait_s=0)
    first = records(window.collect())
    assert len(first) == 10
    assert {r.partition for r in first} == {0, 1}
    second = records(window.collect())
    assert sum(r.partition == 1 for r in first + second) == 2


def test_records_of_each_partition_stay_in_order():
    a = TestingSource(0, [f"a{i}".encode() for i in range(20)])
    b = TestingSource(1, [f"b{i}".encode() for i in range(20)])
    window = BatchWindow([a, b], batch_size=7, max_wait_s=0)
    seen: list = []
    for _ in range(10):
        seen.extend(records(window.collect()))
    for partition in (0, 1):
        positions = [r.position for r in seen if r.partition == partition]
        assert positions == list(range(20))


@pytest.mark.parametrize(("batch", "wait"), [(0, 1), (-1, 1), (1, -0.5)])
def test_bad_window_settings_are_rejected(batch, wait):
    with pytest.raises(StreamsError, match="must be"):
        BatchWindow([], batch_size=batch, max_wait_s=wait)


def lengths(payloads):
    return np.array([len(p) for p in payloads])


def test_batch_size_counts_samples_of_packed_messages():
    # payload length stands in for the samples a message carries
    a = TestingSource(0, [b"xxxx"] * 10)
    b = TestingSource(1, [b"yyyy"] * 10)
    window = BatchWindow([a, b], batch_size=16, max_wait_s=0, sample_counts=lengths)
    first = records(window.collect())
    assert sum(len(r.payload) for r in first) == 16
    assert {r.partition for r in first} == {0, 1}
    uneven = BatchWindow([TestingSource(0, [b"xxx"] * 10)], batch_size=8, max_wait_s=0,
                         sample_counts=lengths)
    assert sum(len(r.payload) for r in records(uneven.collect())) == 9  # overshoot < one message
