"""Stream generators for integration tests (named from test configs as file.py:function)."""

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
