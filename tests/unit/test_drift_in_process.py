"""The drift response inside the real training loop (one in-process rank): a drift triggers
the configured action once, on the step the report shows, and a challenger that is running at
a checkpoint comes back from it."""

import math

import numpy as np
import pytest

from hvd_online.drift.detectors import Signal
from hvd_online.inputs.labelled import LabelledInput
from hvd_online.state.checkpoint import Resume, load_latest_checkpoint
from hvd_online.state.run_dir import RunLayout
from hvd_online.sync.control import Controls
from hvd_online.training.trainer import OnlineTrainer
from streams.codecs import RecordCodec
from streams.testing import CountingSink, TestingSource
from tests.unit.kit import Linear, make_trainer

DRIFT_AT = 3200  # samples: 100 steps of 32


def drifting_payloads(n: int, drift_at: int = DRIFT_AT, scale: float = 0.25) -> list[bytes]:
    """y = scale * x . w, with w changed at `drift_at`."""
    template = Linear()
    rng = np.random.default_rng(0)
    rows = np.zeros(n, dtype=template.schema.dtype)
    rows["id"] = np.arange(n)
    rows["x"] = rng.normal(size=(n, 4))
    w = np.where(rows["id"][:, None] < drift_at, [1.0, -2.0, 0.5, 3.0], [-2.0, 1.0, 3.0, 0.5])
    rows["y"] = scale * np.sum(rows["x"] * w, axis=1)
    return RecordCodec(template.schema).encode_many(rows)


def drift_overrides(action: str) -> list[str]:
    return ["drift.detector=page_hinkley", f"drift.action={action}", "drift.min_steps=60",
            "drift.boost=5", "drift.boost_steps=20", "drift.challenger_window=256",
            "drift.challenger_patience=3200", "train.learning_rate=0.02"]


@pytest.mark.parametrize(("scale", "learning_rate"), [(0.25, 0.02), (0.025, 0.02)])
def test_a_regression_drift_is_flagged_by_the_defaults_at_any_loss_scale(
        world, tmp_path, scale, learning_rate):
    """The same stream with its targets 10 times smaller (the MSE 100 times; before the drift
    near 0.00005): the default detector flags both drifts within a few steps."""
    source = TestingSource(0, drifting_payloads(2 * DRIFT_AT, scale=scale))
    trainer, _ = make_trainer(world, tmp_path, [source], [
        "drift.detector=page_hinkley", "drift.action=mark", "drift.min_steps=60",
        f"train.learning_rate={learning_rate}"])
    reports = run_to(trainer, 2 * DRIFT_AT)
    flagged = [r.samples_total for r in reports if r.drift]
    # (the smaller stream's spread still carries its learning curve's steep first steps, so
    # its flag comes a few steps later)
    assert flagged and DRIFT_AT < flagged[0] <= DRIFT_AT + 12 * 32, flagged


def run_to(trainer: OnlineTrainer, samples: int, controls: Controls | None = None,
           save_at: int | None = None):
    reports = []
    for report in trainer.run():
        reports.append(report)
        if save_at is not None and report.step == save_at:
            assert controls is not None
            controls.request("save")
        if report.samples_total >= samples:
            return reports
    return reports


@pytest.mark.parametrize("action", ["boost", "challenger"])
def test_a_drift_triggers_the_action_once_and_the_loss_recovers(world, tmp_path, action):
    source = TestingSource(0, drifting_payloads(2 * DRIFT_AT))
    trainer, _ = make_trainer(world, tmp_path, [source], drift_overrides(action))
    reports = run_to(trainer, 2 * DRIFT_AT)
    drifts = [r for r in reports if r.drift]
    actions = [(r.samples_total, r.drift_action) for r in reports if r.drift_action]
    assert len(drifts) == 1 and DRIFT_AT < drifts[0].samples_total <= DRIFT_AT + 5 * 32
    if action == "boost":
        assert actions == [(drifts[0].samples_total, "boost")]
    else:
        assert [a for _, a in actions] == ["challenger", "promoted"]
        running = [r for r in reports if not math.isnan(r.challenger_loss)]
        assert running and all(DRIFT_AT < r.samples_total <= actions[1][0] for r in running)
    assert np.mean([r.loss for r in reports[-10:]]) < 0.05 * max(r.loss for r in reports)


