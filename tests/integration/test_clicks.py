"""Raw event streams end to end on the real broker with horovodrun -np 2: impressions are
predicted on arrival, clicks come later on their own topic, unclicked impressions expire as 0.
A rank is killed with -9 mid-run and the job restarted; the ledger shows every impression
trained exactly once, with its click if it came within the window, else with 0, and the
predictions topic has every impression."""

import json
import random
import sys
import time
from pathlib import Path

import pulsar
import pytest

from examples.clicks.producer import outcomes
from hvd_online.checkpoint import load_latest_checkpoint
from hvd_online.layout import RunLayout
from streams.predictions import predictions_topic
from tests.integration.harness import (
    REPO,
    Background,
    kill_a_rank_mid_stream,
    ledger_size,
    read_labelled_ledger,
    run_ranks,
    start_ranks,
    wait_until,
)

pytestmark = pytest.mark.integration

M = 10000
RATE = 1000.0
WINDOW_MS, LATENESS_MS = 3000, 500
PARAMS = {"seed": 3, "rate": RATE, "median_delay_s": 0.6, "delay_sigma": 1.0}


def write_clicks_config(tmp_path: Path, url: str, topic: str) -> Path:
    params = ", ".join(f"{k} = {v}" for k, v in PARAMS.items())
    path = tmp_path / "config.toml"
    path.write_text(f"""
[model]
template = "{REPO / 'examples' / 'clicks' / 'model.py'}:ClickModel"
params = {{ inputs = 8, hidden = 16 }}
[stream]
url = "{url}"
partitions = 4
[join]
events_topic = "{topic}-impressions"
labels_topic = "{topic}-clicks"
window_s = {WINDOW_MS / 1000}
lateness_s = {LATENESS_MS / 1000}
idle_s = 1.5
on_expiry = "label"
expiry_label = 0.0
[window]
batch_size = 128
max_wait_ms = 20
[train]
learning_rate = 0.01
idle_timeout_s = 120
threads = 1
[checkpoint]
every_steps = 10
[run]
dir = "{tmp_path / 'run'}"
[console]
enabled = false
[produce]
generator = "{REPO / 'examples' / 'clicks' / 'producer.py'}:generate"
params = {{ {params} }}
count = {M}
""")
    return path


def start_producer(config: Path, log_path: Path) -> Background:
    import subprocess

    with open(log_path, "w") as log:
        process = subprocess.Popen([sys.executable, "-m", "hvd_online.cli", "produce",
                                    str(config)], cwd=REPO, stdout=log,
                                   stderr=subprocess.STDOUT)
    return Background(process, log_path)


def predicted_keys(url: str, topic: str) -> set[int]:
    client = pulsar.Client(url)
    reader = client.create_reader(predictions_topic(topic), pulsar.MessageId.earliest)
    keys = set()
    try:
        while reader.has_message_available():
            keys.add(json.loads(reader.read_next(timeout_millis=5000).data())["key"])
    finally:
        client.close()
    return keys


def test_clicks_join_exactly_once_across_kill_9(broker, topic, tmp_path):
    config = write_clicks_config(tmp_path, broker.url, topic)
    first, second = tmp_path / "ledger-1", tmp_path / "ledger-2"
    ranks = start_ranks(config, f"train.max_samples={M}", log_path=tmp_path / "run1.log",
                        ledger=first, ledger_labels=True)
    try:  # the stream starts once both ranks step, so the kill lands in the middle of it
        ranks.wait_for_ranks_stepping(2)
        producer = start_producer(config, tmp_path / "producer.log")
        wait_until(lambda: ledger_size(first) > 2500, 120, "joined samples to train")
        time.sleep(random.uniform(0.2, 1.0))
        kill_a_rank_mid_stream(ranks, producer)
    finally:
        ranks.stop()
    checkpoint = load_latest_checkpoint(RunLayout(tmp_path / "run").checkpoints)
    assert checkpoint is not None
    resumed_from = checkpoint.state.step
    joins = [k for k in checkpoint.state.operators if k.startswith("join:")]
    assert len(joins) == 4, "every partition's join state is in the checkpoint"

    run = run_ranks(config, f"train.max_samples={M}", timeout=240, ledger=second,
                    ledger_labels=True)
    assert producer.wait(120) == 0
    assert run.returncode == 0 and f"resuming from step {resumed_from}" in run.output
    summaries = run.summaries
    assert summaries[0]["weights_sha256"] == summaries[1]["weights_sha256"]

    kept = read_labelled_ledger(first, up_to_step=resumed_from) + read_labelled_ledger(second)
    assert sorted(k for k, _ in kept) == list(range(M)), "every impression trained once"
    truth = outcomes(M, inputs=8, **PARAMS)
    label = dict(kept)
    in_window = [k for k in range(M) if 0 <= truth["delay_ms"][k] <= WINDOW_MS - LATENESS_MS]
    never = [k for k in range(M) if not truth["clicked"][k]
             or truth["delay_ms"][k] > WINDOW_MS + LATENESS_MS]
    assert len(in_window) > 300 and len(never) > 3000
    assert [k for k in in_window if label[k] != 1.0] == [], "a click in time joins its event"
    assert [k for k in never if label[k] != 0.0] == [], "no click in time: the expiry label"

    assert predicted_keys(broker.url, f"{topic}-impressions") == set(range(M))
