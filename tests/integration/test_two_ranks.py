"""Two real Horovod ranks train from a real pulsar-lite broker."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from hvd_online.errors import CONFIG_ERROR_EXIT
from hvd_online.state.run_dir import RunLayout
from tests.integration.harness import (
    produce_from,
    produced_ids,
    read_ledger,
    run_ranks,
    write_config,
)

pytestmark = pytest.mark.integration


def tensorboard_scalars(directory: Path) -> dict[str, dict[int, float]]:
    """{tag: {step: value}} from every event file under `directory`."""
    import tensorflow as tf

    series: dict[str, dict[int, float]] = {}
    for path in sorted(directory.glob("events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                if value.metadata.plugin_data.plugin_name == "scalars":
                    scalar = float(tf.make_ndarray(value.tensor))
                    series.setdefault(value.tag, {})[event.step] = scalar
    return series


@pytest.mark.parametrize("per_message", [1, 8], ids=["one-per-message", "packed-8"])
def test_two_ranks_learn_each_sample_exactly_once_and_end_in_sync(broker, topic, tmp_path,
                                                                   per_message):
    m = 12000
    config = write_config(tmp_path, broker.url, topic,
                          extra=f"samples_per_message = {per_message}")  # lands in [produce]
    assert produce_from(config, m) == m
    ledger = tmp_path / "ledger"
    run = run_ranks(config, f"train.max_samples={m}", ledger=ledger)
    assert run.returncode == 0

    owned = run.owned_partitions()
    assert sorted(owned) == [0, 1]
    flat = sorted(p for ps in owned.values() for p in ps)
    assert flat == [0, 1, 2, 3]  # disjoint and complete

    summaries = run.summaries
    assert sorted(summaries) == [0, 1]
    assert summaries[0]["weights_sha256"] == summaries[1]["weights_sha256"]
    assert summaries[0]["samples_total"] == summaries[1]["samples_total"] == m
    assert summaries[0]["stopped"] == "max_samples"

    ids = read_ledger(ledger)
    assert len(ids) == m, "every sample trained once: no more, no fewer"
    assert sorted(ids) == produced_ids(m)

    losses = run.losses()
    assert len(losses) > 20
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 / 2, "prequential loss must fall"

    # TensorBoard: a throttled subset of the steps, each equal to metrics.jsonl's figure
    layout = RunLayout(tmp_path / "run")
    logged = {r["step"]: r["loss"] for r in map(json.loads, layout.metrics.open())
              if r["loss"] is not None}
    board = tensorboard_scalars(layout.tensorboard)["train/loss"]
    assert len(board) >= 2 and set(board) <= set(logged)
    assert all(abs(board[step] - logged[step]) < 1e-6 * max(1, logged[step]) for step in board)
    assert "events/checkpoint" in tensorboard_scalars(layout.tensorboard)


def test_idle_partitions_and_an_idle_rank_never_block_training(broker, topic, tmp_path):
    m = 4000
    # ids only on partitions 0 and 2: rank 1 (partitions 1, 3) never receives anything
    config = write_config(tmp_path, broker.url, topic, generator="on_partitions",
                          generator_params="{ used = [0, 2] }")
    assert produce_from(config, m) == m
    ledger = tmp_path / "ledger"
    run = run_ranks(config, f"train.max_samples={m}", timeout=240,
                    ledger=ledger)
    assert run.returncode == 0
    summaries = run.summaries
    assert summaries[0]["samples_total"] == summaries[1]["samples_total"] == m
    assert summaries[0]["weights_sha256"] == summaries[1]["weights_sha256"]
    assert not (ledger / "rank-1.ids").exists() or not (ledger / "rank-1.ids").read_text()
    assert sorted(read_ledger(ledger)) == sorted(i for i in range(2 * m) if i % 4 in (0, 2))


def test_fewer_partitions_than_ranks_is_a_clear_error(broker, topic, tmp_path):
    config = write_config(tmp_path, broker.url, topic, partitions=1)
    run = run_ranks(config, "train.max_steps=5", timeout=120)
    assert run.returncode != 0
    assert "topic has 1 partition(s) but 2 ranks" in run.output


def test_a_config_error_the_ranks_find_is_not_relaunched(topic, tmp_path):
    """`hvd-online run` with restarts: the ranks find 1 partition for 2 ranks only once
    running; a relaunch would fail the same way, so there is none (exit 78, the config
    error's code)."""
    config = write_config(tmp_path, "", topic, partitions=1)
    done = subprocess.run([sys.executable, "-m", "hvd_online.cli", "run", str(config), "-np",
                           "2", "--max-restarts", "2", "--no-produce"], capture_output=True,
                          text=True, timeout=300)
    output = done.stdout + done.stderr
    assert done.returncode == CONFIG_ERROR_EXIT, output[-3000:]
    assert "topic has 1 partition(s) but 2 ranks" in output
    assert "training refused its config" in output
    assert "launch 1 on" in output and "launch 2 on" not in output
