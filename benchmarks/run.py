"""Side-by-side throughput on one model and one stream; prints a table, writes JSON.

    .venv/bin/python -m benchmarks.run [--samples 100000] [--repeats 3]

Cases (medians over repeats, samples/s):
  in-memory      the same model, batch and data in a plain TF loop: the limit
  hvd-online x1  1 rank, stream pre-filled in the embedded broker
  hvd-online x2  2 ranks (aggregate), same stream, same per-rank batch
  per-message    a plain Pulsar consumer calling model.train_on_batch per message
  per-32         the same loop, one train_on_batch per 32 messages
Steady-state rates of hvd-online come from the run's metrics.jsonl (between 10% and 90% of
the stream), so start-up (TF import, tracing) is not counted; peak RSS per rank is reported.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pulsar

from examples.mlp.model import MLPRegression
from examples.mlp.producer import generate
from hvd_online.config import load_config
from hvd_online.launch import horovodrun_command
from hvd_online.produce import produce
from streams.broker import EmbeddedBroker
from streams.client import connect
from streams.topics import partition_topic

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "examples" / "mlp" / "config.toml"
BATCH = 256


def steady_rate(metrics: Path, total: int) -> float:
    rows = [json.loads(line) for line in metrics.read_text().splitlines()]
    rows = [r for r in rows if r["count"] and 0.1 * total <= r["samples_total"] <= 0.9 * total]
    first, last = rows[0], rows[-1]
    return (last["samples_total"] - first["samples_total"]) / (last["elapsed_s"]
                                                               - first["elapsed_s"])


def hvd_case(url: str, topic: str, total: int, ranks: int, work: Path, tag: str) -> dict:
    run_dir = work / tag
    argv = ["train", str(CONFIG), "--url", url, "--run-dir", str(run_dir), "--no-console",
            "--set", f'stream.topic="{topic}"', "--set", f'stream.subscription="{tag}"',
            "--set", f"train.max_samples={total}", "--set", f"window.batch_size={BATCH}",
            "--set", "checkpoint.every_seconds=0"]
    out = subprocess.run(horovodrun_command(ranks, argv), capture_output=True, text=True,
                         env={**os.environ, "PYTHONUNBUFFERED": "1"}, timeout=900)
    summaries = [json.loads(line.split("SUMMARY ", 1)[1]) for line in out.stdout.splitlines()
                 if "SUMMARY " in line]
    if out.returncode or len(summaries) != ranks:
        raise RuntimeError(f"{tag} failed:\n{(out.stdout + out.stderr)[-3000:]}")
    return {"samples_per_s": steady_rate(run_dir / "metrics.jsonl", total),
            "peak_rss_mb": max(s["peak_rss_mb"] for s in summaries)}


def in_memory_case(total: int) -> dict:
    import keras
    import tensorflow as tf

    template = MLPRegression()
    chunks = generate(template.schema, chunk=total)
    rows = next(chunks)
    x, y = np.ascontiguousarray(rows["x"]), np.ascontiguousarray(rows["y"])
    model = template.build_model()
    optimizer = template.make_optimizer(0.003)

    @tf.function
    def step(xb: tf.Tensor, yb: tf.Tensor) -> tf.Tensor:
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(template.per_sample_loss(yb, model(xb, training=True)))
        optimizer.apply(tape.gradient(loss, model.trainable_variables),
                        model.trainable_variables)
        return loss

    step(x[:BATCH], y[:BATCH])
    start = time.perf_counter()
    for i in range(0, total - BATCH + 1, BATCH):
        step(x[i : i + BATCH], y[i : i + BATCH])
    keras.backend.clear_session()
    return {"samples_per_s": (total // BATCH * BATCH) / (time.perf_counter() - start)}


def per_message_case(url: str, topic: str, partitions: int, messages: int, group: int,
                     tag: str) -> dict:
    """What users hand-roll: receive, decode, train_on_batch."""
    template = MLPRegression()
    model = template.build_model()
    model.compile(template.make_optimizer(0.003), "mse")
    client = connect(url)
    consumer = client.subscribe([partition_topic(topic, p) for p in range(partitions)], tag,
                                initial_position=pulsar.InitialPosition.Earliest)
    dtype = template.schema.dtype
    buffer: list[bytes] = []
    done = 0
    start = time.perf_counter()
    while done < messages:
        message = consumer.receive(timeout_millis=10000)
        buffer.append(message.data())
        consumer.acknowledge(message)
        if len(buffer) == group:
            rows = np.frombuffer(b"".join(buffer), dtype=dtype)
            model.train_on_batch(rows["x"], rows["y"])
            done += len(buffer)
            buffer.clear()
    rate = done / (time.perf_counter() - start)
    client.close()
    return {"samples_per_s": rate}


def median_of(runs: list[dict]) -> dict:
    return {key: statistics.median(r[key] for r in runs) for key in runs[0]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=100000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--per-message", type=int, default=3000,
                        help="messages the per-message loops train on")
    parser.add_argument("--json", default="benchmarks/results/throughput.json")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="hvd-online-bench-"))
    topic = "bench"
    results: dict[str, dict] = {}
    with EmbeddedBroker(work / "broker") as broker:
        config = load_config(CONFIG, [f'stream.topic="{topic}"', "produce.rate=0"])
        produce(config, broker.url, count=args.samples, progress=False)
        results["in-memory"] = median_of([in_memory_case(args.samples)
                                          for _ in range(args.repeats)])
        for ranks in (1, 2):
            results[f"hvd-online x{ranks}"] = median_of([
                hvd_case(broker.url, topic, args.samples, ranks, work, f"x{ranks}-{i}")
                for i in range(args.repeats)])
        for group in (1, 32):
            results[f"per-{'message' if group == 1 else group}"] = median_of([
                per_message_case(broker.url, topic, 4, args.per_message, group, f"pm{group}-{i}")
                for i in range(args.repeats)])
    base = results["hvd-online x1"]["samples_per_s"]
    print(f"samples={args.samples} repeats={args.repeats} batch={BATCH} cores={os.cpu_count()}")
    print("| case | samples/s | vs hvd-online x1 | peak RSS per rank MB |")
    print("|---|---|---|---|")
    for name, r in results.items():
        rss = f"{r['peak_rss_mb']:.0f}" if "peak_rss_mb" in r else "-"
        print(f"| {name} | {r['samples_per_s']:,.0f} | {r['samples_per_s'] / base:.2f} | {rss} |")
    x1, x2 = base, results["hvd-online x2"]["samples_per_s"]
    limit = results["in-memory"]["samples_per_s"]
    per_message = results["per-message"]["samples_per_s"]
    print(f"\nstreaming overhead (x1 / in-memory): {x1 / limit:.2f}")
    print(f"scale-out (x2 / x1): {x2 / x1:.2f}")
    print(f"vs per-message loop (x1 / per-message): {x1 / per_message:.1f}")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
