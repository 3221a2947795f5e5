"""Local SGD (`train.sync_every = k`): the averaging step against a stand-in for the other
rank's half of the collective, and the loop in-process (one rank): reports, checkpoints and
the ledger hook only where they belong."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from hvd_online.errors import ConfigError
from hvd_online.sync import steps
from hvd_online.sync.control import Controls, Flag
from hvd_online.sync.stats_vector import COUNT, HEAD
from hvd_online.sync.steps import LocalSGD, Trainable, weighted_mean
from streams.testing import TestingSource
from tests.unit.kit import Linear, make_trainer, payloads

STATS = 5  # a stats vector of this length after LocalSGD's head


def model_and_optimizer(seed):
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3), keras.layers.Dense(1)])
    optimizer = keras.optimizers.Adam(0.01)
    optimizer.build(model.trainable_variables)
    return model, optimizer


def state(model, optimizer):
    return [v.numpy().astype(np.float64) for v in list(model.weights) + optimizer.variables]


def local_sgd_with_peer(monkeypatch, peer_model, peer_optimizer, peer_trained):
    """A LocalSGD for 2 ranks whose collective adds a peer's weighted state, as Horovod's
    sum would; returns it and what the peer contributed."""
    model, optimizer = model_and_optimizer(seed=1)
    template = Linear()
    specs = (tf.TensorSpec((None, 4), tf.float32), tf.TensorSpec((None,), tf.float32))
    peer = [tf.constant(v * peer_trained, tf.float32)
            for v in state(peer_model, peer_optimizer)]
    peer_stats = np.zeros(len(HEAD) + STATS, np.float32)
    peer_stats[:3] = [10.0, 2.0, peer_trained]
    peer_stats[len(HEAD)] = 1.0  # e.g. the peer raised a flag

    def grouped_sum(tensors, name):
        others = [*peer, tf.constant(peer_stats), tf.constant([peer_trained, 1.0])]
        return [mine + other for mine, other in zip(tensors, others, strict=True)]

    monkeypatch.setattr(steps.collectives, "grouped_sum", grouped_sum)
    averager = LocalSGD(Trainable(model, optimizer, template.per_sample_loss,
                                  template.per_sample_metric, *specs), STATS, world_size=2,
                        every=2)
    return averager, model, optimizer


def batch(n, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4)).astype("f4")
    return x, (x @ np.array([1.0, -2.0, 0.5, 3.0], "f4")).astype("f4")


def test_averaging_gives_the_weighted_mean_of_both_ranks(monkeypatch):
    peer_model, peer_optimizer = model_and_optimizer(seed=2)
    peer_optimizer.iterations.assign(6)
    averager, model, optimizer = local_sgd_with_peer(monkeypatch, peer_model, peer_optimizer,
                                                     peer_trained=96.0)
    for seed in range(2):  # two local steps of 16 samples: this rank trained 32
        assert averager.train(*batch(16, seed))
    mine = state(model, optimizer)
    peers = state(peer_model, peer_optimizer)
    assert not np.allclose(mine[0], peers[0])
    summed, skipped = averager.average(np.zeros(STATS, np.float32))
    iteration = len(model.weights)  # Adam's counter: 2 here, 6 on the peer
    assert mine[iteration] == 2 and peers[iteration] == 6
    for got, a, b in zip(state(model, optimizer), mine, peers, strict=True):
        expected = weighted_mean([a, b], weights=[32.0, 96.0])
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    assert state(model, optimizer)[iteration] == 5  # (32 * 2 + 96 * 6) / 128
    assert summed[COUNT] == 32 + 96, "sample counts of the round, summed over ranks"
    assert summed[len(HEAD)] == 1.0, "a flag raised on the other rank reaches this one"
    assert skipped == 1


def test_an_idle_rank_takes_the_others_weights_and_adds_nothing(monkeypatch):
    peer_model, peer_optimizer = model_and_optimizer(seed=2)
    averager, model, optimizer = local_sgd_with_peer(monkeypatch, peer_model, peer_optimizer,
                                                     peer_trained=64.0)
    empty = np.zeros((0, 4), "f4"), np.zeros((0,), "f4")
    assert not averager.train(*empty)
    summed, _ = averager.average(np.zeros(STATS, np.float32))
    for got, theirs in zip(state(model, optimizer), state(peer_model, peer_optimizer),
                           strict=True):
        np.testing.assert_allclose(got, theirs, rtol=1e-6, atol=1e-7)
    assert summed[COUNT] == 64


def test_when_no_rank_trained_the_weights_stay(monkeypatch):
    peer_model, peer_optimizer = model_and_optimizer(seed=2)
    averager, model, optimizer = local_sgd_with_peer(monkeypatch, peer_model, peer_optimizer,
                                                     peer_trained=0.0)
    before = state(model, optimizer)
    averager.average(np.zeros(STATS, np.float32))
    for got, was in zip(state(model, optimizer), before, strict=True):
        np.testing.assert_array_equal(got, was)


def test_a_non_finite_window_is_skipped_locally():
    model, optimizer = model_and_optimizer(seed=1)
    template = Linear()
    specs = (tf.TensorSpec((None, 4), tf.float32), tf.TensorSpec((None,), tf.float32))
    averager = LocalSGD(Trainable(model, optimizer, template.per_sample_loss,
                                  template.per_sample_metric, *specs), STATS, world_size=1,
                        every=2)
    x, y = batch(8)
    y[3] = np.inf
    before = state(model, optimizer)
    assert not averager.train(x, y)
    summed, skipped = averager.average(np.zeros(STATS, np.float32))
    assert skipped == 1 and summed[COUNT] == 0
    np.testing.assert_array_equal(state(model, optimizer)[0], before[0])


def test_reports_checkpoints_and_hooks_in_process(world, tmp_path):
    """k = 4 on one rank: a report per 4 steps, checkpoints only at those steps (a save asked
    for at step 2 and `every_steps = 3` both wait for one), the hook at every local step."""
    template = Linear()
    data = payloads(template, 32 * 20)
    controls = Controls()
    seen = []

    def hook(step, rows):
        seen.append((step, len(rows)))
        if step == 2:
            controls.request(Flag.SAVE)

    trainer, _ = make_trainer(world, tmp_path, [TestingSource(0, data)],
                              ["train.sync_every=4", "train.max_samples=640",
                               "checkpoint.every_steps=3"], controls, [hook])
    reports = list(trainer.run())
    assert [r.step for r in reports] == [4, 8, 12, 16, 20]
    assert [r.count for r in reports] == [128] * 5
    assert reports[-1].samples_total == 640 and reports[-1].stopped == "max_samples"
    saved = [r.step for r in reports if r.checkpoint]
    assert saved == [4, 8, 12, 16, 20], "every round crossed a multiple of 3 or was asked for"
    assert [step for step, _ in seen] == list(range(1, 21))
    assert all(n == 32 for _, n in seen)


def test_drift_responses_need_sync_every_one(world, tmp_path):
    with pytest.raises(ConfigError, match="sync_every = 1"):
        make_trainer(world, tmp_path, [TestingSource(0, [])],
                     ["train.sync_every=4", 'drift.detector="page_hinkley"'])
    with pytest.raises(ConfigError, match="'train.sync_every' is 0: it must be >= 1"):
        make_trainer(world, tmp_path, [TestingSource(0, [])], ["train.sync_every=0"])
