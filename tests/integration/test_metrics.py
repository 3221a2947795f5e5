"""GET /metrics scraped during a real 2-rank run and parsed with Prometheus' own parser:
every family is there, counters only go up, and dead letters, predictions and checkpoints
show in them."""

import json
import urllib.request

import pulsar
import pytest
from prometheus_client.parser import text_string_to_metric_families

from hvd_online.state.run_dir import RunLayout
from streams.pulsar.producer import PartitionedProducer
from tests.integration.harness import start_producer, start_ranks, wait_until, write_config

pytestmark = pytest.mark.integration
TOKEN = "metrics-test"
FAMILIES = {  # name as the parser gives it (counters without _total) -> type
    "hvd_online_samples": "counter", "hvd_online_steps": "counter",
    "hvd_online_loss": "gauge", "hvd_online_metric": "gauge",
    "hvd_online_partition_backlog_messages": "gauge", "hvd_online_partition_lag_seconds": "gauge",
    "hvd_online_dead_letters": "counter", "hvd_online_duplicates_dropped": "counter",
    "hvd_online_skipped_steps": "counter", "hvd_online_checkpoint_age_seconds": "gauge",
    "hvd_online_drift_events": "counter", "hvd_online_predict_latency_seconds": "histogram",
    "hvd_online_serving_version": "gauge",
}


def scrape(url: str) -> dict[str, dict[tuple, float]]:
    """{family: {(sample name, labels...): value}}"""
    with urllib.request.urlopen(f"{url}metrics", timeout=10) as reply:
        assert reply.status == 200
        text = reply.read().decode()
    families = {}
    for family in text_string_to_metric_families(text):
        assert family.name not in families
        families[family.name] = {(s.name, *sorted(s.labels.items())): s.value
                                 for s in family.samples}
        assert FAMILIES.get(family.name, family.type) == family.type, family.name
    return families


def post(url: str, path: str, body: dict, token: str | None = None) -> int:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(f"{url}{path.lstrip('/')}", json.dumps(body).encode(),
                                     headers, method="POST")
    with urllib.request.urlopen(request, timeout=10) as reply:
        return reply.status


def counters(families: dict) -> dict[tuple, float]:
    return {(name, key): value for name, samples in families.items()
            if FAMILIES.get(name) == "counter" for key, value in samples.items()}


def test_metrics_during_a_two_rank_run(broker, topic, tmp_path):
    config = write_config(tmp_path, broker.url, topic, extra="")
    text = config.read_text().replace(
        "[console]\nenabled = false\n",
        f'[console]\nenabled = true\nport = 0\ntoken = "{TOKEN}"\n[checkpoint]\nevery_steps = 20\n')
    config.write_text(text)
    layout = RunLayout(tmp_path / "run")
    ranks = start_ranks(config, "train.idle_timeout_s=0", log_path=tmp_path / "ranks.log")
    producer = start_producer(config, 2_000_000, rate=3000, log_path=tmp_path / "producer.log")
    try:
        url = wait_until(lambda: layout.console_url.exists()
                         and layout.console_url.read_text().strip(), 120, "the console")
        url = url.rstrip("/") + "/"
        client = pulsar.Client(broker.url)
        poison = PartitionedProducer(client, topic, 4)
        for p in range(4):
            poison.send(b"\x01\x02\x03", partition=p)  # wrong size on every partition
        poison.close()
        client.close()
        wait_until(lambda: scrape(url).get("hvd_online_dead_letters", {}).get(
            ("hvd_online_dead_letters_total", ("reason", "wrong size"))) == 4, 120,
            "the four dead letters in /metrics")
        for _ in range(5):
            assert post(url, "/v1/models/model:predict", {"instances": [[0.0] * 16]}) == 200

        first = scrape(url)
        wait_until(lambda: scrape(url)["hvd_online_samples"][("hvd_online_samples_total",)]
                   > first["hvd_online_samples"][("hvd_online_samples_total",)] + 3000, 60,
                   "samples to go up")
        second = scrape(url)
        assert set(FAMILIES) <= set(second), set(FAMILIES) - set(second)
        before, after = counters(first), counters(second)
        assert all(after[key] >= value for key, value in before.items()), "counters go up"
        assert after[("hvd_online_steps", ("hvd_online_steps_total",))] > before[
            ("hvd_online_steps", ("hvd_online_steps_total",))]
        latency = second["hvd_online_predict_latency_seconds"]
        assert latency[("hvd_online_predict_latency_seconds_count",)] >= 5
        assert second["hvd_online_serving_version"][("hvd_online_serving_version",)] > 0
        assert 0 <= second["hvd_online_checkpoint_age_seconds"][
            ("hvd_online_checkpoint_age_seconds",)] < 60
        backlog = second["hvd_online_partition_backlog_messages"]
        assert {dict(labels)["partition"] for _, *labels in backlog} == {"0", "1", "2", "3"}
        assert post(url, "/api/stop", {}, TOKEN) == 202
        assert ranks.wait(120) == 0
    finally:
        ranks.stop()
        producer.stop()
