"""The dynamic embedding table: sightings, eviction and re-initialisation, a full table,
identical maps on ranks fed different IDs, restore mid-stream, sparse updates, and the
lookup inside a SavedModel."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from hvd_online.errors import ConfigError
from hvd_online.model.dynamic_embedding import DynamicEmbedding, dynamic_tables
from hvd_online.model.saved_model import write_saved_model
from hvd_online.sync.steps import LocalSGD, LockstepStep, Trainable
from tests.unit.kit import Ratings


def table(**options) -> DynamicEmbedding:
    layer = DynamicEmbedding(**{"dim": 3, "capacity": 4, "column": 0, **options})
    layer(np.zeros((1, 1), np.int64))  # built
    return layer


def test_an_id_gets_its_own_row_after_min_count_sightings():
    layer = table(min_count=3)
    assert layer.admit(np.array([5, 5]), step=1).tolist() == [0, 0]  # 2 sightings
    assert layer.admit(np.array([6]), step=1).tolist() == [0]
    assert layer.admit(np.array([5]), step=2).tolist() == [1]  # the 3rd: its own row
    assert layer.counters()["size"] == 1 and layer.counters()["default_hits"] == 3


def test_eviction_takes_the_least_recently_seen_quiet_row_and_reinitialises_it():
    layer = table(capacity=3, ttl_steps=2)
    for step, new_id in enumerate([10, 11, 12], start=1):
        layer.admit(np.array([new_id]), step)
    layer.admit(np.array([11]), step=4)  # 10 is now the least recently seen
    before = layer.embeddings.numpy().copy()
    layer.slots[0].assign(np.ones_like(layer.slots[0].numpy()))
    assert layer.admit(np.array([13]), step=5).tolist() == [1], "row of 10 (seen at step 1)"
    assert layer.rows_of(tf.constant([10, 11, 12, 13], tf.int64)).numpy().tolist() == [0, 2, 3, 1]
    after = layer.embeddings.numpy()
    assert not np.allclose(after[1], before[1]) and np.allclose(after[2:], before[2:])
    np.testing.assert_array_equal(after[1], layer._fresh_rows(np.array([1]), step=5)[0])
    assert layer.slots[0].numpy()[1].tolist() == [0, 0, 0] and layer.slots[0].numpy()[2].sum() == 3
    assert layer.counters()["evictions"] == 1


def test_a_full_table_with_nothing_quiet_sends_new_ids_to_the_default_row():
    layer = table(capacity=2, ttl_steps=100)
    layer.admit(np.array([1, 2]), step=1)
    assert layer.admit(np.array([3, 4]), step=2).tolist() == [0, 0]
    counters = layer.counters()
    assert counters["full"] == 2 and counters["size"] == 2 and counters["default_hits"] == 2


def test_ranks_fed_different_ids_keep_identical_tables():
    """What the lockstep step does: each rank admits every rank's IDs of the step (allgathered,
    in rank order); the map must not depend on which rank saw what."""
    rank0, rank1 = table(capacity=5, ttl_steps=1), table(capacity=5, ttl_steps=1)
    rng = np.random.default_rng(0)
    for step in range(1, 30):
        mine, theirs = rng.integers(0, 40, 6), rng.integers(0, 40, 6)
        rank0.admit(np.concatenate([mine, theirs]), step)
        rank1.admit(np.concatenate([theirs, mine]), step)
    for a, b in zip(rank0.get_weights(), rank1.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert rank0.counters()["evictions"] > 0


def test_restored_mid_stream_it_continues_exactly():
    stream = [np.random.default_rng(s).integers(0, 30, 8) for s in range(20)]
    live = table(capacity=6, ttl_steps=2, min_count=2)
    for step, ids in enumerate(stream[:10], start=1):
        live.admit(ids, step)
    restored = table(capacity=6, ttl_steps=2, min_count=2)
    restored.set_weights(live.get_weights())  # what a checkpoint carries
    for step, ids in enumerate(stream[10:], start=11):
        assert live.admit(ids, step).tolist() == restored.admit(ids, step).tolist()
    assert live.counters() == restored.counters()


def trained_step(template: Ratings, x: np.ndarray, y: np.ndarray) -> keras.Model:
    model = template.build_model()
    optimizer = keras.optimizers.Adam(0.05)
    optimizer.build(model.trainable_variables)
    schema = template.schema
    step = LockstepStep(Trainable(
        model, optimizer, template.per_sample_loss, template.per_sample_metric,
        tf.TensorSpec((None, 2), tf.int64), tf.TensorSpec((None,), tf.float32)), 0, 1)
    assert schema.features == "ids"
    step.step(x, y, lambda: np.zeros(0, np.float32))
    return model, step


def test_a_step_moves_only_the_rows_it_touched():
    template = Ratings()
    model = template.build_model()
    users = dynamic_tables(model)[0]
    keras.utils.set_random_seed(1)
    x = np.array([[100, 7], [101, 8]], np.int64)
    model, step = trained_step(template, x, np.array([1.0, 2.0], np.float32))
    users = dynamic_tables(model)[0]
    before = users.embeddings.numpy().copy()
    step.step(np.array([[100, 7]], np.int64), np.array([1.0], np.float32),
              lambda: np.zeros(0, np.float32))
    after = users.embeddings.numpy()
    moved = np.flatnonzero(np.any(after != before, axis=1)).tolist()
    assert moved == [users.rows_of(tf.constant([100], tf.int64)).numpy()[0]]
    assert np.count_nonzero(users.slots[1].numpy().sum(axis=1)) == 2, "slots kept per row"


def test_local_sgd_refuses_dynamic_tables():
    template = Ratings()
    model = template.build_model()
    optimizer = keras.optimizers.Adam(0.01)
    with pytest.raises(ConfigError, match="sync_every = 1"):
        LocalSGD(Trainable(model, optimizer, template.per_sample_loss,
                           template.per_sample_metric, tf.TensorSpec((None, 2), tf.int64),
                           tf.TensorSpec((None,), tf.float32)), 0, 2, every=4)


def test_a_saved_model_takes_raw_ids_including_unseen_ones(tmp_path):
    template = Ratings()
    x = np.array([[1, 10], [2, 20], [3, 30]], np.int64)
    model, _ = trained_step(template, x, np.array([1.0, 2.0, 3.0], np.float32))
    write_saved_model(model, template, tmp_path / "version")
    served = tf.saved_model.load(str(tmp_path / "version")).signatures["serving_default"]
    queries = np.array([[1, 10], [3, 20], [999, 10], [1, 12345]], np.int64)  # last two unseen
    got = next(iter(served(ids=tf.constant(queries)).values())).numpy()
    np.testing.assert_allclose(got, model(queries).numpy(), rtol=1e-6)
    default = dynamic_tables(model)[0].embeddings.numpy()[0]
    rows = dynamic_tables(model)[0].rows_of(tf.constant([999], tf.int64)).numpy()
    assert rows.tolist() == [0] and default.shape == (4,)


def test_the_step_that_fills_the_table_gives_each_new_id_a_row_of_its_own():
    """More new IDs than free rows: the free rows go first, then quiet owned rows; a free row
    is never handed out twice (it looks quiet too: never seen)."""
    layer = table(capacity=4, ttl_steps=2)
    layer.admit(np.array([1, 2]), step=1)  # rows 1, 2; rows 3, 4 free
    rows = layer.admit(np.array([10, 11, 12, 13]), step=5)  # 2 free + 2 evicted
    assert sorted(rows.tolist()) == [1, 2, 3, 4], "four IDs, four distinct rows"
    looked_up = layer.rows_of(tf.constant([10, 11, 12, 13], tf.int64)).numpy()
    assert looked_up.tolist() == rows.tolist(), "every new ID kept its row"
    counters = layer.counters()
    assert counters["size"] == int(np.sum(layer.row_ids.numpy() >= 0)) == 4


def test_sgd_moves_a_row_by_its_rate_times_the_sum_of_its_samples_gradients():
    ids = keras.Input((1,), dtype="int64")
    layer = DynamicEmbedding(1, 4, column=0, optimizer="sgd", learning_rate=0.1)
    model = keras.Model(ids, layer(ids))
    optimizer = keras.optimizers.Adam(0.01)
    optimizer.build(model.trainable_variables)
    step = LockstepStep(Trainable(model, optimizer, lambda y, p: (y - p[:, 0]) ** 2,
                                  lambda y, p: y, tf.TensorSpec((None, 1), tf.int64),
                                  tf.TensorSpec((None,), tf.float32)), 0, 1)
    x = np.array([[5], [5], [6]], np.int64)
    y = np.array([1.0, 1.0, 2.0], np.float32)
    step.step(x[:1], y[:1], lambda: np.zeros(0, np.float32))  # 5 and 6 get rows
    step.step(x[2:], y[2:], lambda: np.zeros(0, np.float32))
    w = layer.embeddings.numpy()[layer.rows_of(tf.constant([5, 6])).numpy(), 0]
    step.step(x, y, lambda: np.zeros(0, np.float32))
    after = layer.embeddings.numpy()[layer.rows_of(tf.constant([5, 6])).numpy(), 0]
    # d/dw of (y - w)^2 is 2 (w - y): 5 was in the batch twice, 6 once; no division by 3
    expected = [w[0] - 0.1 * 2 * 2 * (w[0] - 1.0), w[1] - 0.1 * 2 * (w[1] - 2.0)]
    np.testing.assert_allclose(after, expected, rtol=1e-5)
    assert layer.slots == [], "plain SGD keeps no slots"


def test_a_bad_table_optimizer_is_refused_naming_the_choices():
    with pytest.raises(ValueError, match="'adam' or 'sgd'"):
        DynamicEmbedding(2, 4, column=0, optimizer="adagrad")


def test_the_index_merged_step_by_step_equals_one_sorted_from_scratch():
    """The ID -> row index is merged (evicted IDs out, new ones in) rather than sorted anew
    each step: after every step of a stream that fills the table and evicts, it is the sorted
    list of the owned rows' IDs, padded, and every owned ID finds its row."""
    from hvd_online.model.dynamic_embedding import NO_ID

    layer = table(capacity=50, ttl_steps=3)
    rng = np.random.default_rng(5)
    evictions = 0
    for step in range(1, 120):
        layer.admit(rng.integers(0, 1000, rng.integers(1, 30)), step)
        row_ids = layer.row_ids.numpy()
        owned = np.flatnonzero(row_ids >= 0)
        order = np.argsort(row_ids[owned])
        expected = np.full(50, NO_ID, np.int64)
        expected[: len(owned)] = row_ids[owned][order]
        np.testing.assert_array_equal(layer.sorted_ids.numpy(), expected)
        np.testing.assert_array_equal(layer.sorted_rows.numpy()[: len(owned)], owned[order])
        found = layer.rows_of(tf.constant(row_ids[owned], tf.int64)).numpy()
        np.testing.assert_array_equal(found, owned)
        evictions = layer.counters()["evictions"]
    assert evictions > 100 and layer.counters()["size"] == 50


def test_a_negative_id_gets_the_default_row_and_takes_no_row():
    """-1 marks a free row: a negative ID is never admitted (it used to take a row that
    then looked free, and was overwritten by the next new ID)."""
    layer = table(capacity=3)
    assert layer.admit(np.array([-5, 3, -5]), step=1).tolist() == [0, 1, 0]
    assert layer.admit(np.array([4]), step=2).tolist() == [2]
    counters = layer.counters()
    assert counters["inserts"] == 2 and counters["default_hits"] == 2 and counters["full"] == 0
    assert layer.rows_of(tf.constant([3, 4, -5], tf.int64)).numpy().tolist() == [1, 2, 0]
