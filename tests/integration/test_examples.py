"""Smoke tests: each example runs end to end (producer + horovodrun -np 2 on the real broker),
shortened, and its evaluation shows what the example is about."""

import json
import subprocess
import sys

import pytest

from hvd_online.state.run_dir import RunLayout
from tests.integration.harness import REPO

pytestmark = pytest.mark.integration


def run_example(name: str, broker, topic, tmp_path, *overrides: str) -> str:
    config = REPO / "examples" / name / "config.toml"
    args = [str(config), "--url", broker.url, "--run-dir", str(tmp_path / "run"),
            "--set", f'stream.topic="{topic}"', *[a for o in overrides for a in ("--set", o)]]
    proc = subprocess.run([sys.executable, "-m", "hvd_online.cli", "run", *args, "-np", "2",
                           "--no-console"], cwd=REPO, capture_output=True, text=True,
                          timeout=400)
    output = proc.stdout + proc.stderr
    sys.stdout.write(output[-4000:])
    assert proc.returncode == 0
    summaries = RunLayout(tmp_path / "run").summaries()
    assert sorted(summaries) == [0, 1]
    assert summaries[0]["weights_sha256"] == summaries[1]["weights_sha256"]
    return output


def evaluate(module: str, name: str, tmp_path, *overrides: str) -> dict:
    config = REPO / "examples" / name / "config.toml"
    args = [str(config), "--set", f'run.dir="{tmp_path / "run"}"',
            *[a for o in overrides for a in ("--set", o)]]
    proc = subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_mlp_demo(broker, topic, tmp_path):
    run_example("mlp", broker, topic, tmp_path, "produce.count=20000", "produce.rate=0",
                "train.max_samples=20000")


def test_cnn_digits_learns_and_compares_with_offline(broker, topic, tmp_path):
    run_example("cnn_digits", broker, topic, tmp_path, "produce.count=10000",
                "train.max_samples=10000")
    result = evaluate("examples.cnn_digits.evaluate", "cnn_digits", tmp_path)
    assert result["samples_streamed"] == 10000
    assert result["online_held_out_accuracy"] > 0.85
    assert result["offline_held_out_accuracy"] > 0.85


def test_word2vec_neighbours_recover_planted_clusters(broker, topic, tmp_path):
    run_example("word2vec", broker, topic, tmp_path, "produce.count=150000",
                "train.max_samples=150000")
    result = evaluate("examples.word2vec.neighbours", "word2vec", tmp_path)
    assert result["neighbour_purity_at_5"] > 3 * result["chance"]


def test_drift_is_detected_and_the_online_model_recovers(broker, topic, tmp_path):
    shortened = ("produce.params={drift_at = 30000, angle_deg = 90.0}", "produce.count=80000",
                 "train.max_samples=80000")
    output = run_example("drift", broker, topic, tmp_path, *shortened)
    assert "DRIFT detected" in output
    result = evaluate("examples.drift.report", "drift", tmp_path, *shortened)
    # the 4 partitions interleave, so the first turned samples are trained in the step that
    # ends a few dozen samples before samples_total reaches 30,000
    assert any(29000 <= at <= 36000 for at in result["detected_at_samples"]), result
    assert result["online_accuracy_before_drift"] > 0.9
    assert result["online_accuracy_dip"] < 0.75
    assert result["online_accuracy_at_end"] > 0.9
    assert result["frozen_accuracy_after_drift"] < 0.6


def test_clicks_predictions_beat_a_naive_joiner(broker, topic, tmp_path):
    # about four join windows of stream: shorter clicks and window than the example's
    shortened = ("produce.count=12000", "train.max_samples=12000", "join.window_s=1.5",
                 "join.idle_s=1.0", "produce.params={seed = 0, rate = 2000.0, "
                 "median_delay_s = 0.5}", f'join.events_topic="{topic}-impressions"',
                 f'join.labels_topic="{topic}-clicks"')
    run_example("clicks", broker, topic, tmp_path, *shortened)
    result = evaluate("examples.clicks.evaluate", "clicks", tmp_path, *shortened,
                      f'stream.url="{broker.url}"')
    print(json.dumps(result))  # shown when the test fails
    assert result["impressions"] == 12000  # every impression has a published prediction
    ours, naive = result["hvd_online"], result["naive_joiner"]
    assert ours["auc"] > 0.6
    assert ours["log_loss"] < naive["log_loss"], "expiring non-clicks as 0 beats dropping them"
    assert result["instant_labels"]["auc"] > naive["auc"]
