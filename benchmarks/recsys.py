"""MovieLens-100K in time order, side by side: hvd-online's DynamicEmbedding template against
River's online recommenders, on the same records in the same order, prequentially (each
rating predicted before it is learnt), plus an offline model of the same template trained on
the first 80% by time and scored on the last 20%.

    python -m benchmarks.recsys [--out benchmarks/results/recsys.json]

hvd-online runs in-process here, one rank, through the same lockstep step and tables as
training (`hvd_online/sync/steps.py`), a window of `--batch` ratings per step: each window is
predicted with the weights before the step that learns from it. River learns one rating at a
time (its models' only mode).
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from benchmarks.common import write_results
from examples.movielens.data import ratings
from examples.movielens.model import RatingMF
from hvd_online.model.dynamic_embedding import dynamic_tables
from hvd_online.sync.steps import LockstepStep, Trainable

RESULTS = Path(__file__).resolve().parent / "results" / "recsys.json"
#: shuffled, so a rating's user or movie rarely repeats within a step (the tables' SGD adds
#: up a row's gradients within a step)
OFFLINE_BATCH = 32


def scores(errors: np.ndarray) -> dict[str, float]:
    """RMSE and MAE over the whole stream and over its last 20% (by time)."""
    tail = errors[int(0.8 * len(errors)):]
    return {"rmse": float(np.sqrt(np.mean(errors ** 2))), "mae": float(np.mean(np.abs(errors))),
            "rmse_last20": float(np.sqrt(np.mean(tail ** 2))),
            "mae_last20": float(np.mean(np.abs(tail)))}


def hvd_online_model(template: RatingMF, learning_rate: float) -> tuple[keras.Model,
                                                                           LockstepStep]:
    keras.utils.set_random_seed(0)
    model = template.build_model()
    optimizer = template.make_optimizer(learning_rate)
    optimizer.build(model.trainable_variables)
    step = LockstepStep(Trainable(model, optimizer, template.per_sample_loss,
                                  template.per_sample_metric, tf.TensorSpec((None, 2), tf.int64),
                                  tf.TensorSpec((None,), tf.float32)), 0, 1)
    return model, step


def run_hvd_online(stream: np.ndarray, batch: int, learning_rate: float,
                   dim: int) -> dict[str, Any]:
    template = RatingMF(dim=dim, capacity=4096, table_optimizer="sgd")
    model, step = hvd_online_model(template, learning_rate)
    x = np.stack([stream["user"], stream["item"]], axis=1)
    y = stream["rating"].astype(np.float32)
    errors = np.zeros(len(stream))
    no_stats = np.zeros(0, np.float32)
    forward = tf.function(lambda ids: model(ids, training=False))
    start = time.perf_counter()
    for at in range(0, len(stream), batch):
        xb, yb = x[at : at + batch], y[at : at + batch]
        # before the step: an ID seen for the first time has no row yet (the default row)
        errors[at : at + batch] = forward(tf.constant(xb)).numpy()[:, 0] - yb
        step.step(xb, yb, lambda: no_stats)
    rate = len(stream) / (time.perf_counter() - start)
    counters = {t.name: t.counters() for t in dynamic_tables(model)}
    return {**scores(errors), "samples_per_s": round(rate), "tables": counters}


def run_offline(stream: np.ndarray, epochs: int, learning_rate: float,
                dim: int) -> dict[str, Any]:
    """The same template trained on the first 80% (shuffled, `epochs` passes), scored on the
    last 20% without learning from it."""
    cut = int(0.8 * len(stream))
    template = RatingMF(dim=dim, capacity=4096, table_optimizer="sgd")
    model, step = hvd_online_model(template, learning_rate)
    x = np.stack([stream["user"], stream["item"]], axis=1)
    y = stream["rating"].astype(np.float32)
    rng = np.random.default_rng(0)
    no_stats = np.zeros(0, np.float32)
    for _ in range(epochs):
        order = rng.permutation(cut)
        for at in range(0, cut, OFFLINE_BATCH):
            picked = order[at : at + OFFLINE_BATCH]
            step.step(x[picked], y[picked], lambda: no_stats)
    errors = model(tf.constant(x[cut:]), training=False).numpy()[:, 0] - y[cut:]
    return {"rmse_last20": float(np.sqrt(np.mean(errors ** 2))),
            "mae_last20": float(np.mean(np.abs(errors)))}


def run_river(make: Any, stream: np.ndarray) -> dict[str, Any]:
    model = make()
    errors = np.zeros(len(stream))
    users, items = stream["user"].tolist(), stream["item"].tolist()
    start = time.perf_counter()
    for i, (user, item, rating) in enumerate(zip(users, items, stream["rating"].tolist(),
                                                 strict=True)):
        errors[i] = model.predict_one(user, item) - rating
        model.learn_one(user, item, rating)
    rate = len(stream) / (time.perf_counter() - start)
    return {**scores(errors), "samples_per_s": round(rate)}


def running_means(stream: np.ndarray) -> dict[str, dict[str, Any]]:
    """Prequential baselines: the global mean so far, and each user's mean so far (the
    global mean for a new user)."""
    total, count = 0.0, 0
    per_user: dict[int, list[float]] = {}
    glob, user_mean = np.zeros(len(stream)), np.zeros(len(stream))
    for i, (user, rating) in enumerate(zip(stream["user"].tolist(),
                                           stream["rating"].tolist(), strict=True)):
        mean = total / count if count else 3.5
        s = per_user.get(user)
        glob[i] = mean - rating
        user_mean[i] = (s[0] / s[1] if s else mean) - rating
        total, count = total + rating, count + 1
        per_user[user] = [s[0] + rating, s[1] + 1] if s else [rating, 1]
    return {"global mean so far": scores(glob), "user mean so far": scores(user_mean)}


def river_models() -> dict[str, Any]:
    from river import optim, reco

    return {
        "River BiasedMF": lambda: reco.BiasedMF(
            n_factors=10, bias_optimizer=optim.SGD(0.025), latent_optimizer=optim.SGD(0.05),
            latent_initializer=optim.initializers.Normal(mu=0.0, sigma=0.1, seed=73),
            l2_bias=0.0, l2_latent=0.0, seed=0),
        "River FunkMF": lambda: reco.FunkMF(
            n_factors=10, optimizer=optim.SGD(0.05),
            initializer=optim.initializers.Normal(mu=0.0, sigma=0.1, seed=73), seed=0),
        "River Baseline": lambda: reco.Baseline(optimizer=optim.SGD(0.005)),
    }


def table(results: dict[str, dict[str, Any]]) -> str:
    lines = ["| model | RMSE | MAE | RMSE last 20% | MAE last 20% | samples/s |",
             "|---|---|---|---|---|---|"]
    for name, r in results.items():
        cells = [f"{r[key]:.4f}" if key in r else "-"
                 for key in ("rmse", "mae", "rmse_last20", "mae_last20")]
        rate = f"{r['samples_per_s']:,}" if "samples_per_s" in r else "-"
        lines.append(f"| {name} | {' | '.join(cells)} | {rate} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(RESULTS))
    parser.add_argument("--batch", type=int, nargs="+", default=[8, 1],
                        help="ratings a step; one hvd-online row for each")
    parser.add_argument("--lr", type=float, default=0.001,
                        help="the model's (the global bias); the tables' are the template's")
    parser.add_argument("--dim", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--limit", type=int, default=0, help="first N ratings only (tests)")
    args = parser.parse_args(argv)
    stream = ratings()
    if args.limit:
        stream = stream[: args.limit]
    results: dict[str, dict[str, Any]] = {}
    for batch in args.batch:
        name = f"hvd-online DynamicEmbedding MF (1 rank, {batch} a step)"
        results[name] = run_hvd_online(stream, batch, args.lr, args.dim)
        print(name, json.dumps(results[name]), flush=True)
    for model_name, make in river_models().items():
        results[model_name] = run_river(make, stream)
    results.update(running_means(stream))
    results[f"offline, same template ({args.epochs} epochs on the first 80%)"] = run_offline(
        stream, args.epochs, args.lr, args.dim)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    report = {"ratings": len(stream), "settings": vars(args), "peak_rss_mb": round(peak),
              "results": results}
    write_results(args.out, report)
    print(table(results))
    print(f"peak RSS {peak:.0f} MB (the whole process: TensorFlow, River and the data)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
