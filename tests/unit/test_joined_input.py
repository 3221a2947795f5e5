"""Raw event streams in-process: events predicted on arrival, joined with labels that come
later, expired ones trained with the expiry label; a save and a resume in the middle of the
join lose and repeat nothing."""

import time
from pathlib import Path

import keras
import numpy as np
import pytest

from hvd_online.config import load_config_text
from hvd_online.errors import ConfigError
from hvd_online.inputs.joined import JoinedInput
from hvd_online.model.template import ModelTemplate
from hvd_online.state.checkpoint import Resume, load_latest_checkpoint
from hvd_online.state.run_dir import RunLayout
from hvd_online.sync.control import Controls
from hvd_online.training.trainer import OnlineTrainer
from streams.codecs import RecordCodec
from streams.schema import EventSchema, LabelSchema, Schema
from streams.testing import CountingSink, ListSink, TestingSource

N = 600


class Clicks(ModelTemplate):
    loss = "binary_crossentropy"
    metric = "binary_accuracy"

    def __init__(self) -> None:
        self.schema = Schema.from_fields([("id", "<i8"), ("x", "<f4", (4,)), ("y", "<f4")],
                                         features="x", label="y", key="id")
        self.event_schema = EventSchema.from_fields(
            [("id", "<i8"), ("t", "<i8"), ("x", "<f4", (4,))], key="id", features="x", time="t")
        self.label_schema = LabelSchema.from_fields(
            [("id", "<i8"), ("t", "<i8"), ("y", "<f4")], key="id", label="y", time="t")

    def build_model(self) -> keras.Model:
        return keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])

    def prediction(self, outputs: np.ndarray) -> np.ndarray:
        return 1 / (1 + np.exp(-outputs))


def streams(template: Clicks, start_ms: int) -> tuple[dict, dict, set[int]]:
    """Events on partitions 0 and 1 (key % 2); labels (clicks) for every third key, 40 ms
    after their event (event time), all read before most of their events."""
    rng = np.random.default_rng(0)
    events = np.zeros(N, template.event_schema.dtype)
    events["id"] = np.arange(N)
    events["t"] = start_ms + np.arange(N)
    events["x"] = rng.normal(size=(N, 4))
    clicked = {k for k in range(N) if k % 3 == 0}
    labels = np.zeros(len(clicked), template.label_schema.dtype)
    labels["id"] = sorted(clicked)
    labels["t"] = start_ms + labels["id"] + 40
    labels["y"] = 1.0
    event_payloads = RecordCodec(template.event_schema).encode_many(events)
    label_payloads = RecordCodec(template.label_schema).encode_many(labels)
    by_part = {p: [e for k, e in enumerate(event_payloads) if k % 2 == p] for p in (0, 1)}
    label_part = {p: [lab for lab, k in zip(label_payloads, labels["id"], strict=True)
                      if k % 2 == p] for p in (0, 1)}
    return by_part, label_part, clicked


def config_for(tmp_path: Path):
    return load_config_text(
        '[stream]\ntopic = "unused"\npartitions = 2\n[window]\nbatch_size = 64\n'
        'max_wait_ms = 5\n[train]\nlearning_rate = 0.05\n'
        '[join]\nevents_topic = "ev"\nlabels_topic = "lab"\nwindow_s = 0.2\nlateness_s = 0.05\n'
        'idle_s = 0.2\non_expiry = "label"\nexpiry_label = 0.0\n',
        [f'run.dir="{tmp_path}"'])


def make(world, config, template, payloads, resume=None, sink=None):
    events, labels, _ = payloads
    snapshots = resume.state.sources if resume else {}
    ev = [TestingSource(p, events[p], snapshots.get(f"ev-{p}"), key=f"ev-{p}") for p in (0, 1)]
    lab = [TestingSource(p, labels[p], snapshots.get(f"lab-{p}"), key=f"lab-{p}")
           for p in (0, 1)]
    sink = ListSink() if sink is None else sink
    step_input = JoinedInput(config.join, template, ev, lab,
                             (RecordCodec(template.event_schema),
                              RecordCodec(template.label_schema)),
                             (CountingSink(), CountingSink()), sink, 64, 0.005)
    trained: list[tuple[int, int, float]] = []

    def hook(step: int, rows: np.ndarray) -> None:
        trained.extend((step, int(k), float(y)) for k, y in zip(rows["id"], rows["y"],
                                                               strict=True))

    controls = Controls()
    trainer = OnlineTrainer(config, template, world, step_input, 2, controls, [hook], resume)
    return trainer, sink, trained, controls


