"""MovieLens-100K in time order through 2 real Horovod ranks on DynamicEmbedding tables: kill -9
of a rank mid-stream and a restart train every rating once, the ranks' tables and weights end
equal, and the checkpoint's model answers raw IDs (an unseen one from the default row)."""

import random
import time
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from examples.movielens.data import ratings_file
from hvd_online.config import load_config
from hvd_online.model.dynamic_embedding import dynamic_tables
from hvd_online.model.state import weights_digest
from hvd_online.model.template import build_model, load_template
from hvd_online.state.checkpoint import load_latest_checkpoint
from tests.integration.harness import (
    kill_a_rank_mid_stream,
    ledger_size,
    read_ledger,
    run_ranks,
    start_producer,
    start_ranks,
    wait_until,
)
from tests.integration.test_recovery import newest_checkpoint_step

pytestmark = pytest.mark.integration

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "movielens"


def movielens_config(tmp_path: Path, url: str, topic: str, count: int) -> Path:
    ratings_file()  # fetched by the setup step; here only if it was not
    path = tmp_path / "config.toml"
    path.write_text(f"""
[model]
template = "{EXAMPLE / 'model.py'}:RatingMF"
params = {{ dim = 16, capacity = 4096 }}
[stream]
url = "{url}"
topic = "{topic}"
partitions = 4
[window]
batch_size = 32
max_wait_ms = 20
[train]
learning_rate = 0.01
max_samples = {count}
idle_timeout_s = 120
log_every = 50
threads = 1
[run]
dir = "{tmp_path / 'run'}"
[console]
enabled = false
[checkpoint]
every_steps = 20
[produce]
generator = "{EXAMPLE / 'producer.py'}:generate"
count = {count}
""")
    return path


def test_kill_9_mid_stream_then_restart_trains_every_rating_once(broker, topic, tmp_path):
    m = 16000
    config = movielens_config(tmp_path, broker.url, topic, m)
    first = tmp_path / "ledger-1"
    ranks = start_ranks(config, log_path=tmp_path / "run1.log", ledger=first)
    try:
        ranks.wait_for_ranks_stepping(2)
        producer = start_producer(config, m, rate=2000, log_path=tmp_path / "producer.log")
        wait_until(lambda: ledger_size(first) > 3000, 120, "training to start")
        time.sleep(random.uniform(0.2, 1.5))
        kill_a_rank_mid_stream(ranks, producer)
    finally:
        ranks.stop()
    resumed_from = newest_checkpoint_step(tmp_path)
    second = tmp_path / "ledger-2"
    run = run_ranks(config, ledger=second, timeout=300)
    producer.wait(60)
    assert run.returncode == 0, run.output[-3000:]
    assert f"resuming from step {resumed_from}" in run.output
    ids = read_ledger(first, up_to_step=resumed_from) + read_ledger(second)
    assert sorted(ids) == list(range(m)), "every rating trained once"
    digests = {r: s["weights_sha256"] for r, s in run.summaries.items()}
    assert digests[0] == digests[1], "both ranks hold the same tables and weights"

    cfg = load_config(config)
    template = load_template(cfg.model.template, cfg.model.params)
    model = build_model(template, "")
    checkpoint = load_latest_checkpoint(tmp_path / "run" / "checkpoints")
    model.set_weights(checkpoint.weights)
    assert weights_digest(model) == digests[0], "the final checkpoint is the resumed model"
    users = dynamic_tables(model)[0]
    assert users.counters()["size"] > 100, "users seen mid-stream got rows of their own"
    queries = np.array([[196, 242], [10_000_000, 242]], np.int64)  # the second user: unseen
    assert users.rows_of(tf.constant(queries[:, 0])).numpy()[1] == 0
    predicted = model(queries).numpy()
    assert np.all(np.isfinite(predicted)) and np.all((predicted > 0) & (predicted < 6))
