"""Online-learning quality side by side with River, on drifting and stationary streams.

Each stream is published once into a broker; hvd-online (2 ranks, each drift response) and
River's LogisticRegression, HoeffdingAdaptiveTree and ARF then read the same records from it
(River in publish order, merged from the partitions by id). Prequential accuracy everywhere:
each sample is predicted before it is learnt.

    python -m benchmarks.quality            # all streams, all models (~21 min here)
    python -m benchmarks.quality --quick    # shorter streams, no ARF (a few minutes)

Columns: accuracy over the 10,000 samples before the drift; the dip (lowest rolling
2,000-sample accuracy after it); samples from the drift until the rolling accuracy is back
within 2 points of the pre-drift figure; accuracy over the last 10,000 samples; samples/s;
for hvd-online, where its detector first fired relative to the drift.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pulsar

from benchmarks.common import REPO, run_ranks, steady_rate, write_results
from benchmarks.quality_streams import STREAMS, stream_rows
from examples.drift.model import HyperplaneClassifier
from hvd_online.commands.produce import produce
from hvd_online.config import load_config
from hvd_online.state.run_dir import RunLayout
from streams.codecs import RecordCodec
from streams.pulsar.broker import EmbeddedBroker, free_port
from streams.pulsar.topics import partition_topic

CONFIG = REPO / "examples" / "drift" / "config.toml"
RESULTS = REPO / "benchmarks" / "results" / "quality.json"
PARTITIONS = 4
ROLLING = 2000
BEFORE = 10000
#: hvd-online variants: name -> config overrides
HVD_VARIANTS = {
    "hvd-online (mark only)": ["drift.detector=page_hinkley", "drift.action=mark"],
    "hvd-online boost": ["drift.detector=page_hinkley", "drift.action=boost"],
    "hvd-online challenger": ["drift.detector=page_hinkley", "drift.action=challenger"],
    "hvd-online challenger, ADWIN": ["drift.detector=adwin", "drift.action=challenger"],
}


@dataclass
class Curve:
    """Cumulative samples and correct predictions at some granularity (per step or sample)."""

    seen: np.ndarray
    correct: np.ndarray
    samples_per_s: float
    flagged_at: list[int]

    def accuracy(self, start: float, end: float) -> float:
        c0, c1 = np.interp([start, end], self.seen, self.correct)
        return float((c1 - c0) / (end - start))

    def rolling(self, ends: np.ndarray) -> np.ndarray:
        return np.array([self.accuracy(e - ROLLING, e) for e in ends])


def quality(curve: Curve, total: int, drift_at: int | None) -> dict:
    row = {"final": curve.accuracy(total - BEFORE, total),
           "samples_per_s": round(curve.samples_per_s)}
    if drift_at is None:
        row["overall"] = curve.accuracy(0, total)
        return row
    before = curve.accuracy(drift_at - BEFORE, drift_at)
    ends = np.arange(drift_at + 100, total + 1, 100)
    rolling = curve.rolling(ends)
    dip_at = int(np.argmin(rolling[: int(20000 / 100)]))
    back = np.flatnonzero(rolling[dip_at:] >= before - 0.02)
    row.update(before=before, dip=float(rolling[dip_at]),
               to_recover=int(ends[dip_at + back[0]] - drift_at) if len(back) else None)
    later = [at - drift_at for at in curve.flagged_at if at >= drift_at - 2000]
    if curve.flagged_at:
        row["detected_after"] = later[0] if later else None
    return row


# -- hvd-online --------------------------------------------------------------------------------

def hvd_overrides(stream: str, topic: str, run_dir: Path, total: int) -> list[str]:
    inputs = STREAMS[stream][0]
    return [f"model.params={{inputs = {inputs}, hidden = 32}}", f'stream.topic="{topic}"',
            f'stream.subscription="{run_dir.name}"', f"train.max_samples={total}",
            "window.batch_size=32", "checkpoint.every_seconds=0", "console.enabled=false"]


def run_hvd(url: str, stream: str, topic: str, total: int, overrides: list[str],
            run_dir: Path) -> Curve:
    argv = ["train", str(CONFIG), "--url", url, "--run-dir", str(run_dir)]
    for override in [*hvd_overrides(stream, topic, run_dir, total), *overrides]:
        argv += ["--set", override]
    run_ranks(2, argv, run_dir)
    rows = [json.loads(line) for line in RunLayout(run_dir).metrics.read_text().splitlines()]
    rows = [r for r in rows if r["count"] and r["metric"] is not None]
    seen = np.array([0] + [r["samples_total"] for r in rows], float)
    correct = np.cumsum([0] + [r["metric"] * r["count"] for r in rows])
    flagged = [r["samples_total"] for r in rows if r.get("drift")]
    return Curve(seen, correct, steady_rate(run_dir, total), flagged)


# -- River ---------------------------------------------------------------------------------

def river_models(quick: bool) -> dict:
    from river import forest, linear_model, optim, tree

    models = {
        "River LogisticRegression": lambda: linear_model.LogisticRegression(
            optimizer=optim.SGD(0.05)),
        "River HoeffdingAdaptiveTree": lambda: tree.HoeffdingAdaptiveTreeClassifier(seed=0),
    }
    if not quick:
        models["River ARF"] = lambda: forest.ARFClassifier(seed=0)
    return models


def read_back(url: str, topic: str, inputs: int, total: int) -> np.ndarray:
    """Every record of `topic`, from the broker, in publish order (by id). Read by a consumer
    of its own until all `total` are in: a reader from the earliest position misreads a
    batched first entry on pulsar-lite 0.2.0 (see streams/pulsar/pulsar_source.py), and
    `has_message_available` may say no before the reader caught up."""
    codec = RecordCodec(HyperplaneClassifier(inputs=inputs).schema)
    client = pulsar.Client(url)
    payloads: list[bytes] = []
    received = 0
    deadline = time.monotonic() + 120
    try:
        consumers = [client.subscribe(partition_topic(topic, p), f"read-back-{uuid.uuid4()}",
                                      initial_position=pulsar.InitialPosition.Earliest)
                     for p in range(PARTITIONS)]
        while received < total and time.monotonic() < deadline:
            for consumer in consumers:
                try:
                    while True:
                        message = consumer.receive(timeout_millis=200)
                        consumer.acknowledge(message)  # unacknowledged, pulsar-lite redelivers
                        payloads.append(message.data())
                        received += codec.count_samples(payloads[-1])
                except pulsar.Timeout:
                    continue
    finally:
        client.close()
    rows, rejected = codec.decode(payloads)
    assert not rejected and len(rows) == total, (len(rows), total)
    return rows[np.argsort(rows["id"], kind="stable")]


def run_river(make, rows: np.ndarray) -> Curve:
    model = make()
    hits = np.zeros(len(rows))
    names = range(rows["x"].shape[1])
    start = time.perf_counter()
    for i, (x, y) in enumerate(zip(rows["x"].tolist(), rows["y"].tolist(), strict=True)):
        sample = dict(zip(names, x, strict=True))
        label = y > 0.5
        hits[i] = model.predict_one(sample) == label
        model.learn_one(sample, label)
    rate = len(rows) / (time.perf_counter() - start)
    return Curve(np.arange(len(rows) + 1, dtype=float), np.r_[0, np.cumsum(hits)], rate, [])


# -- the offline reference ----------------------------------------------------------------

def offline_before(rows: np.ndarray, drift_at: int, inputs: int) -> float:
    """The same template trained offline (3 epochs) on the pre-drift stream except its last
    10,000 samples, scored on those."""
    import keras

    template = HyperplaneClassifier(inputs=inputs)
    keras.utils.set_random_seed(0)
    model = template.build_model()
    model.compile(keras.optimizers.Adam(0.003), keras.losses.BinaryCrossentropy(from_logits=True))
    train, held = rows[: drift_at - BEFORE], rows[drift_at - BEFORE : drift_at]
    model.fit(train["x"], train["y"], batch_size=64, epochs=3, verbose=0)
    predicted = model.predict(held["x"], verbose=0, batch_size=4096)[:, 0] > 0
    return float(np.mean(predicted == (held["y"] > 0.5)))


# -- the table -------------------------------------------------------------------------------

def fmt(value, digits: int = 3) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}" if isinstance(value, float) else f"{value:,}"


def table(results: dict) -> str:
    lines = []
    for stream, result in results.items():
        drift = result["drift_at"]
        lines.append(f"\n{stream}: {result['total']:,} samples, "
                     + (f"drift at {drift:,}" if drift else "no single drift point")
                     + (f"; offline model before the drift: {result['offline_before']:.3f}"
                        if result.get("offline_before") is not None else ""))
        lines.append(f"  {'model':32s} {'before':>7s} {'dip':>6s} {'recover':>8s} "
                     f"{'overall':>7s} {'final':>6s} {'samples/s':>10s} {'detected':>9s}")
        for name, row in result["models"].items():
            lines.append(
                f"  {name:32s} {fmt(row.get('before')):>7s} {fmt(row.get('dip')):>6s} "
                f"{fmt(row.get('to_recover')):>8s} {fmt(row.get('overall')):>7s} "
                f"{fmt(row['final']):>6s} {row['samples_per_s']:>10,} "
                f"{fmt(row.get('detected_after')):>9s}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="shorter streams, no ARF")
    parser.add_argument("--streams", default=",".join(STREAMS),
                        help=f"comma-separated, of {', '.join(STREAMS)}")
    parser.add_argument("--total", type=int, default=0,
                        help="samples per stream (default 120,000; 48,000 with --quick)")
    parser.add_argument("--out", default=str(RESULTS), help="JSON results file")
    args = parser.parse_args(argv)
    scale = args.total / 120000 if args.total else 0.4 if args.quick else 1.0
    results = {}
    with tempfile.TemporaryDirectory() as tmp, \
            EmbeddedBroker(Path(tmp) / "broker", port=free_port()) as broker:
        for stream in args.streams.split(","):
            inputs, default_drift = STREAMS[stream]
            total = int(120000 * scale)
            drift_at = int(default_drift * scale) if default_drift else None
            topic = f"quality-{stream}"
            config = load_config(CONFIG, [
                f'stream.topic="{topic}"', f"model.params={{inputs = {inputs}, hidden = 32}}",
                f'produce.generator="{REPO / "benchmarks" / "quality_streams.py"}:generate"',
                f'produce.params={{stream = "{stream}", count = {total}'
                + (f", drift_at = {drift_at}" if drift_at else "") + "}", "produce.rate=0"])
            produce(config, broker.url, count=total, progress=False)
            rows = read_back(broker.url, topic, inputs, total)
            expected = stream_rows(HyperplaneClassifier(inputs=inputs).schema, stream, total,
                                   drift_at)
            assert all(np.array_equal(rows[f], expected[f]) for f in ("id", "x", "y")), \
                "River reads exactly the published records"
            models = {}
            for name, overrides in HVD_VARIANTS.items():
                if args.quick and "ADWIN" in name:
                    continue
                run_dir = Path(tmp) / f"{stream}-{len(models)}"
                curve = run_hvd(broker.url, stream, topic, total, overrides, run_dir)
                models[name] = quality(curve, total, drift_at)
                print(f"{stream}: {name} done", file=sys.stderr, flush=True)
            for name, make in river_models(args.quick).items():
                models[name] = quality(run_river(make, rows), total, drift_at)
                print(f"{stream}: {name} done", file=sys.stderr, flush=True)
            results[stream] = {
                "total": total, "drift_at": drift_at, "models": models,
                "offline_before": offline_before(rows, drift_at, inputs) if drift_at else None}
    print(table(results))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_results(out, {"quick": args.quick, "results": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
