"""GET /metrics scraped during a real 2-rank run and parsed with Prometheus' own parser:
every family is there, counters only go up, and dead letters, predictions, checkpoints and
every rank's health show in them. A real Prometheus server (Debian's) scrapes the same run
with the shipped config and rules: it finds every family, `promtool check metrics` passes on
a scrape, and every query of the shipped Grafana dashboard returns data."""

import json
import shutil
import subprocess
import urllib.error
import urllib.request

import pulsar
import pytest
from prometheus_client.parser import text_string_to_metric_families

from streams.pulsar.producer import PartitionedProducer
from tests.integration.harness import (
    live_run,
    post,
    wait_until,
)
from tests.integration.prometheus_server import BINARY, MONITORING, PrometheusServer

pytestmark = pytest.mark.integration
TOKEN = "metrics-test"
FAMILIES = {  # name as the parser gives it (counters without _total) -> type
    "hvd_online_samples": "counter", "hvd_online_steps": "counter",
    "hvd_online_loss": "gauge", "hvd_online_metric": "gauge",
    "hvd_online_partition_backlog_messages": "gauge", "hvd_online_partition_lag_seconds": "gauge",
    "hvd_online_dead_letters": "counter", "hvd_online_duplicates_dropped": "counter",
    "hvd_online_skipped_steps": "counter", "hvd_online_checkpoint_age_seconds": "gauge",
    "hvd_online_drift_events": "counter", "hvd_online_predict_latency_seconds": "histogram",
    "hvd_online_serving_version": "gauge", "hvd_online_checkpoint_failures": "counter",
    "hvd_online_ranks": "gauge", "hvd_online_rank_resident_memory_bytes": "gauge",
    "hvd_online_rank_cpu_usage_ratio": "gauge", "hvd_online_rank_step_seconds": "gauge",
}
#: the names Prometheus stores each family's samples under
STORED = {name: [f"{name}_total"] if kind == "counter" else
          [f"{name}_bucket", f"{name}_count", f"{name}_sum"] if kind == "histogram" else [name]
          for name, kind in FAMILIES.items()}


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


def answers_predict(url: str) -> bool:
    try:
        return post(url, "/v1/models/model:predict", {"instances": [[0.0] * 16]}) == 200
    except urllib.error.HTTPError as err:
        assert err.code == 503, err  # no weights yet; anything else is a failure
        return False


def send_poison(url: str, topic: str) -> None:
    client = pulsar.Client(url)
    poison = PartitionedProducer(client, topic, 4)
    for p in range(4):
        poison.send(b"\x01\x02\x03", partition=p)  # wrong size on every partition
    poison.close()
    client.close()


def counters(families: dict) -> dict[tuple, float]:
    return {(name, key): value for name, samples in families.items()
            if FAMILIES.get(name) == "counter" for key, value in samples.items()}


def test_metrics_during_a_two_rank_run(broker, topic, tmp_path):
    with live_run(broker, topic, tmp_path) as (url, _, _layout):
        send_poison(broker.url, topic)
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
        memory = second["hvd_online_rank_resident_memory_bytes"]
        assert {dict(labels)["rank"] for _, *labels in memory} == {"0", "1"}, "every rank"
        assert all(value > 100 * 2**20 for value in memory.values()), memory
        assert second["hvd_online_ranks"][("hvd_online_ranks",)] == 2


@pytest.mark.skipif(BINARY is None, reason="Debian's prometheus is not installed "
                                           "(scripts/setup.sh installs it where it runs as root)")
def test_a_real_prometheus_scrapes_a_two_rank_run_with_the_shipped_config(broker, topic,
                                                                           tmp_path):
    with live_run(broker, topic, tmp_path) as (url, _, _layout):
        target = url.removeprefix("http://").rstrip("/")
        prometheus = PrometheusServer(target, tmp_path / "prometheus")
        try:
            wait_until(lambda: answers_predict(url), 60, "weights to predict with (503 before)")
            for _ in range(5):
                assert post(url, "/v1/models/model:predict", {"instances": [[0.0] * 16]}) == 200
            wait_until(lambda: prometheus.query('up{job="hvd-online"} == 1'), 60,
                       "Prometheus to scrape the console")
            rules = [r["name"] for g in prometheus.api("rules")["groups"] for r in g["rules"]]
            assert len(rules) == 9 and "HvdOnlineRankMissing" in rules, rules
            send_poison(broker.url, topic)
            # every family but the drift events' (a labelled counter: no drift, no series)
            expected = {name for family, names in STORED.items() for name in names
                        if family != "hvd_online_drift_events"}

            def stored() -> set[str]:
                found = prometheus.query('count by (__name__) ({__name__=~"hvd_online_.+"})')
                return {sample["metric"]["__name__"] for sample in found}

            wait_until(lambda: expected <= stored(), 60,
                       lambda: f"every family in Prometheus; missing {expected - stored()}")
            # the dashboard's rates need two scrapes in their window
            dashboard = json.loads((MONITORING / "grafana-dashboard.json").read_text())
            queries = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
            assert len(queries) >= 14
            wait_until(lambda: all(prometheus.query(q) for q in queries), 90,
                       "every dashboard query to return data")
            assert prometheus.query("sum(rate(hvd_online_samples_total[1m])) > 0")
            with urllib.request.urlopen(f"{url}metrics", timeout=10) as reply:
                scraped = reply.read()
            checked = subprocess.run([shutil.which("promtool"), "check", "metrics"],
                                     input=scraped, capture_output=True, timeout=60)
            assert checked.returncode == 0, (checked.stdout + checked.stderr).decode()
        finally:
            prometheus.stop()
