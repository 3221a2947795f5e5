"""The quality benchmark's streams, as `[produce] generator`s: binary classification records
(id, x, y) of `examples/drift`'s template. River's synthetic generators need River (a
benchmark-only extra); their features in [0, 1] (SEA: [0, 10]) are mapped to [-1, 1]."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import numpy as np

from examples.drift.producer import samples as hyperplane_samples
from streams.schema import Schema

#: stream -> (features, where its drift starts or None)
STREAMS = {
    "drift": (10, 60000),        # examples/drift: the hyperplane turns 90 degrees
    "sea": (3, 50000),           # River SEA, variant 0 then 3: abrupt
    "hyperplane": (10, None),    # River Hyperplane, mag_change 0.001: drifts all the time
    "stationary": (10, None),    # examples/drift with no turn: false alarms are the risk
}


def _river_rows(schema: Schema, stream: str, count: int, drift_at: int | None,
                seed: int) -> np.ndarray:
    from river.datasets import synth

    if stream == "sea":
        # SEA variant 0, then variant 3 from `drift_at` on: an abrupt drift at a known
        # position. (River 0.22's ConceptDriftStream does this with a sigmoid of `width`, but
        # math.exp overflows in it when width is small against the position.)
        assert drift_at is not None
        source = itertools.chain(synth.SEA(variant=0, seed=seed).take(drift_at),
                                 synth.SEA(variant=3, seed=seed + 1).take(count - drift_at))
        scale, shift = 0.2, 1.0  # [0, 10] -> [-1, 1]
    else:
        source = synth.Hyperplane(seed=seed, n_features=10, n_drift_features=5,
                                  mag_change=0.001, noise_percentage=0.0, sigma=0.1)
        scale, shift = 2.0, 1.0  # [0, 1] -> [-1, 1]
    rows = np.zeros(count, dtype=schema.dtype)
    rows["id"] = np.arange(count)
    for i, (x, y) in enumerate(itertools.islice(source, count)):
        rows["x"][i] = np.fromiter(x.values(), "f4") * scale - shift
        rows["y"][i] = float(y)
    return rows


def stream_rows(schema: Schema, stream: str, count: int, drift_at: int | None = None,
                seed: int = 0) -> np.ndarray:
    """All `count` records of `stream`, in order (`drift_at` overrides the default)."""
    drift_at = drift_at if drift_at is not None else STREAMS[stream][1]
    if stream == "drift":
        return hyperplane_samples(schema, 0, count, drift_at or count, 90.0, seed)
    if stream == "stationary":
        return hyperplane_samples(schema, 0, count, count, 0.0, seed)
    return _river_rows(schema, stream, count, drift_at, seed)


def generate(schema: Schema, stream: str = "drift", count: int = 100000,
             drift_at: int | None = None, seed: int = 0,
             chunk: int = 4000) -> Iterator[np.ndarray]:
    rows = stream_rows(schema, stream, count, drift_at, seed)
    for start in range(0, count, chunk):
        yield rows[start:start + chunk]
