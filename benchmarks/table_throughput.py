"""What a dynamic table costs against a fixed one: the same two-tower model (a user and an
item table of 32 wide, their dot product) with two `DynamicEmbedding`s, and with two
`keras.layers.Embedding`s sized to the whole ID space, trained on the same stream through
the same lockstep step (one rank, in-process), events/s after a warm-up.

    python -m benchmarks.table_throughput [--batch 256 --events 60000 --repeats 5]

Each figure is the median of `--repeats` runs, the three kinds interleaved run by run (one
run of each swung by up to 1.7x here).

Two ID spaces: MovieLens-100K's (943 users, 1,682 movies, the ratings in time order) and a
generated one 100x wider (100,000 users and 20,000 items, Zipf popularity), where a fixed
table is large and a dynamic one holds only what the stream touched.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from benchmarks.common import write_results
from hvd_online.model.dynamic_embedding import DynamicEmbedding
from hvd_online.sync.steps import LockstepStep, Trainable

RESULTS = Path(__file__).resolve().parent / "results" / "table_throughput.json"
DIM = 32


def two_towers(users: int, items: int, dynamic: str | None) -> keras.Model:
    """`dynamic`: the tables' optimizer ("adam", "sgd"), or None for fixed Embeddings."""
    ids = keras.Input((2,), dtype="int64")
    if dynamic:
        user = DynamicEmbedding(DIM, users, column=0, optimizer=dynamic)(ids)
        item = DynamicEmbedding(DIM, items, column=1, optimizer=dynamic)(ids)
    else:
        user = keras.layers.Embedding(users, DIM)(ids[:, 0])
        item = keras.layers.Embedding(items, DIM)(ids[:, 1])
    return keras.Model(ids, keras.layers.Dense(1)(keras.layers.Dot(axes=1)([user, item])))


def movielens_stream() -> tuple[np.ndarray, np.ndarray, int, int]:
    from examples.movielens.data import ratings

    r = ratings()
    x = np.stack([r["user"], r["item"]], axis=1).astype(np.int64)
    return x, r["rating"].astype(np.float32), int(x[:, 0].max()) + 1, int(x[:, 1].max()) + 1


def generated_stream(events: int, users: int = 100_000,
                     items: int = 20_000) -> tuple[np.ndarray, np.ndarray, int, int]:
    rng = np.random.default_rng(0)
    x = np.stack([np.minimum(rng.zipf(1.2, events) - 1, users - 1),
                  np.minimum(rng.zipf(1.2, events) - 1, items - 1)], axis=1).astype(np.int64)
    y = (((x[:, 0] * 7 + x[:, 1] * 13) % 5) + 1).astype(np.float32)
    return x, y, users, items


def events_per_s(model: keras.Model, x: np.ndarray, y: np.ndarray, batch: int,
                 warm_up: int) -> float:
    optimizer = keras.optimizers.Adam(0.005)
    optimizer.build(model.trainable_variables)
    loss = keras.losses.MeanSquaredError(reduction=None)

    def per_sample(labels: Any, predicted: Any) -> Any:
        return loss(labels[:, None], predicted)

    step = LockstepStep(Trainable(model, optimizer, per_sample, per_sample,
                                  tf.TensorSpec((None, 2), tf.int64),
                                  tf.TensorSpec((None,), tf.float32)), 0, 1)
    no_stats = np.zeros(0, np.float32)
    start = None
    for at in range(0, len(x), batch):
        if at >= warm_up and start is None:
            start, counted = time.perf_counter(), at
        step.step(x[at : at + batch], y[at : at + batch], lambda: no_stats)
    return (len(x) - counted) / (time.perf_counter() - start)


def _previous_round(path: Path) -> dict[str, Any]:
    """What the results file held before this run (its figures go beside this run's)."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--events", type=int, default=60_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args(argv)
    warm_up = 20 * args.batch
    results: dict[str, dict[str, Any]] = {}
    for name, (x, y, users, items) in {"MovieLens-100K": movielens_stream(),
                                       "generated, 100k x 20k IDs":
                                           generated_stream(args.events)}.items():
        x, y = x[: args.events], y[: args.events]
        runs: dict[str, list[float]] = {"fixed": [], "adam": [], "sgd": []}
        for _ in range(args.repeats):
            for kind, seen in runs.items():
                keras.utils.set_random_seed(0)
                model = two_towers(users, items, None if kind == "fixed" else kind)
                seen.append(events_per_s(model, x, y, args.batch, warm_up))
        rates = {kind: round(float(np.median(seen))) for kind, seen in runs.items()}
        results[name] = {"users": users, "items": items, "events": len(x), **rates,
                         "runs": {kind: [round(r) for r in seen] for kind, seen in runs.items()},
                         "adam_vs_fixed": round(rates["adam"] / rates["fixed"], 3),
                         "sgd_vs_fixed": round(rates["sgd"] / rates["fixed"], 3)}
        print(json.dumps({name: results[name]}), flush=True)
    previous = _previous_round(Path(args.out))
    lines = ["| ID space | fixed Embeddings | dynamic, lazy Adam | dynamic, SGD | "
             "Adam vs fixed | SGD vs fixed | last round: Adam, SGD vs fixed |",
             "|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        before = previous.get("results", {}).get(name)
        last = (f"{before['adam_vs_fixed']:.2f}, {before['sgd_vs_fixed']:.2f}" if before
                else "-")
        lines.append(f"| {name} | {r['fixed']:,} | {r['adam']:,} | {r['sgd']:,} | "
                     f"{r['adam_vs_fixed']:.2f} | {r['sgd_vs_fixed']:.2f} | {last} |")
    table = "\n".join(lines)
    command = (f"python -m benchmarks.table_throughput --batch {args.batch} "
               f"--events {args.events} --repeats {args.repeats}")
    report = {"command": command, "settings": vars(args), "dim": DIM, "table": table,
              "results": results,
              "last_round": {"commit": previous.get("commit"),
                             "results": previous.get("results")}}
    write_results(args.out, report)
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
