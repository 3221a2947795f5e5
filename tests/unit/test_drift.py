"""Drift detectors on synthetic loss sequences, and what each response does to the optimizer."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from hvd_online.config import DriftConfig, load_config_text
from hvd_online.drift.detectors import Adwin, PageHinkley, Signal
from hvd_online.drift.response import (
    Challenger,
    DriftResponse,
    LearningRateBoost,
    Trial,
    make_detector,
    reset_optimizer_state,
)
from hvd_online.errors import ConfigError
from tests.unit.kit import Linear

pytestmark = pytest.mark.usefixtures("world")  # Horovod up: a challenger restore broadcasts

STEPS = 600


def noisy(mean: np.ndarray, seed: int = 0) -> np.ndarray:
    """Per-step mean losses: the level plus the noise of a 64-sample mean."""
    return mean + np.random.default_rng(seed).normal(0, 0.03, len(mean))


def abrupt() -> np.ndarray:
    return noisy(np.where(np.arange(STEPS) < 300, 0.1, 0.7))


def gradual() -> np.ndarray:  # from 0.1 to 0.7 over 200 steps, starting at step 300
    return noisy(0.1 + 0.6 * np.clip((np.arange(STEPS) - 300) / 200, 0, 1))


def stationary() -> np.ndarray:
    return noisy(np.full(STEPS, 0.1))


def learning() -> np.ndarray:  # a loss that falls as the model learns is not drift
    return noisy(0.1 + 0.8 * np.exp(-np.arange(STEPS) / 60))


DETECTORS = {"page_hinkley": lambda: PageHinkley(),
             "page_hinkley_absolute": lambda: PageHinkley(0.005, 1.0, 30, scale="absolute"),
             "adwin": lambda: Adwin(0.002, 0.02, 30)}


def signals(detector, values) -> list[Signal]:
    return [detector.update(float(v)) for v in values]


@pytest.mark.parametrize("name", DETECTORS)
def test_abrupt_drift_is_flagged_soon_after_it_starts_with_a_warning_first(name):
    flags = signals(DETECTORS[name](), abrupt())
    first = flags.index(Signal.DRIFT)
    assert 300 <= first < 330, first
    assert Signal.WARNING in flags[300:first + 1] or flags[first - 1] is Signal.WARNING \
        or name == "adwin"  # ADWIN may cross both bounds at one check
    assert Signal.DRIFT not in flags[:300]


@pytest.mark.parametrize("name", DETECTORS)
def test_gradual_drift_is_flagged_while_it_happens(name):
    flags = signals(DETECTORS[name](), gradual())
    assert Signal.DRIFT not in flags[:300]
    first = flags.index(Signal.DRIFT)
    assert 300 < first < 500, first


@pytest.mark.parametrize("make", [stationary, learning])
@pytest.mark.parametrize("name", DETECTORS)
def test_no_drift_no_flag(name, make):
    assert Signal.DRIFT not in signals(DETECTORS[name](), make())


@pytest.mark.parametrize("name", DETECTORS)
def test_a_restored_detector_flags_the_same_steps(name):
    values = abrupt()
    whole = signals(DETECTORS[name](), values)
    first = DETECTORS[name]()
    head = signals(first, values[:310])
    second = DETECTORS[name]()
    second.restore(first.snapshot())
    assert head + signals(second, values[310:]) == whole


def first_flags(detector, values) -> list[int]:
    return [i for i, flag in enumerate(signals(detector, values)) if flag is Signal.DRIFT]


@pytest.mark.parametrize("factor", [2.0 ** -10, 2.0 ** 12, 0.0137, 7.0, 3e4])
@pytest.mark.parametrize("make", [abrupt, gradual, stationary, learning])
def test_spread_units_flag_the_same_steps_at_any_loss_scale(make, factor):
    values = make()
    assert first_flags(PageHinkley(), values * factor) == first_flags(PageHinkley(), values)


def test_a_small_regression_loss_is_flagged_as_a_log_loss_is():
    """An MSE near 0.007 (noise 0.0005) that rises by half: 0.1's absolute defaults never
    flag it (the rise is below their delta), the spread defaults flag it as soon as the log
    loss' jump above."""
    level = np.where(np.arange(STEPS) < 300, 0.007, 0.0105)
    values = level + np.random.default_rng(3).normal(0, 0.0005, STEPS)
    assert first_flags(PageHinkley(0.005, 1.0, 30, scale="absolute"), values) == []
    flagged = first_flags(PageHinkley(), values)
    assert flagged and 300 <= flagged[0] < 305, flagged
    assert first_flags(PageHinkley(), abrupt())[0] - 300 < 5