def test_events_are_predicted_then_joined_or_expired_and_resume_is_exact(world, tmp_path):
    template = Clicks()
    payloads = streams(template, int(time.time() * 1000))
    clicked = payloads[2]
    config = config_for(tmp_path)
    trainer, sink, first, controls = make(world, config, template, payloads)
    before = []
    for report in trainer.run():
        before.append(report)
        if report.step == 3:
            controls.request("save")  # a checkpoint in the middle of the join
        if report.step == 6:
            break  # what came after the checkpoint is lost with the "crash"
    found = load_latest_checkpoint(RunLayout(tmp_path).checkpoints)
    assert found is not None and found.state.step == 4
    waiting = [op for key, op in found.state.operators.items() if key.startswith("join:")]
    assert len(waiting) == 2 and sum(len(op["events"]) for op in waiting) > 0

    resumed, sink2, second, _ = make(world, config, template, payloads,
                                     Resume(found.state, checkpoint=found))
    deadline = time.monotonic() + 60
    reports = []
    for report in resumed.run():
        reports.append(report)
        if report.samples_total >= N or time.monotonic() > deadline:
            break
    assert reports[-1].samples_total == N

    kept = [(k, y) for step, k, y in first if step <= 4] + [(k, y) for _, k, y in second]
    assert sorted(k for k, _ in kept) == list(range(N)), "every event trained exactly once"
    assert {k for k, y in kept if y == 1.0} == clicked  # joined with its click
    assert all(y == 0.0 for k, y in kept if k not in clicked)  # expired: the expiry label

    predicted = {k for k, _ in sink.messages} | {k for k, _ in sink2.messages}
    assert predicted == set(range(N)), "every event has a prediction"
    steps = [r for r in before if r.step <= 4] + reports
    joined = sum(r.join["step"]["joined"] for r in steps if r.join)
    assert joined > 0 and any(np.isfinite(r.delayed_loss) for r in steps)
    assert reports[-1].join["pending"]["events"] == 0


def test_templates_without_event_and_label_schemas_are_refused(world, tmp_path):
    from tests.unit.test_trainer_in_process import Linear

    config = config_for(tmp_path)
    with pytest.raises(ConfigError, match="needs event_schema, label_schema"):
        JoinedInput(config.join, Linear(), [], [], (None, None), (None, None), ListSink(),
                    64, 0.005)


class StallingSink(ListSink):
    """A predictions topic whose producer blocks once for `seconds` (its queue full while
    the broker restarts), as the soak saw after a broker restart."""

    def __init__(self, after: int, seconds: float) -> None:
        super().__init__()
        self.after, self.seconds, self.stalled = after, seconds, False

    def publish(self, keys, payloads) -> None:
        if not self.stalled and len(self.messages) >= self.after:
            self.stalled = True
            time.sleep(self.seconds)
        super().publish(keys, payloads)


def test_a_stalled_predictions_stage_is_not_an_idle_event_stream(world, tmp_path):
    """Labels go on arriving while the stage that hands events over is blocked (publishing
    predictions to a broker that is not back yet) for 5x `idle_s`: the events input is late,
    not idle, so no label is dropped as an orphan and every click is joined."""
    template = Clicks()
    payloads = streams(template, int(time.time() * 1000))
    clicked = payloads[2]
    config = config_for(tmp_path)
    sink = StallingSink(after=N // 4, seconds=1.0)
    trainer, _, trained, _ = make(world, config, template, payloads, sink=sink)
    deadline = time.monotonic() + 60
    for report in trainer.run():
        if report.samples_total >= N or time.monotonic() > deadline:
            break
    assert sink.stalled, "the stage stalled"
    assert report.join["totals"]["orphan_labels"] == 0, report.join
    assert sorted(k for _, k, _ in trained) == list(range(N))
    assert {k for _, k, y in trained if y == 1.0} == clicked


class StopAfterSink(ListSink):
    """A predictions topic that asks the trainer to stop once it holds `after` predictions,
    then takes 0.2 s a publish: the stop comes with most of the stream unread."""

    def __init__(self, after: int) -> None:
        super().__init__()
        self.after, self.controls = after, None

    def publish(self, keys, payloads) -> None:
        if len(self.messages) >= self.after:
            self.controls.request("stop")
            time.sleep(0.2)
        super().publish(keys, payloads)


def test_a_clean_stop_republishes_no_prediction_after_the_restart(world, tmp_path):
    """A stop takes what the predictions stage read ahead in one last step, so the final
    checkpoint covers every event predicted: the restart predicts (and publishes) each of
    the others once, none a second time, and every event is still trained once."""
    template = Clicks()
    payloads = streams(template, int(time.time() * 1000))
    config = config_for(tmp_path)
    sink = StopAfterSink(after=N // 5)
    trainer, _, first, sink.controls = make(world, config, template, payloads, sink=sink)
    report = list(trainer.run())[-1]
    assert report.stopped == "stop" and report.checkpoint is not None
    found = load_latest_checkpoint(RunLayout(tmp_path).checkpoints)
    resumed, sink2, second, _ = make(world, config, template, payloads,
                                     Resume(found.state, checkpoint=found))
    deadline = time.monotonic() + 60
    for report in resumed.run():
        if report.samples_total >= N or time.monotonic() > deadline:
            break
    before, after = [k for k, _ in sink.messages], [k for k, _ in sink2.messages]
    assert before and after, "the stop came mid-stream"
    assert not set(before) & set(after), "a prediction published again after a clean stop"
    assert sorted(before + after) == list(range(N))
    assert sorted(k for _, k, _ in first + second) == list(range(N))
