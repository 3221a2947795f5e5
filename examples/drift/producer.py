"""Rotating-hyperplane stream with one abrupt drift: label = [x . w > 0], and at sample
`drift_at` the hyperplane turns by `angle_deg` (90 degrees: half the labels change)."""

from collections.abc import Iterator

import numpy as np

from streams.schema import Schema


def concepts(inputs: int, angle_deg: float, seed: int = 11) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    w1 = rng.normal(size=inputs)
    w1 /= np.linalg.norm(w1)
    u = rng.normal(size=inputs)
    u -= u @ w1 * w1
    u /= np.linalg.norm(u)
    angle = np.deg2rad(angle_deg)
    return w1, np.cos(angle) * w1 + np.sin(angle) * u


def label(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    return (x @ w > 0).astype("f4")


def samples(schema: Schema, start: int, count: int, drift_at: int, angle_deg: float,
            seed: int) -> np.ndarray:
    """Records `start .. start+count` of the stream (deterministic per id range)."""
    inputs = schema.feature_shape[0]
    w1, w2 = concepts(inputs, angle_deg)
    rng = np.random.default_rng([seed, start])
    rows = np.zeros(count, dtype=schema.dtype)
    rows["id"] = np.arange(start, start + count)
    rows["x"] = rng.uniform(-1, 1, size=(count, inputs))
    after = rows["id"] >= drift_at
    rows["y"] = np.where(after, label(rows["x"], w2), label(rows["x"], w1))
    return rows


def generate(schema: Schema, drift_at: int = 60000, angle_deg: float = 90.0, seed: int = 0,
             chunk: int = 1000) -> Iterator[np.ndarray]:
    start = 0
    while True:
        yield samples(schema, start, chunk, drift_at, angle_deg, seed)
        start += chunk