def test_a_drift_back_to_the_first_losses_of_the_learning_curve_is_flagged():
    """Friedman's shape: the loss falls from 2.6 to 0.03 over 150 steps, then a drift takes it
    to 0.15, below the mean of all losses so far: the spread scale compares with the recent
    level and flags it; a mean since the start (the absolute scale's) does not."""
    steps = np.arange(STEPS)
    level = 0.03 + 2.6 * np.exp(-steps / 30) + np.where(steps < 450, 0, 0.12)
    values = level + np.random.default_rng(4).normal(0, 0.01, STEPS)
    flagged = first_flags(PageHinkley(), values)
    assert flagged and 450 <= flagged[0] < 460, flagged
    assert first_flags(PageHinkley(0.005, 1.0, 30, scale="absolute"), values) == []


def test_a_checkpoint_of_0_1_without_a_spread_restores():
    detector = PageHinkley()
    detector.restore({"steps": 40, "mean": 0.3, "cumulative": -2.0, "minimum": -2.5})
    assert not detector.diffs and detector.last is None
    assert [detector.update(0.3) for _ in range(3)] == [Signal.NONE] * 3


def test_an_0_1_threshold_in_spread_units_is_refused_naming_the_fix():
    with pytest.raises(ConfigError, match="drift.scale = 'absolute'"):
        load_config_text('[drift]\ndetector = "page_hinkley"\nthreshold = 1.0\n')
    config = load_config_text('[drift]\ndetector = "page_hinkley"\nscale = "absolute"\n'
                              'delta = 0.005\nthreshold = 1.0\n')
    assert make_detector(config.drift).scale == "absolute"


def test_unknown_detector_or_action_is_a_config_error_at_load():
    with pytest.raises(ConfigError, match="'page_hinkley', 'adwin'"):
        load_config_text('[drift]\ndetector = "cusum"\n')
    with pytest.raises(ConfigError, match="'mark', 'boost', 'challenger'"):
        load_config_text('[drift]\ndetector = "adwin"\naction = "rollback"\n')
    assert make_detector(DriftConfig()) is None


def built(lr: float = 0.01):
    template = Linear()
    keras.utils.set_random_seed(0)
    model = template.build_model()
    optimizer = template.make_optimizer(lr)
    optimizer.build(model.trainable_variables)
    return template, model, optimizer


def train_a_little(model, optimizer, steps: int = 5):
    x = np.random.default_rng(1).normal(size=(32, 4)).astype("f4")
    for _ in range(steps):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(model(x) - 1.0))
        optimizer.apply(tape.gradient(loss, model.trainable_variables), model.trainable_variables)


def test_reset_zeroes_moments_and_iterations_but_keeps_the_learning_rate():
    _, model, optimizer = built(0.01)
    train_a_little(model, optimizer)
    assert int(optimizer.iterations.numpy()) == 5
    reset_optimizer_state(optimizer)
    values = {v.name: v.numpy() for v in optimizer.variables}
    assert float(values.pop("learning_rate")) == pytest.approx(0.01)
    assert all(not np.any(v) for v in values.values())


def test_boost_multiplies_the_learning_rate_then_decays_back_linearly():
    _, model, optimizer = built(0.01)
    train_a_little(model, optimizer)
    boost = LearningRateBoost(optimizer, 0.01, factor=10, steps=4)
    boost.start()
    rates = [float(optimizer.learning_rate.numpy())]
    for _ in range(6):
        boost.tick()
        rates.append(float(optimizer.learning_rate.numpy()))
    assert rates == pytest.approx([0.1, 0.0775, 0.055, 0.0325, 0.01, 0.01, 0.01])
    assert int(optimizer.iterations.numpy()) == 0


def test_boost_refuses_an_optimizer_with_a_schedule():
    schedule = keras.optimizers.schedules.ExponentialDecay(0.01, 100, 0.9)
    with pytest.raises(ConfigError, match="schedule"):
        LearningRateBoost(keras.optimizers.Adam(schedule), 0.01, 10, 10)


