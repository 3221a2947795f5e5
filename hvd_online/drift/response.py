"""What the trainer does when the drift detector fires, and the state that survives a restart.

Actions (`drift.action`), measured on the quality benchmark (README "Quality"):
- "mark": log it and mark the chart; nothing else.
- "boost": restart the optimizer's moments and multiply the learning rate by `boost`, decaying
  back linearly over `boost_steps`. A model that has converged on the old concept takes small,
  well-averaged steps; after a drift those steps are far too timid.
- "challenger" (the ARF idea, with Ekko's "undo what hurts"): at a warning a copy of the model
  starts, boosted as above, and trains on the same windows as the model; it replaces the model
  (weights and optimizer) once its prequential loss over the last `challenger_window` samples is
  lower, or is dropped after `challenger_patience` samples. A false alarm therefore costs compute
  but cannot make the model worse.
  - A clear win does not wait for the full window: from a quarter of it on, a challenger whose
    loss is lower step after step beyond chance (a paired t-test on the per-step losses) is
    promoted. After an abrupt drift the model predicts badly until then; on the quality
    benchmark this took the 10-class LED stream's dip from 0.17 to 0.50 and its recovery from
    4,000 to 3,000 samples, and changed nothing on the stationary stream.
  - A warning can come long before the drift it warns of (or the drift comes on top of a
    false alarm): then the challenger has learnt mostly the old concept, and promoting it
    deepens the dip (seen on a 10-class stream: a challenger from a warning ~4,900 samples
    early, promoted 11 steps after the flag). So at a DRIFT flag a challenger that started at
    a warning more than `challenger_window` samples before is *restarted* from the model's
    current weights ("restarted"): its trial, and so the win it needs, counts only samples
    after the flag, and it is promoted no sooner than a full window after it.
  - False alarms cost little: a new challenger starts at most once per `challenger_every`
    samples (on a gradual drift the detector keeps firing; each trial that does not win is
    dropped without touching the model). A restart at a flag replaces one, so it is not
    counted against that budget.

Every rank sees the same global loss, so every decision below is taken at the same step on
every rank, and the challenger's own collective step runs on all of them or on none. So the
response is a shared operator of the checkpoint manager (hvd_online/state/manager.py): one
snapshot - detector, boost, a running trial and the challenger's arrays - taken on rank 0 and
restored on every rank.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

import keras
import numpy as np
import tensorflow as tf

from hvd_online.config import DriftConfig
from hvd_online.drift.detectors import Adwin, Detector, PageHinkley, Signal
from hvd_online.errors import ConfigError
from hvd_online.model.state import optimizer_state, set_optimizer_state
from hvd_online.model.template import ModelTemplate, build_model
from hvd_online.state.run_state import WithArrays
from hvd_online.sync.stats_vector import LOSS_SUM
from hvd_online.sync.steps import LockstepStep, Trainable


def make_detector(config: DriftConfig) -> Detector | None:
    """The configured detector (its name and parameters were checked at load), or None."""
    if config.detector == "page_hinkley":
        return PageHinkley(config.delta, config.threshold, config.min_steps, config.warning,
                           config.scale, memory=config.memory)
    if config.detector == "adwin":
        return Adwin(config.adwin_delta, config.adwin_warning_delta, config.min_steps)
    return None


def check_boostable(optimizer: keras.optimizers.Optimizer) -> None:
    """A boost assigns the learning rate: a schedule has none to assign."""
    if not isinstance(optimizer.learning_rate, keras.Variable):
        msg = ("drift.action 'boost'/'challenger' needs an optimizer with a plain learning "
               "rate (the template's make_optimizer returned a schedule); use drift.action = "
               "'mark', or a constant learning rate")
        raise ConfigError(msg)


def reset_optimizer_state(optimizer: keras.optimizers.Optimizer) -> None:
    """Moments and the iteration count back to zero (so Adam's bias correction applies again
    and the first steps after it are full-sized); the learning rate stays."""
    for variable in optimizer.variables:
        if variable.name != "learning_rate":
            variable.assign(tf.zeros_like(variable))


class LearningRateBoost:
    """The learning rate times `factor` at `start()`, back to `base` linearly over `steps`."""

    def __init__(self, optimizer: keras.optimizers.Optimizer, base: float, factor: float,
                 steps: int) -> None:
        check_boostable(optimizer)
        self.optimizer = optimizer
        self.base, self.factor, self.steps = base, factor, max(1, steps)
        self.left = 0

    def start(self) -> None:
        reset_optimizer_state(self.optimizer)
        self.left = self.steps
        self._apply()

    def tick(self) -> None:
        """After a step that trained: one step of the decay."""
        if self.left:
            self.left -= 1
            self._apply()

    def _apply(self) -> None:
        self.optimizer.learning_rate.assign(
            self.base * (1 + (self.factor - 1) * self.left / self.steps))


class Challenger:
    """A second copy of the model with its own optimizer and synchronised step. Built once, on
    first use; each start copies the model's current weights into it."""

    def __init__(self, template: ModelTemplate, config: DriftConfig, base_lr: float,
                 specs: tuple[tf.TensorSpec, tf.TensorSpec], world_size: int) -> None:
        self.model = build_model(template, "")
        self.optimizer = template.make_optimizer(base_lr)
        self.optimizer.build(self.model.trainable_variables)
        self.boost = LearningRateBoost(self.optimizer, base_lr, config.boost, config.boost_steps)
        self.lockstep = LockstepStep(
            Trainable(self.model, self.optimizer, template.per_sample_loss,
                      template.per_sample_metric, *specs), 0, world_size,
            name="hvd_online_challenger_step")
        self._no_stats = np.zeros(0, np.float32)

    def start_from(self, model: keras.Model) -> None:
        self.model.set_weights(model.get_weights())
        self.boost.start()

    def train(self, x: np.ndarray, y: np.ndarray) -> float:
        """One prequential step on the same window as the model; the global loss sum."""
        outcome = self.lockstep.step(x, y, lambda: self._no_stats)
        if outcome.applied:
            self.boost.tick()
        assert outcome.summed is not None  # a lockstep step always reaches every rank
        return float(outcome.summed[LOSS_SUM])

    def arrays(self) -> dict[str, list[np.ndarray]]:
        return {"weights": self.model.get_weights(),
                "optimizer": optimizer_state(self.optimizer)}

    def load(self, arrays: dict[str, list[np.ndarray]]) -> None:
        self.model.set_weights(arrays["weights"])
        set_optimizer_state(self.optimizer, arrays["optimizer"])


