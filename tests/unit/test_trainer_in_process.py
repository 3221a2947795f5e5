"""The training loop in-process (one Horovod rank), fed by in-memory TestingSources."""

import math
import time
from pathlib import Path

import numpy as np
import pytest

from hvd_online.sync.control import Controls
from hvd_online.training.trainer import OnlineTrainer
from streams.codecs import RecordCodec
from streams.testing import TestingSource
from tests.unit.kit import Linear, make_trainer, payloads


def test_loss_falls_and_bad_messages_go_to_dead_letters(world, tmp_path):
    template = Linear()
    data = payloads(template, 3000)
    data[10] = b"garbage"
    data[500] = data[500][:-4]
    a = TestingSource(0, data[0::2])
    b = TestingSource(1, data[1::2])
    trainer, sink = make_trainer(world, tmp_path, [a, b], ["train.max_samples=2998"])
    reports = list(trainer.run())
    trained = [r for r in reports if r.count]
    assert reports[-1].stopped == "max_samples"
    assert reports[-1].samples_total == 2998
    assert sink.total == 2 and reports[-1].rejected_total == 2
    assert {r.reason.split(":")[0] for _, r in sink.records} == {"wrong size"}
    first = np.mean([r.loss for r in trained[:3]])
    last = np.mean([r.loss for r in trained[-3:]])
    assert last < first / 5, (first, last)


def test_empty_windows_step_without_training(world, tmp_path):
    quiet = TestingSource(0, [])
    trainer, _ = make_trainer(world, tmp_path, [quiet], ["train.max_steps=3"])
    reports = list(trainer.run())
    assert [r.count for r in reports] == [0, 0, 0]
    assert not any(r.applied for r in reports)
    assert all(math.isnan(r.loss) for r in reports)
    assert reports[-1].stopped == "max_steps"


def test_stop_request_saves_a_checkpoint_and_stops(world, tmp_path):
    controls = Controls()
    source = TestingSource(0, payloads(Linear(), 10000))
    trainer, _ = make_trainer(world, tmp_path, [source], controls=controls)
    reports = []
    for report in trainer.run():
        reports.append(report)
        if report.step == 5:
            controls.request("stop")
    assert reports[-1].step == 6 and reports[-1].stopped == "stop"
    assert reports[-1].checkpoint and Path(reports[-1].checkpoint).is_dir()
    # a checkpoint acknowledges exactly what it covers
    assert source.committed == [str(6 * 32 - 1)]


def test_idle_timeout_ends_the_run(world, tmp_path):
    trainer, _ = make_trainer(world, tmp_path, [TestingSource(0, [])],
                              ["train.idle_timeout_s=0.05"])
    reports = list(trainer.run())
    assert reports[-1].stopped == "idle"


def test_non_finite_loss_skips_the_step_on_every_rank_and_counts_it(world, tmp_path):
    template = Linear()
    rows = np.zeros(32, dtype=template.schema.dtype)
    rows["x"] = 1.0
    rows["y"] = 1e30  # finite in the record, but its squared error overflows float32
    source = TestingSource(0, RecordCodec(template.schema).encode_many(rows))
    trainer, sink = make_trainer(world, tmp_path, [source], ["train.max_steps=1"])
    before = [w.copy() for w in trainer.model.get_weights()]
    (report,) = list(trainer.run())
    assert report.count == 32 and not report.applied
    assert report.skipped_steps == 1 and report.samples_total == 0
    assert sink.total == 0
    for got, want in zip(trainer.model.get_weights(), before, strict=True):
        np.testing.assert_array_equal(got, want)


def test_packed_messages_train_every_sample_and_count_their_freshness(world, tmp_path):
    template = Linear()
    rows = np.frombuffer(b"".join(payloads(template, 1000)), dtype=template.schema.dtype)
    packed = RecordCodec(template.schema).encode_many(rows, per_message=8)  # 125 messages
    packed[3] = packed[3][:-1]  # one broken message: its 8 samples go to the DLQ, whole
    a = TestingSource(0, packed[0::2])
    b = TestingSource(1, packed[1::2])
    trainer, sink = make_trainer(world, tmp_path, [a, b], ["train.max_samples=992"])
    reports = list(trainer.run())
    assert reports[-1].stopped == "max_samples" and reports[-1].samples_total == 992
    assert all(r.count <= 32 + 7 for r in reports)  # windows count samples, not messages
    assert sink.total == 1
    assert trainer.freshness.count == 992  # every trained sample, none of the rejected
    assert 0 <= trainer.freshness.quantile(0.99) < 60_000



class FreezingSource(TestingSource):
    """Freezes once, after `after` records, for `seconds` (as a rank stopped with SIGSTOP):
    the records after it are there when it wakes."""

    def __init__(self, partition, payloads, after, seconds):
        super().__init__(partition, payloads)
        self.after, self.seconds, self.frozen = after, seconds, False

    def next_batch(self, max_count):
        if not self.frozen and self._position + 1 >= self.after:
            self.frozen = True
            time.sleep(self.seconds)
        return super().next_batch(max_count)


def test_a_rank_frozen_longer_than_the_idle_timeout_does_not_stop_the_run(world, tmp_path):
    template = Linear()
    data = payloads(template, 2000)
    source = FreezingSource(0, data, after=1000, seconds=1.5)
    trainer, _ = make_trainer(world, tmp_path, [source, TestingSource(1, [])],
                              ["train.idle_timeout_s=1.0"])
    reports = list(trainer.run())
    assert trainer.progress.samples_total == 2000, "nothing in hand is what idle means"
    assert reports[-1].stopped == "idle"  # once the stream really ended


@pytest.mark.parametrize(("sync_every", "synchroniser"), [(1, "LockstepStep"), (4, "LocalSGD")])
def test_one_loop_drives_either_synchroniser(world, tmp_path, sync_every, synchroniser):
    """The same `run` (no mode branches: the loop only sees `Outcome`s) trains every sample
    once with either synchroniser; reports come at the steps that reached every rank."""
    template = Linear()
    data = payloads(template, 32 * 24)
    seen = []
    trainer, _ = make_trainer(world, tmp_path, [TestingSource(0, data), TestingSource(1, [])],
                              [f"train.sync_every={sync_every}", "train.max_samples=768"],
                              hooks=[lambda step, rows: seen.append(len(rows))])
    assert type(trainer.synchroniser).__name__ == synchroniser
    reports = list(trainer.run())
    assert reports[-1].samples_total == 768 and reports[-1].stopped == "max_samples"
    assert sum(seen) == 768, "each sample reached the step hooks once"
    assert [r.step % sync_every for r in reports] == [0] * len(reports)
    assert reports[-1].checkpoint is not None
    assert reports[-1].loss < reports[0].loss


def test_the_loop_names_no_synchronisation_mode():
    import inspect

    loop = inspect.getsource(OnlineTrainer._steps)
    for word in ("sync_step", "local_sgd", "LocalSGD", "sync_every", "assert "):
        assert word not in loop, word
    assert "self.synchroniser.step(" in loop
