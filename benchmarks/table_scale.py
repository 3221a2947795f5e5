"""The scale test of DynamicEmbedding: a generated stream of many events over many more IDs
than the table holds, with a power-law popularity whose head drifts, so IDs go quiet and new
ones keep coming. Memory must stay flat once the table is full, evictions must happen, and
quality on the popular IDs must hold.

    python -m benchmarks.table_scale [--events 5000000 --ids 2000000 --capacity 200000]

Each ID has a hidden value; a sample's label is its ID's value plus noise, and the model (a
4-wide dynamic embedding and a dense layer) must learn every value from the stream, in-process
through the lockstep step (one rank).
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from benchmarks.common import write_results
from hvd_online.model.dynamic_embedding import DynamicEmbedding
from hvd_online.sync.steps import LockstepStep, Trainable

RESULTS = Path(__file__).resolve().parent / "results" / "table_scale.json"
#: the popular head: mean squared error is reported on IDs of this popularity rank or better
HEAD = 1000


def hidden_value(ids: np.ndarray) -> np.ndarray:
    """Each ID's target, fixed by the ID alone."""
    mixed = (ids.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(40)
    return ((mixed.astype(np.float64) / float(1 << 24)) * 4 - 2).astype(np.float32)


def stream(events: int, ids: int, batch: int, seed: int = 0):
    """Batches of (ids, labels, popularity ranks): half the events from Zipf ranks over a
    window of IDs that moves across the whole ID space in ten jumps, so every tenth of the
    stream has a new head and the old one goes quiet (long enough for the head to be learnt
    in between); the other half a long tail that sweeps the whole ID space, so every ID
    appears, most of them once or twice, as real ID streams have."""
    rng = np.random.default_rng(seed)
    window = ids // 5
    tail = rng.permutation(ids)  # the order in which the tail meets the ID space
    cursor = 0
    for start in range(0, events, batch):
        n = min(batch, events - start)
        from_head = rng.random(n) < 0.5
        ranks = np.minimum(rng.zipf(1.3, n) - 1, window - 1)
        shift = int((ids - window) * (10 * start // events) / 9)
        chosen = (ranks + shift) % ids
        swept = tail[(cursor + np.arange(int(np.sum(~from_head)))) % ids]
        cursor += len(swept)
        chosen[~from_head], ranks[~from_head] = swept, window  # tail: not in the head
        labels = hidden_value(chosen) + rng.normal(0, 0.1, n).astype(np.float32)
        yield chosen.astype(np.int64)[:, None], labels, ranks


def run(events: int, ids: int, capacity: int, batch: int, every: int) -> dict:
    """The stream through one table; a curve point (RSS, table counters, the head's mean
    squared error since the last point, throughput) every `every` events."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((1,), dtype="int64")
    table = DynamicEmbedding(4, capacity, column=0, ttl_steps=50, name="ids")
    model = keras.Model(inputs, keras.layers.Dense(1)(table(inputs)))
    optimizer = keras.optimizers.Adam(0.05)
    optimizer.build(model.trainable_variables)

    def loss(y, p):
        return tf.square(tf.cast(y, tf.float32) - p[:, 0])

    step = LockstepStep(Trainable(model, optimizer, loss, loss, tf.TensorSpec((None, 1), tf.int64),
                                  tf.TensorSpec((None,), tf.float32)), 0, 1)
    forward = tf.function(lambda x: model(x, training=False))
    no_stats = np.zeros(0, np.float32)
    curve, head_errors, seen = [], [], 0
    #: which IDs appeared: a bitmap allocated up front, so counting them adds no memory
    appeared = np.zeros(ids, bool)
    start = time.perf_counter()
    for x, y, ranks in stream(events, ids, batch):
        predicted = forward(tf.constant(x)).numpy()[:, 0]  # before learning: prequential
        head = ranks < HEAD
        head_errors.append(((predicted - y)[head] ** 2).tolist())
        step.step(x, y, lambda: no_stats)
        appeared[x[:, 0]] = True
        seen += len(x)
        if seen % every < batch:
            counts = table.counters()
            errors = [e for part in head_errors for e in part]
            curve.append({"events": seen, "rss_mb": round(rss_mb(), 1),
                          "head_mse": round(float(np.mean(errors)), 4) if errors else None,
                          "events_per_s": round(seen / (time.perf_counter() - start)),
                          **counts})
            head_errors = []
            print(json.dumps(curve[-1]), flush=True)
    distinct = int(appeared.sum())
    return {"events": events, "ids": ids, "capacity": capacity, "batch": batch,
            "distinct_ids": distinct, "curve": curve}


def rss_mb() -> float:
    """The process's resident memory now (Linux: /proc/self/statm)."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * resource.getpagesize() / 2**20


def flat_within(curve: list[dict]) -> float:
    """The RSS spread over the last half of the stream, as a fraction of its mean."""
    tail = [p["rss_mb"] for p in curve[len(curve) // 2:]]
    return (max(tail) - min(tail)) / (sum(tail) / len(tail))


def draw_memory_curve(result: dict, path: Path) -> None:
    """RSS and the table's rows and evictions against events (matplotlib: a bench extra)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curve = result["curve"]
    events = [p["events"] / 1e6 for p in curve]
    figure, (memory, table) = plt.subplots(2, 1, figsize=(7, 5.5), sharex=True)
    memory.plot(events, [p["rss_mb"] for p in curve], marker="o", color="tab:blue")
    memory.set_ylabel("RSS (MB)")
    memory.set_ylim(0, max(p["rss_mb"] for p in curve) * 1.15)
    memory.set_title(f"DynamicEmbedding, capacity {result['capacity']:,}:\n"
                     f"{result['distinct_ids']:,} distinct IDs in {result['events']:,} events",
                     fontsize=10)
    table.plot(events, [p["size"] / 1e3 for p in curve], label="rows owned", color="tab:green")
    table.plot(events, [p["evictions"] / 1e3 for p in curve], label="evictions so far",
               color="tab:red")
    table.set_ylabel("thousands")
    table.set_xlabel("events (millions)")
    table.legend(loc="upper left")
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=5_000_000)
    parser.add_argument("--ids", type=int, default=2_000_000)
    parser.add_argument("--capacity", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--every", type=int, default=250_000, help="a curve point every N")
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args(argv)
    result = run(args.events, args.ids, args.capacity, args.batch, args.every)
    result["rss_spread_last_half"] = round(flat_within(result["curve"]), 4)
    write_results(args.out, result)
    draw_memory_curve(result, Path(args.out).with_suffix(".png"))
    last = result["curve"][-1]
    print(f"{result['distinct_ids']:,} distinct IDs; table rows {last['size']:,} of "
          f"{args.capacity:,}; inserts {last['inserts']:,}, "
          f"evictions {last['evictions']:,}; RSS spread over the last half "
          f"{100 * result['rss_spread_last_half']:.1f}%; head MSE at the end {last['head_mse']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