#: how clear an early win must be (a t statistic: about 1 in 100 by chance at 8 steps)
EARLY_WIN_T = 3.0


@dataclass
class Trial:
    """A running challenger's record: what started it (a "warning" or a "drift" flag), samples
    since it started, and per step (samples, the model's loss sum, the challenger's loss sum)
    over the last `challenger_window` samples."""

    seen: int = 0
    recent: deque[tuple[float, float, float]] = field(default_factory=deque)
    cause: str = "warning"

    def add(self, count: float, model_loss: float, challenger_loss: float, window: int) -> None:
        self.seen += int(count)
        self.recent.append((count, model_loss, challenger_loss))
        while sum(c for c, _, _ in self.recent) - self.recent[0][0] >= window:
            self.recent.popleft()

    def challenger_wins(self, window: int) -> bool:
        """Over a full window: a lower loss. Sooner, from a quarter window on: a lower loss
        step after step, beyond chance (a one-sided paired t-test on the per-step mean losses,
        t > EARLY_WIN_T). After an abrupt drift the model's predictions are poor until the
        challenger takes over, and a clear win need not wait for a full window."""
        count = sum(c for c, _, _ in self.recent)
        if count >= window:
            return sum(b for _, _, b in self.recent) < sum(a for _, a, _ in self.recent)
        if count < window / 4 or len(self.recent) < 4:
            return False
        gains = np.array([(a - b) / c for c, a, b in self.recent])
        spread = gains.std(ddof=1)
        return bool(gains.mean() > 0 and (
            spread == 0 or gains.mean() / spread * math.sqrt(len(gains)) > EARLY_WIN_T))


@dataclass(frozen=True)
class Response:
    """What this step's drift handling did, for the step report."""

    signal: Signal
    #: "boost", "challenger", "promoted", "dropped" or None
    action: str | None
    #: the challenger's prequential mean loss this step while one runs, else NaN
    challenger_loss: float = math.nan


