"""MovieLens-100K in time order through 2 real Horovod ranks on DynamicEmbedding tables: kill -9
of a rank mid-stream and a restart train every rating once, the ranks' tables and weights end
equal, and the checkpoint's model answers raw IDs (an unseen one from the default row). As a
raw event stream (rating events now, their ratings later): every event predicted on arrival,
every rating joined and trained once, and the console's tables panel in real Chromium."""

import random
import time
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from examples.movielens.data import ratings, ratings_file
from hvd_online.config import load_config
from hvd_online.model.dynamic_embedding import dynamic_tables
from hvd_online.model.state import weights_digest
from hvd_online.model.template import build_model, load_template
from hvd_online.state.checkpoint import load_latest_checkpoint
from hvd_online.state.run_dir import RunLayout
from tests.browser.kit import ARTIFACTS, CHROMIUM
from tests.integration.harness import (
    edit_config,
    enable_console,
    kill_a_rank_mid_stream,
    ledger_size,
    newest_checkpoint_step,
    predicted_keys,
    read_labelled_ledger,
    read_ledger,
    run_ranks,
    start_producer,
    start_ranks,
    wait_until,
)

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
    # the TF-Serving version of the final step answers raw IDs exactly as the checkpoint does
    version = RunLayout.of(cfg).serving(cfg.console.model_name) / str(checkpoint.state.step)
    served = tf.saved_model.load(str(version)).signatures["serving_default"]
    got = next(iter(served(ids=tf.constant(queries)).values())).numpy()
    np.testing.assert_allclose(got, predicted, rtol=1e-5)


def joined_config(tmp_path: Path, url: str, topic: str, count: int) -> Path:
    """examples/movielens/config-joined.toml's join, shortened, with the console on."""
    path = enable_console(movielens_config(tmp_path, url, topic, count), "t")
    return edit_config(path, {
        "stream": {"topic": None},
        "produce": {"generator": f"{EXAMPLE / 'producer.py'}:generate_joined",
                    "params": {"rate": 1500.0, "median_delay_s": 0.5}},
        "join": {"events_topic": f"{topic}-events", "labels_topic": f"{topic}-ratings",
                 "window_s": 30.0, "lateness_s": 1.0, "idle_s": 3.0, "on_expiry": "drop"}})


@pytest.mark.browser
def test_as_a_raw_event_stream_every_event_is_predicted_and_every_rating_trained_once(
        broker, topic, tmp_path):
    from playwright.sync_api import sync_playwright

    m = 12000
    config = joined_config(tmp_path, broker.url, topic, m)
    ledger = tmp_path / "ledger"
    layout = RunLayout(tmp_path / "run")
    ranks = start_ranks(config, log_path=tmp_path / "ranks.log", ledger=ledger,
                        ledger_labels=True)
    producer = None
    try:
        url = wait_until(lambda: layout.console_url.exists()
                         and layout.console_url.read_text().strip(), 120, "the console")
        producer = start_producer(config, m, rate=1500, log_path=tmp_path / "producer.log")
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM,
                                         args=["--no-sandbox", "--disable-gpu"])
            page = browser.new_page(viewport={"width": 1400, "height": 1100})
            page.goto(url)

            def users_owned() -> int:
                cell = page.locator('#tables-body tr[data-table="user"] td').nth(1)
                return int(cell.inner_text().replace(",", "")) if cell.count() else 0

            wait_until(lambda: users_owned() > 50, 90, "user rows on the tables panel")
            shown = page.locator("#tables-body tr").evaluate_all(
                "rows => rows.map(r => r.dataset.table)")
            assert shown == ["user", "movie", "user_bias", "movie_bias"]
            capacity = page.locator('#tables-body tr[data-table="movie"] td').nth(2)
            assert capacity.inner_text() == "4,096"
            assert not page.locator("#join-panel").is_hidden(), "the join panel is on too"
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "console-movielens.png"), full_page=True)
            browser.close()
        assert ranks.wait(timeout=240) == 0, ranks.output[-4000:]
        assert producer.wait(60) == 0
    finally:
        ranks.stop()
        if producer is not None:
            producer.stop()
    kept = read_labelled_ledger(ledger)
    assert sorted(k for k, _ in kept) == list(range(m)), "every rating joined and trained once"
    truth = ratings()["rating"][:m]
    assert [k for k, label in kept if label != truth[k]] == [], "each with its own rating"
    assert predicted_keys(broker.url, f"{topic}-events") == set(range(m)), \
        "every rating event predicted on arrival"
    summaries = layout.summaries()
    assert summaries[0]["weights_sha256"] == summaries[1]["weights_sha256"]
