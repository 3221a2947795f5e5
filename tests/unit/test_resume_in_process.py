"""Resume through snapshots, in-process: sources rebuilt from their `snapshot()`, operators
restored from theirs, step hooks loaded by name from config; every sample trained once."""

from pathlib import Path

import numpy as np
import pytest

from hvd_online.commands.train import load_step_hooks
from hvd_online.config import load_config_text
from hvd_online.errors import ConfigError
from hvd_online.inputs.labelled import LabelledInput
from hvd_online.state.checkpoint import Resume, load_latest_checkpoint
from hvd_online.state.run_dir import RunLayout
from hvd_online.sync.collectives import World
from hvd_online.sync.control import Controls
from hvd_online.training.trainer import OnlineTrainer
from streams.codecs import RecordCodec
from streams.testing import CountingSink, TestingSource
from tests.integration.harness import LEDGER
from tests.unit.kit import Linear, payloads


def config_for(tmp_path: Path, ledger: Path):
    hook = f'train.step_hooks=[{{use = "{LEDGER}:SampleLedger", dir = "{ledger}"}}]'
    return load_config_text(
        '[stream]\ntopic = "t"\npartitions = 2\n[window]\nbatch_size = 32\nmax_wait_ms = 5\n'
        '[train]\nlearning_rate = 0.05\n[drift]\ndetector = "page_hinkley"\nmin_steps = 100\n',
        [f'run.dir="{tmp_path}"', hook])


def trainer_for(config, world: World, data: list[bytes], resume: Resume | None, controls):
    snapshots = resume.state.sources if resume else {}
    sources = [TestingSource(p, data[p::2], resume_state=snapshots.get(f"testing-{p}"))
               for p in (0, 1)]
    template = Linear()
    hooks = load_step_hooks(config, world, template)
    step_input = LabelledInput(sources, RecordCodec(template.schema), CountingSink(), 32, 0.005)
    return OnlineTrainer(config, template, world, step_input, 2, controls, hooks,
                         resume), sources


def ledger_keys(ledger: Path, up_to_step: int | None = None) -> list[int]:
    lines = (ledger / "rank-0.ids").read_text().split("\n")
    pairs = [tuple(map(int, line.split())) for line in lines if line]
    return [key for step, key in pairs if up_to_step is None or step <= up_to_step]


def test_stop_then_resume_trains_every_sample_once_and_restores_operators(world, tmp_path):
    data = payloads(Linear(), 2000)
    first_ledger, second_ledger = tmp_path / "ledger-1", tmp_path / "ledger-2"
    controls = Controls()
    config = config_for(tmp_path, first_ledger)
    trainer, sources = trainer_for(config, world, data, None, controls)
    for report in trainer.run():
        if report.step == 9:
            controls.request("save")  # checkpoint at step 10 ...
        if report.step == 14:
            break  # ... then 4 more steps that the crash loses
    snapshot_at_save = trainer.drift.snapshot().state

    found = load_latest_checkpoint(RunLayout(tmp_path).checkpoints)
    assert found is not None and found.state.step == 10
    assert set(found.state.sources) == {"testing-0", "testing-1"}
    assert sources[0].committed == [found.state.sources["testing-0"]]
    assert found.state.operators["drift"]["detector"]["steps"] == 10

    config = config_for(tmp_path, second_ledger)
    resumed, _ = trainer_for(config, world, data, Resume(found.state, checkpoint=found),
                             Controls())
    assert resumed.progress.step == 10
    assert resumed.progress.samples_total == found.state.samples_total
    assert resumed.drift.snapshot().state == found.state.operators["drift"]
    assert resumed.drift.snapshot().state != snapshot_at_save  # not a fresh detector
    for got, want in zip(resumed.model.get_weights(), found.weights, strict=True):
        np.testing.assert_array_equal(got, want)
    reports = list(_until_idle(resumed, 2000))
    assert reports[-1].samples_total == 2000

    keys = ledger_keys(first_ledger, up_to_step=10) + ledger_keys(second_ledger)
    assert sorted(keys) == list(range(2000))  # each sample once: none lost, none repeated
    assert len(ledger_keys(first_ledger)) > len(ledger_keys(first_ledger, up_to_step=10))


def _until_idle(trainer: OnlineTrainer, samples: int):
    for report in trainer.run():
        yield report
        if report.samples_total >= samples:
            return


def test_step_hook_without_use_is_a_config_error(world, tmp_path):
    with pytest.raises(ConfigError, match="needs use"):
        load_config_text('[train]\nstep_hooks = [{dir = "x"}]\n')
    with pytest.raises(ConfigError, match="must be an array"):
        load_config_text('[train]\nstep_hooks = "x.py:Hook"\n')