def challenger_response(window: int = 64, patience: int = 640, every: int = 10_000,
                        detector=None):
    template, model, optimizer = built(0.01)
    config = DriftConfig(detector="page_hinkley", action="challenger", challenger_window=window,
                         challenger_patience=patience, challenger_every=every, boost=10,
                         boost_steps=10)
    specs = (tf.TensorSpec((None, 4), tf.float32), tf.TensorSpec((None,), tf.float32))
    challenger = Challenger(template, config, 0.01, specs, world_size=1)
    detector = detector or PageHinkley(0.005, 1.0, 5, warning=0.5, scale="absolute")
    return DriftResponse(config, detector, model, optimizer, 0.01, challenger), model


class Scripted:
    """A detector that says what it is told, step by step (NONE once the script ends)."""

    def __init__(self, signals: dict[int, Signal]) -> None:
        self.signals, self.steps = signals, 0

    def update(self, value: float) -> Signal:
        self.steps += 1
        return self.signals.get(self.steps - 1, Signal.NONE)

    def snapshot(self) -> dict:
        return {"steps": self.steps}

    def restore(self, state: dict) -> None:
        self.steps = state["steps"]


def actions_for(response, losses) -> list[str | None]:
    """Each step's action, one 32-sample window per loss (the model's reported loss)."""
    return [response.after_step(*linear_batch([1, 1, 1, 1], i), loss, 32).action
            for i, loss in enumerate(losses)]


def linear_batch(w, seed):
    x = np.random.default_rng(seed).normal(size=(32, 4)).astype("f4")
    return x, (x @ np.asarray(w, "f4")).astype("f4")


def test_challenger_starts_at_a_warning_and_replaces_a_model_it_beats():
    response, model = challenger_response()
    for step in range(10):  # a stationary phase: nothing happens
        assert response.after_step(*linear_batch([1, 1, 1, 1], step), 0.1, 32).action is None
    started = response.after_step(*linear_batch([1, 1, 1, 1], 10), 1.2, 32)
    assert started.signal is Signal.WARNING and started.action == "challenger"
    assert response.challenger is not None
    assert response.challenger.optimizer.learning_rate.numpy() == pytest.approx(0.1)
    # the reported model loss stays far above the challenger's: it wins once its window of
    # 64 samples is full (the drift flagged meanwhile starts no second challenger)
    steps = [response.after_step(*linear_batch([1, 1, 1, 1], 11 + i), 50.0, 32)
             for i in range(3)]
    assert [s.signal for s in steps] == [Signal.DRIFT, Signal.NONE, Signal.NONE]
    assert [s.action for s in steps] == [None, "promoted", None]
    assert not math.isnan(steps[0].challenger_loss) and steps[0].challenger_loss < 50
    for mine, theirs in zip(model.get_weights(), response.challenger.model.get_weights(),
                            strict=True):
        np.testing.assert_array_equal(mine, theirs)
    assert response.trial is None


def test_a_challenger_that_never_wins_is_dropped_and_the_model_kept():
    response, model = challenger_response(window=64, patience=96)
    response.after_step(*linear_batch([1, 1, 1, 1], 0), 0.1, 32)
    for _ in range(5):
        response.after_step(*linear_batch([1, 1, 1, 1], 0), 0.1, 32)
    before = model.get_weights()
    assert response.after_step(*linear_batch([1, 1, 1, 1], 1), 1.2, 32).action == "challenger"
    # the model's reported loss is 0: the challenger cannot beat it
    actions = [response.after_step(*linear_batch([1, 1, 1, 1], 2 + i), 0.0, 32).action
               for i in range(3)]
    assert actions == [None, None, "dropped"]
    for mine, kept in zip(model.get_weights(), before, strict=True):
        np.testing.assert_array_equal(mine, kept)


def test_a_running_challenger_survives_snapshot_and_restore():
    response, _ = challenger_response()
    for step in range(6):
        response.after_step(*linear_batch([1, 1, 1, 1], step), 0.1, 32)
    assert response.after_step(*linear_batch([1, 1, 1, 1], 6), 1.2, 32).action == "challenger"
    response.after_step(*linear_batch([1, 1, 1, 1], 7), 1.2, 32)
    snapshot = response.snapshot()  # one channel: the state and the challenger's arrays
    assert snapshot.state["trial"]["seen"] == 32
    assert set(snapshot.arrays) == {"weights", "optimizer"}

    restored, _ = challenger_response()
    restored.restore(snapshot)
    assert restored.snapshot().state == snapshot.state
    for got, want in zip(restored.challenger.model.get_weights(), snapshot.arrays["weights"],
                         strict=True):
        np.testing.assert_array_equal(got, want)