class DriftResponse:
    """Detector plus action: the 'drift' operator whose snapshot a checkpoint carries."""

    def __init__(self, config: DriftConfig, detector: Detector, model: keras.Model,
                 optimizer: keras.optimizers.Optimizer, base_lr: float,
                 challenger: Challenger | None) -> None:
        self.config = config
        self.detector = detector
        self.model, self.optimizer = model, optimizer
        self.boost = (LearningRateBoost(optimizer, base_lr, config.boost, config.boost_steps)
                      if config.action != "mark" else None)
        self.challenger = challenger
        self.trial: Trial | None = None
        #: samples since the last challenger started (the false-alarm budget)
        self.since_challenger = config.challenger_every

    def after_step(self, x: np.ndarray, y: np.ndarray, loss: float, count: float) -> Response:
        """After the model's step: `loss` is its global prequential mean over `count` samples
        (this rank's window is `x`, `y`)."""
        if not count:
            return Response(Signal.NONE, None)
        signal = self.detector.update(loss)
        action = None
        challenger_loss = math.nan
        if self.boost:
            self.boost.tick()
        self.since_challenger += int(count)
        if self.trial is not None:
            challenger_sum = self._challenger().train(x, y)
            challenger_loss = challenger_sum / count
            self.trial.add(count, loss * count, challenger_sum, self.config.challenger_window)
            # judged only if it is not restarted: at the flag its window is mostly pre-drift
            action = "restarted" if self._restart_at(signal) else self._judge()
        if self.config.action == "boost" and signal is Signal.DRIFT:
            self.boost.start()  # type: ignore[union-attr]
            action = "boost"
        elif (self.config.action == "challenger" and action is None and self.trial is None
              and signal is not Signal.NONE
              and self.since_challenger >= self.config.challenger_every):
            self._start_trial(signal)
            self.since_challenger = 0
            action = "challenger"
        return Response(signal, action, challenger_loss)

    def _restart_at(self, signal: Signal) -> bool:
        """At a drift flag, restart a challenger that a warning started more than a window
        before it."""
        trial = self.trial
        if (trial is None or signal is not Signal.DRIFT or trial.cause != "warning"
                or trial.seen <= self.config.challenger_window):
            return False
        self._start_trial(signal)
        return True

    def _start_trial(self, signal: Signal) -> None:
        self._challenger().start_from(self.model)
        self.trial = Trial(cause=signal.value)

    def _challenger(self) -> Challenger:
        assert self.challenger is not None, "drift.action 'challenger' builds one"
        return self.challenger

    def _judge(self) -> str | None:
        assert self.trial is not None
        if self.trial.challenger_wins(self.config.challenger_window):
            self._promote()
            return "promoted"
        if self.trial.seen >= self.config.challenger_patience:
            self.trial = None
            return "dropped"
        return None

    def _promote(self) -> None:
        challenger = self._challenger()
        self.model.set_weights(challenger.model.get_weights())
        set_optimizer_state(self.optimizer, challenger.optimizer.variables)
        if self.boost:  # the model carries on with the challenger's learning-rate decay
            self.boost.left = challenger.boost.left
        self.trial = None

    # -- checkpoint -------------------------------------------------------------------------

    def snapshot(self) -> WithArrays:
        """Equal on every rank; a running challenger's weights and optimizer as arrays."""
        trial, arrays = None, {}
        if self.trial is not None:
            trial = {"seen": self.trial.seen, "recent": [list(r) for r in self.trial.recent],
                     "boost_left": self._challenger().boost.left, "cause": self.trial.cause}
            arrays = self._challenger().arrays()
        return WithArrays({"detector": self.detector.snapshot(),
                           "boost_left": self.boost.left if self.boost else 0, "trial": trial,
                           "since_challenger": self.since_challenger},
                          arrays)

    def restore(self, snapshot: WithArrays) -> None:
        state = snapshot.state
        self.detector.restore(state["detector"])
        if self.boost:
            self.boost.left = int(state["boost_left"])
        trial = state.get("trial")
        self.trial = None
        # (a checkpoint of an older version has no budget, cause or arrays)
        self.since_challenger = int(state.get("since_challenger",
                                              self.config.challenger_every))
        if trial is not None and snapshot.arrays:
            self.trial = Trial(int(trial["seen"]), deque(
                (float(c), float(a), float(b)) for c, a, b in trial["recent"]),
                str(trial.get("cause", "warning")))
            self._challenger().boost.left = int(trial["boost_left"])
            self._challenger().load(snapshot.arrays)
