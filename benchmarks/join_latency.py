"""Raw event streams under load: 2 ranks on the clicks example, impressions offered at a fixed
rate (clicks follow in real time). Measures event -> prediction published latency (the
predictions topic's publish time minus the impression's event time, which is when the
producer was due to send it, so producer lag counts too), joined pairs/s, and whether
training kept up: the most messages ever waiting in the ranks' consumer buffers (received,
not yet in a step) stays under one second of input. (Trained samples/s says little on a
short stream: for the first window only clicks can train, after the last impression only
expiries.)

    .venv/bin/python -m benchmarks.join_latency [--rate 5000] [--seconds 30] [--streams even,skewed]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time
from pathlib import Path

import numpy as np
import pulsar

from benchmarks.common import ENV, REPO, summaries, work_dir
from hvd_online.commands.produce import produce
from hvd_online.commands.run import horovodrun_command
from hvd_online.config import load_config
from hvd_online.state.run_dir import RunLayout
from streams.pulsar.broker import EmbeddedBroker
from streams.pulsar.predictions import predictions_topic

CONFIG = REPO / "examples" / "clicks" / "config.toml"


def overrides(url: str, run_dir: Path, rate: float, total: int) -> list[str]:
    topic = run_dir.name
    return [f'stream.url="{url}"', f'run.dir="{run_dir}"', f'stream.subscription="{topic}"',
            f'join.events_topic="{topic}-impressions"', f'join.labels_topic="{topic}-clicks"',
            "console.enabled=false", "checkpoint.every_seconds=0", "train.idle_timeout_s=60",
            f"train.max_samples={total}", f"produce.count={total}",
            f"produce.params={{seed = 0, rate = {rate}, median_delay_s = 2.0}}"]


def join_latency(url: str, run_dir: Path, rate: float, seconds: float,
                 extra: tuple[str, ...] = ()) -> dict:
    total = int(rate * seconds)
    sets = [*overrides(url, run_dir, rate, total), *extra]
    argv = ["train", str(CONFIG), *[a for s in sets for a in ("--set", s)]]
    log_path = run_dir.with_suffix(".log")
    with open(log_path, "w") as log:
        ranks = subprocess.Popen(horovodrun_command(2, argv), env=ENV, stdout=log,
                                 stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 180
    while log_path.read_text().count("first step done") < 2:
        if ranks.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("ranks did not start:\n" + log_path.read_text()[-3000:])
        time.sleep(0.2)
    produce(load_config(CONFIG, sets), url)  # impressions for `seconds`, then the last clicks
    if ranks.wait(timeout=600):
        raise RuntimeError("ranks failed:\n" + log_path.read_text()[-3000:])
    latency = prediction_latency_ms(url, f"{run_dir.name}-impressions")
    rows = [json.loads(line) for line in RunLayout(run_dir).metrics.read_text().splitlines()]
    steady = [r for r in rows if r.get("join") and 0.2 * total <= r["samples_total"] <= 0.8 * total]
    span = steady[-1]["elapsed_s"] - steady[0]["elapsed_s"]
    return {
        "offered_rate": rate, "events": total, "predictions": len(latency), "extra": list(extra),
        "p50_ms": round(float(np.percentile(latency, 50)), 1),
        "p99_ms": round(float(np.percentile(latency, 99)), 1),
        "max_ms": round(float(latency.max()), 1),
        # without the first tenth of the stream: the ranks' start-up (first traces, the
        # receivers' first fills) is not what a long-running job sees
        "steady_p99_ms": round(float(np.percentile(latency[len(latency) // 10:], 99)), 1),
        "joined_per_s": round(sum(r["join"]["step"]["joined"] for r in steady[1:]) / span),
        "max_backlog": max(sum(r["partition_backlog"]) for r in rows if r.get("join")),
        "memory": [{"peak_mb": s["peak_rss_mb"], **s["memory_at_end"]}
                   for s in summaries(run_dir)],
    }


def read_predictions(url: str, events_topic: str) -> list[tuple[dict, int]]:
    """Every message of the predictions topic, read back by a plain reader: (its JSON body,
    its publish time in ms), in the topic's order (redeliveries included)."""
    client = pulsar.Client(url, logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Warn))
    out = []
    try:
        reader = client.create_reader(predictions_topic(events_topic),
                                      pulsar.MessageId.earliest)
        while reader.has_message_available():
            message = reader.read_next(timeout_millis=10_000)
            out.append((json.loads(message.data()), message.publish_timestamp()))
    finally:
        client.close()
    return out


def prediction_latency_ms(url: str, events_topic: str) -> np.ndarray:
    """Publish time of each impression's first prediction minus its event time, in the
    order of the impressions' keys (the stream's order)."""
    seen: dict[int, float] = {}
    for body, published_ms in read_predictions(url, events_topic):
        seen.setdefault(body["key"], published_ms - body["event_time_ms"])
    return np.array([seen[key] for key in sorted(seen)], dtype=np.float64)


#: the streams measured: clicks spread evenly over the 4 partitions, or 60% on partition 1
#: (benchmarks/kit/generators.py, the stream of the fault tests)
STREAMS = {"even": (), "skewed": (
    f'produce.generator="{REPO / "benchmarks" / "kit" / "generators.py"}:skewed_clicks"',)}


def table(results: list[dict]) -> str:
    lines = [
        "| stream | offered events/s | overrides | predictions | event -> prediction p50 / p99 "
        "/ max (ms) | p99 after the first tenth (ms) | joined/s | most messages waiting "
        "unread | training kept up |",
        "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        kept_up = r["max_backlog"] < r["offered_rate"]
        lines.append(
            f"| {r['stream']} | {r['offered_rate']:,.0f} | {' '.join(r['extra']) or '-'} | "
            f"{r['predictions']:,} / {r['events']:,} | {r['p50_ms']} / {r['p99_ms']} / "
            f"{r['max_ms']} | {r['steady_p99_ms']} | {r['joined_per_s']:,} | "
            f"{r['max_backlog']:,} | {'yes' if kept_up else 'no'} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=5000.0)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--streams", default="even,skewed", help="comma-separated: even, skewed")
    parser.add_argument("--set", dest="extra", action="append", default=[],
                        help="config override for the ranks, e.g. window.batch_size=128")
    args = parser.parse_args()
    results = []
    with work_dir("hvd-online-join-") as work, EmbeddedBroker(work / "broker") as broker:
        for name in args.streams.split(","):
            result = join_latency(broker.url, work / f"join-{name}", args.rate, args.seconds,
                                  (*STREAMS[name], *args.extra))
            result["stream"] = name
            result["extra"] = list(args.extra)
            results.append(result)
    print(table(results))
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