def test_mark_only_marks(world, tmp_path):
    source = TestingSource(0, drifting_payloads(2 * DRIFT_AT))
    trainer, _ = make_trainer(world, tmp_path, [source], drift_overrides("mark"))
    lr = float(trainer.optimizer.learning_rate.numpy())
    reports = run_to(trainer, 2 * DRIFT_AT)
    assert sum(r.drift for r in reports) == 1
    assert not any(r.drift_action for r in reports)
    assert float(trainer.optimizer.learning_rate.numpy()) == lr


def test_a_challenger_running_at_a_checkpoint_is_restored_from_it(world, tmp_path):
    data = drifting_payloads(2 * DRIFT_AT)
    controls = Controls()
    source = TestingSource(0, data)
    trainer, _ = make_trainer(world, tmp_path, [source], drift_overrides("challenger"),
                              controls=controls)
    reports = []
    for report in trainer.run():
        reports.append(report)
        if report.drift_action == "challenger":
            controls.request("save")  # the next step saves, with the challenger running
        if report.checkpoint:
            break
    assert trainer.drift is not None and trainer.drift.trial is not None
    challenger_weights = trainer.drift.challenger.model.get_weights()
    found = load_latest_checkpoint(RunLayout(tmp_path).checkpoints)
    assert found is not None and found.state.operators["drift"]["trial"] is not None
    assert set(found.extra) == {"drift.weights", "drift.optimizer"}

    resumed_source = TestingSource(0, data, resume_state=found.state.sources["testing-0"])
    config = trainer.config
    template = Linear()
    step_input = LabelledInput([resumed_source], RecordCodec(template.schema), CountingSink(),
                               32, 0.005)
    resumed = OnlineTrainer(config, template, world, step_input, 2, Controls(), (),
                            Resume(found.state, checkpoint=found))
    assert resumed.drift is not None and resumed.drift.trial is not None
    assert resumed.drift.snapshot().state == found.state.operators["drift"]
    for got, want in zip(resumed.drift.challenger.model.get_weights(), challenger_weights,
                         strict=True):
        np.testing.assert_array_equal(got, want)
    after = run_to(resumed, 2 * DRIFT_AT)
    assert [r.drift_action for r in after if r.drift_action] == ["promoted"]


class WarnsEarly:
    """Page-Hinkley as configured, plus a warning at `warn_at_step`: an early or false
    warning, as on a noisy stream."""

    def __init__(self, detector, warn_at_step: int) -> None:
        self.detector, self.warn_at, self.steps = detector, warn_at_step, 0

    def update(self, value: float) -> Signal:
        self.steps += 1
        signal = self.detector.update(value)
        return Signal.WARNING if self.steps == self.warn_at else signal

    def snapshot(self) -> dict:
        return self.detector.snapshot()

    def restore(self, state: dict) -> None:
        self.detector.restore(state)


def test_the_loop_restarts_a_challenger_of_an_early_warning_at_the_drift(world, tmp_path):
    drift_at = 2 * DRIFT_AT  # a longer first concept: the model has learnt it by the warning
    source = TestingSource(0, drifting_payloads(2 * drift_at, drift_at))
    trainer, _ = make_trainer(world, tmp_path, [source], drift_overrides("challenger"))
    assert trainer.drift is not None
    # 20 steps (640 samples, more than the 256-sample window) before the drift
    trainer.drift.detector = WarnsEarly(trainer.drift.detector, drift_at // 32 - 20)
    reports = run_to(trainer, 2 * drift_at)
    actions = [(r.samples_total, r.drift_action) for r in reports if r.drift_action]
    drift = next(r.samples_total for r in reports if r.drift)
    assert [a for _, a in actions] == ["challenger", "restarted", "promoted"]
    assert actions[0][0] == drift_at - 20 * 32  # the early warning's step
    assert actions[1][0] == drift, "restarted at the flag"
    # the win counts only samples after the flag: an early (clear) win needs 4 steps of them
    assert actions[2][0] >= drift + 4 * 32, "promoted on samples after the flag only"
    assert np.mean([r.loss for r in reports[-10:]]) < 0.05 * max(r.loss for r in reports)
