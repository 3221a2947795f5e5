"""The demo stream: x ~ N(0, 1), y = a smooth nonlinear function of x plus a little noise.

The function is fixed by `function_seed`, so every run learns the same target; `seed`
changes only the samples. Ids run from `first_id`, so tests can check exactly-once delivery.
"""

from collections.abc import Iterator

import numpy as np

from streams.schema import Schema


def target(x: np.ndarray, function_seed: int = 7) -> np.ndarray:
    rng = np.random.default_rng(function_seed)
    w = rng.normal(size=(x.shape[1], 2)) / np.sqrt(x.shape[1])
    h = x @ w
    return (np.sin(2.0 * h[:, 0]) + 0.5 * h[:, 1] ** 2 + 0.3 * h[:, 0] * h[:, 1]).astype("f4")


def generate(schema: Schema, seed: int = 0, chunk: int = 1000, first_id: int = 0,
             noise: float = 0.05) -> Iterator[np.ndarray]:
    rng = np.random.default_rng(seed)
    inputs = schema.feature_shape[0]
    next_id = first_id
    while True:
        rows = np.zeros(chunk, dtype=schema.dtype)
        rows["id"] = np.arange(next_id, next_id + chunk)
        rows["x"] = rng.normal(size=(chunk, inputs))
        rows["y"] = target(rows["x"]) + noise * rng.normal(size=chunk)
        next_id += chunk
        yield rows
