"""Stream generators of the integration tests and the soak (named from configs as
file.py:function)."""

from collections.abc import Iterator

import numpy as np

from examples.mlp.producer import target
from streams.schema import Schema


def on_partitions(schema: Schema, partitions: int = 4, used: tuple[int, ...] = (0, 1, 2, 3),
                  chunk: int = 500, seed: int = 0) -> Iterator[np.ndarray]:
    """MLP samples whose ids route only to the `used` partitions (id % partitions)."""
    rng = np.random.default_rng(seed)
    ids = (i for i in range(10**12) if i % partitions in used)
    while True:
        rows = np.zeros(chunk, dtype=schema.dtype)
        rows["id"] = [next(ids) for _ in range(chunk)]
        rows["x"] = rng.normal(size=(chunk, schema.feature_shape[0]))
        rows["y"] = target(rows["x"])
        yield rows


#: the stream the fault tests use: this share of its records on partition HOT (a hot key range)
HOT, SHARE = 1, 0.6


def skewed_ids(count: int, partitions: int = 4, hot: int = HOT, share: float = SHARE,
               seed: int = 0, first: int = 0) -> np.ndarray:
    """Ids `first` .. `first + count - 1` of a stream where `share` route to partition `hot`
    (id % partitions): the i-th is `partitions * i + p`, p drawn skewed from a per-block
    random stream, so ids are distinct, in stream order, and any slice is computed alone."""
    block = 4096
    out = []
    for b in range(first // block, (first + count - 1) // block + 1 if count else 0):
        u = np.random.default_rng([seed, b]).random(block)
        cold = [p for p in range(partitions) if p != hot]
        index = np.minimum(((u - share) / (1 - share) * len(cold)).astype(int), len(cold) - 1)
        chosen = np.where(u < share, hot, np.array(cold)[np.maximum(index, 0)])
        out.append(partitions * (b * block + np.arange(block, dtype=np.int64)) + chosen)
    ids = np.concatenate(out) if out else np.zeros(0, np.int64)
    start = first - (first // block) * block
    return ids[start:start + count]


def skewed_clicks(event_schema, label_schema, partitions: int = 4, hot: int = HOT,
                  share: float = SHARE, **params):
    """The clicks stream (examples/clicks) with `share` of its events (and their clicks) on
    partition `hot`."""
    from examples.clicks.producer import generate

    for events, labels in generate(event_schema, label_schema, **params):
        first, count = int(events["id"][0]), len(events)
        ids = skewed_ids(count, partitions, hot, share, params.get("seed", 0), first)
        labels["id"] = ids[labels["id"] - first]
        events["id"] = ids
        yield events, labels


def skewed_samples(schema: Schema, partitions: int = 4, hot: int = HOT, share: float = SHARE,
                   chunk: int = 500, seed: int = 0) -> Iterator[np.ndarray]:
    """MLP samples with `share` of them on partition `hot` (ids from `skewed_ids`)."""
    rng = np.random.default_rng(seed)
    for first in range(0, 10**12, chunk):
        rows = np.zeros(chunk, dtype=schema.dtype)
        rows["id"] = skewed_ids(chunk, partitions, hot, share, seed, first)
        rows["x"] = rng.normal(size=(chunk, schema.feature_shape[0]))
        rows["y"] = target(rows["x"])
        yield rows
