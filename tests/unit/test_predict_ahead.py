"""The predictions stage of raw event streams (hvd_online/inputs/predict_ahead.py): events are
predicted and published while no step runs, a hot partition does not hold back a quiet one's
predictions, what waits for a step is bounded, and a checkpoint covers only what a step took."""

import time

import keras
import numpy as np
import tensorflow as tf

from hvd_online.inputs.predict_ahead import AHEAD_WINDOWS, PredictAhead
from hvd_online.model.prediction_copy import PredictionCopy
from streams.codecs import RecordCodec
from streams.schema import EventSchema
from streams.testing import TestingSource
from tests.integration.harness import wait_until

SCHEMA = EventSchema.from_fields([("id", "<i8"), ("x", "<f4", (2,))], key="id", features="x")
SPEC = tf.TensorSpec((None, 2), tf.float32)


def model() -> keras.Model:
    return keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])


def payloads(keys) -> list[bytes]:
    rows = np.zeros(len(keys), SCHEMA.dtype)
    rows["id"] = keys
    rows["x"] = np.asarray(keys, np.float32)[:, None]
    return RecordCodec(SCHEMA).encode_many(rows)


class Published:
    def __init__(self) -> None:
        self.keys: list[int] = []
        self.steps: list[int] = []
        self.outputs: list[float] = []

    def __call__(self, keys, outputs, step, times) -> None:
        self.keys += keys.tolist()
        self.outputs += outputs[:, 0].tolist()
        self.steps += [step] * len(keys)


def stage(sources, batch_size=8):
    published = Published()
    live = model()
    ahead = PredictAhead(sources, RecordCodec(SCHEMA), SCHEMA, published, batch_size)
    ahead.start(PredictionCopy(live, model, SPEC))
    return ahead, published, live


def test_events_are_predicted_while_no_step_runs_and_a_snapshot_covers_what_a_step_took():
    source = TestingSource(0, payloads(range(20)))
    ahead, published, _ = stage([source], batch_size=64)
    try:
        wait_until(lambda: len(published.keys) == 20, 10, "every event predicted, no take")
        assert published.keys == list(range(20)) and set(published.steps) == {0}
        handed = ahead.sources[0]
        assert handed.snapshot() is None, "read ahead is not covered by a checkpoint"
        assert handed.backlog() == 20
        taken = ahead.take(0.0)
        assert sum(t.samples for t in taken) == 20
        assert handed.snapshot() == "19" and handed.backlog() == 0
    finally:
        ahead.stop()


def test_a_hot_partition_does_not_hold_back_a_quiet_ones_prediction():
    hot = TestingSource(0, payloads(range(0, 40_000, 2)))
    quiet = TestingSource(1, payloads([1]))
    ahead, published, _ = stage([hot, quiet], batch_size=8)
    try:
        wait_until(lambda: 1 in published.keys, 10, "the quiet partition's event predicted")
        # one pass takes a share of a window from each partition: the quiet event came with
        # the hot partition's first few, not after its backlog
        assert published.keys.index(1) < 8
    finally:
        ahead.stop()


def test_what_waits_for_a_step_is_bounded_and_taking_makes_room():
    source = TestingSource(0, payloads(range(10_000)))
    ahead, published, _ = stage([source], batch_size=8)
    limit = AHEAD_WINDOWS * 8
    try:
        wait_until(lambda: len(published.keys) >= limit, 10, "the stage filled its room")
        time.sleep(0.2)
        assert limit <= len(published.keys) < limit + 8, "it stopped reading at the limit"
        assert not source.exhausted
        assert limit <= sum(t.samples for t in ahead.take(0.0)) < limit + 8
        wait_until(lambda: len(published.keys) >= 2 * limit, 10, "reading again after a take")
    finally:
        ahead.stop()


def test_predictions_use_the_weights_of_the_last_refresh():
    source = TestingSource(0, [*payloads([1]), TestingSource.EOF])
    ahead, published, live = stage([source])
    try:
        wait_until(lambda: published.keys == [1], 10, "the first event predicted")
        ahead.take(0.0)
        live.layers[0].kernel.assign(np.full((2, 1), 2.0, np.float32))
        live.layers[0].bias.assign(np.zeros(1, np.float32))
        ahead.refresh(5)
        source._items[1:1] = payloads([3])  # a second event arrives after the refresh
        wait_until(lambda: len(published.keys) == 2, 10, "the second event predicted")
        assert published.steps == [0, 5] and published.outputs[1] == 12.0  # 2*3 + 2*3
    finally:
        ahead.stop()


class Replayed(TestingSource):
    """A backlog: every record was published a minute ago."""

    __test__ = False

    def next_batch(self, max_count):
        messages = super().next_batch(max_count)
        messages.publish_ms = [ms - 60_000 for ms in messages.publish_ms]
        return messages


def test_a_backlog_is_predicted_at_most_a_window_ahead_of_training():
    source = Replayed(0, payloads(range(1000)))
    ahead, published, _ = stage([source], batch_size=8)
    try:
        wait_until(lambda: len(published.keys) >= 8, 10, "the first window predicted")
        time.sleep(0.2)
        assert len(published.keys) < 16, "replayed events wait for training, unpredicted"
    finally:
        ahead.stop()


def test_a_malformed_event_is_handed_over_for_the_dead_letter_topic_not_predicted():
    source = TestingSource(0, [*payloads([1]), b"not a record", *payloads([2])])
    ahead, published, _ = stage([source], batch_size=64)
    try:
        wait_until(lambda: len(published.keys) == 2, 10, "both good events predicted")
        taken = ahead.take(0.0)
        assert [int(k) for t in taken for k in t.rows["id"]] == [1, 2]
        rejected = [(record.payload, why.reason) for t in taken for record, why in t.rejected]
        assert len(rejected) == 1 and rejected[0][0] == b"not a record"
        assert ahead.sources[0].snapshot() == "2", "the checkpoint covers the bad one too"
    finally:
        ahead.stop()