def test_a_drift_long_after_the_warning_restarts_the_challenger_and_the_win_counts_after_it():
    # a warning at step 0, the drift flag at step 8 (8 windows = 256 samples later, more than
    # the 64-sample window): the challenger of the warning has learnt the old concept
    response, model = challenger_response(
        window=64, detector=Scripted({0: Signal.WARNING, 8: Signal.DRIFT}))
    # the model's loss 0 until the flag (its challenger cannot win), then 50 (any wins)
    actions = actions_for(response, [0.0] * 8 + [50.0] * 4)
    assert actions[0] == "challenger" and actions[8] == "restarted"
    assert actions[1:8] == [None] * 7
    # promoted once a full window (64 samples, 2 steps) came after the flag, although the
    # model's loss was 50 from the flag's window on
    assert actions[9:] == [None, "promoted", None]
    assert response.trial is None


def test_a_drift_right_after_its_warning_keeps_the_challenger():
    response, _ = challenger_response(
        window=64, detector=Scripted({0: Signal.WARNING, 1: Signal.DRIFT}))
    actions = actions_for(response, [0.0, 0.0, 0.0])
    assert actions == ["challenger", None, None]
    assert response.trial is not None and response.trial.cause == "warning"


def test_false_alarms_start_at_most_one_challenger_per_budget():
    # warnings every 4 windows; a trial is dropped after 64 samples; budget 320 samples
    warnings = {i: Signal.WARNING for i in range(0, 40, 4)}
    response, model = challenger_response(window=64, patience=64, every=320,
                                          detector=Scripted(warnings))
    before = model.get_weights()
    actions = actions_for(response, [0.0] * 38)  # the model always wins: each trial drops
    started = [i for i, a in enumerate(actions) if a == "challenger"]
    assert started == [0, 12, 24, 36], "one start per 320 samples (10 windows), not per warning"
    assert actions.count("dropped") == 3
    for mine, kept in zip(model.get_weights(), before, strict=True):
        np.testing.assert_array_equal(mine, kept)  # dropped trials leave the model alone
    snapshot = response.snapshot()
    restored, _ = challenger_response(window=64, patience=64, every=320,
                                      detector=Scripted({}))
    restored.restore(snapshot)
    assert restored.since_challenger == response.since_challenger == 32
    assert restored.trial is not None and restored.trial.cause == "warning"


def trial_after(model_losses, challenger_losses, window=2000, count=64):
    """A Trial fed one step of `count` samples per pair of mean losses; whether the
    challenger wins after each step."""
    trial, wins = Trial(cause="drift"), []
    for a, b in zip(model_losses, challenger_losses, strict=True):
        trial.add(count, a * count, b * count, window)
        wins.append(trial.challenger_wins(window))
    return wins


def test_a_clear_win_promotes_from_a_quarter_window_on():
    rng = np.random.default_rng(0)
    model = 1.0 + rng.normal(0, 0.05, 40)
    challenger = 0.5 + rng.normal(0, 0.05, 40)
    wins = trial_after(model, challenger)
    # 500 samples (a quarter of 2,000) are 8 steps of 64: no sooner, whatever the gap
    assert wins[:7] == [False] * 7 and wins[7]


def test_a_marginal_noisy_gain_waits_for_the_full_window():
    rng = np.random.default_rng(1)
    model = 1.0 + rng.normal(0, 0.3, 40)
    challenger = model - 0.02 + rng.normal(0, 0.3, 40)  # better by 0.02 in noise of 0.4
    wins = trial_after(model, challenger)
    assert not any(wins[:31]), "no early win on noise"
    # at a full window (32 steps of 64 = 2,048 samples) the lower loss over it decides
    assert wins[31] == (challenger[-32:].sum() < model[-32:].sum())


def test_a_challenger_that_loses_never_wins_early_or_late():
    assert not any(trial_after([0.5] * 40, [0.6] * 40))
