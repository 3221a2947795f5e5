"""The quality benchmark's streams, as `[produce] generator`s of `examples/drift`'s template:
records (id, x, y) with the class index in y.

The first four were here before: the drift example's hyperplane (turned, or not), River's SEA
and River's Hyperplane. The eight after them are River generators nobody here tuned on: binary
and multi-class, numeric and categorical attributes (one-hot), abrupt and gradual drift, with
and without label noise. River is a benchmark-only extra. Numeric attributes are mapped to
[-1, 1] by the ranges their generator draws from (RandomRBF's points spill over: Gaussians
around centroids in [0, 1]); a categorical attribute becomes one 0/1 column per value.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from examples.drift.producer import samples as hyperplane_samples
from streams.schema import Schema

#: a gradual drift's width, as River's ConceptDriftStream has it: the new concept's share rises
#: from 12% to 88% over this many samples, centred this many after the drift point (2% there)
GRADUAL_WIDTH = 10000


@dataclass(frozen=True)
class Stream:
    features: int
    classes: int
    total: int
    #: where the drift starts (a gradual one is over GRADUAL_WIDTH samples later), or None
    drift_at: int | None
    #: "abrupt", "gradual" or "stationary": which quality target applies
    kind: str
    what: str


STREAMS = {
    "drift": Stream(10, 2, 60000, 30000, "abrupt",
                    "examples/drift: a hyperplane turned 90 degrees"),
    "sea": Stream(3, 2, 60000, 25000, "abrupt", "River SEA, variant 0 then 3"),
    "hyperplane": Stream(10, 2, 60000, None, "gradual",
                         "River Hyperplane, mag_change 0.001: drifts all the time"),
    "stationary": Stream(10, 2, 60000, None, "stationary",
                         "examples/drift with no turn: false alarms are the risk"),
    "sea_noise": Stream(3, 2, 60000, 30000, "abrupt",
                        "River SEA, variant 0 then 3, 10% label noise"),
    "sine": Stream(2, 2, 60000, 30000, "abrupt",
                   "River Sine, function 0 then 2 (a curved boundary)"),
    "agrawal": Stream(40, 2, 60000, 30000, "abrupt",
                      "River Agrawal, function 1 then 2; 3 categorical attributes one-hot"),
    "agrawal_gradual": Stream(40, 2, 60000, 20000, "gradual",
                              "River Agrawal, function 0 to 2, centred 10,000 after the "
                              "drift point, width 10,000; "
                              "categorical one-hot; 5% label noise"),
    "stagger": Stream(9, 2, 60000, 30000, "abrupt",
                      "River STAGGER, function 0 then 2; all attributes categorical, one-hot"),
    "led": Stream(24, 10, 60000, 30000, "abrupt",
                  "River LEDDrift, 10 classes, 17 irrelevant attributes, 10% noise; "
                  "7 attributes swapped at the drift"),
    "rbf": Stream(10, 5, 60000, None, "gradual",
                  "River RandomRBFDrift, 5 classes, 50 centroids moving at 0.0001"),
    "hyperplane_noise": Stream(10, 2, 60000, None, "gradual",
                               "River Hyperplane, mag_change 0.001, 10% label noise"),
}

Sample = tuple[dict, object]


def _scaled(low: float, high: float) -> Callable[[float], float]:
    return lambda v: 2 * (v - low) / (high - low) - 1


def _one_hot(values: Iterable[int]) -> Callable[[int], list[float]]:
    values = list(values)
    return lambda v: [float(v == value) for value in values]


def _encoder(name: str) -> Callable[[dict], list[float]]:
    """River's attribute dict -> the record's feature vector."""
    if name in ("sea", "sea_noise"):
        return lambda x: [v / 5 - 1 for v in x.values()]  # [0, 10]
    if name in ("agrawal", "agrawal_gradual"):
        # the ranges River 0.22's code draws from (its docstring says 75k and 50-100k x zipcode)
        numeric = {"salary": _scaled(20000, 150000), "commission": _scaled(0, 85000),
                   "age": _scaled(20, 80), "hvalue": _scaled(0, 1200000),
                   "hyears": _scaled(1, 30), "loan": _scaled(0, 500000)}
        categorical = {"elevel": _one_hot(range(5)), "car": _one_hot(range(1, 21)),
                       "zipcode": _one_hot(range(9))}
        return lambda x: ([f(x[k]) for k, f in numeric.items()]
                          + [v for k, f in categorical.items() for v in f(x[k])])
    if name == "stagger":
        hot = _one_hot(range(3))
        return lambda x: [v for key in ("size", "color", "shape") for v in hot(x[key])]
    return lambda x: [2 * float(v) - 1 for v in x.values()]  # [0, 1], or LED's 0/1


def _abrupt(before: Iterable[Sample], after: Iterable[Sample], drift_at: int) -> Iterator[Sample]:
    return itertools.chain(itertools.islice(before, drift_at), after)


def _gradual(before: Iterable[Sample], after: Iterable[Sample], drift_at: int,
             seed: int) -> Iterator[Sample]:
    """River's ConceptDriftStream, written out: sample i comes from the new concept with a
    probability rising along a sigmoid centred GRADUAL_WIDTH after `drift_at`. (River 0.22's
    own overflows math.exp when the width is small against the position.)"""
    rng = np.random.default_rng([seed, 1])
    before, after = iter(before), iter(after)
    centre = drift_at + GRADUAL_WIDTH
    for i in itertools.count():
        new = rng.random() < 1 / (1 + np.exp(-4 * (i - centre) / GRADUAL_WIDTH))
        yield next(after if new else before)


def _flipped(source: Iterable[Sample], rate: float, seed: int) -> Iterator[Sample]:
    """Binary labels flipped with probability `rate` (label noise)."""
    rng = np.random.default_rng([seed, 2])
    for x, y in source:
        yield x, (not y) if rng.random() < rate else y


def _river_source(name: str, drift_at: int | None, seed: int) -> Iterator[Sample]:
    from river.datasets import synth

    if name in ("sea", "sea_noise"):
        noise = 0.1 if name == "sea_noise" else 0.0
        return _abrupt(synth.SEA(variant=0, noise=noise, seed=seed),
                       synth.SEA(variant=3, noise=noise, seed=seed + 1), drift_at)
    if name == "sine":
        return _abrupt(synth.Sine(classification_function=0, seed=seed),
                       synth.Sine(classification_function=2, seed=seed + 1), drift_at)
    if name == "agrawal":
        return _abrupt(synth.Agrawal(classification_function=1, seed=seed),
                       synth.Agrawal(classification_function=2, seed=seed + 1), drift_at)
    if name == "agrawal_gradual":
        mixed = _gradual(synth.Agrawal(classification_function=0, seed=seed),
                         synth.Agrawal(classification_function=2, seed=seed + 1), drift_at, seed)
        return _flipped(mixed, 0.05, seed)
    if name == "stagger":
        return _abrupt(synth.STAGGER(classification_function=0, seed=seed),
                       synth.STAGGER(classification_function=2, seed=seed + 1), drift_at)
    if name == "led":
        def led(seed: int, swapped: int) -> Iterable[Sample]:
            return synth.LEDDrift(seed=seed, noise_percentage=0.1, irrelevant_features=True,
                                  n_drift_features=swapped)
        return _abrupt(led(seed, 0), led(seed + 1, 7), drift_at)
    if name == "rbf":
        return iter(synth.RandomRBFDrift(seed_model=seed, seed_sample=seed + 1, n_classes=5,
                                         n_features=10, n_centroids=50, change_speed=0.0001,
                                         n_drift_centroids=50))
    if name in ("hyperplane", "hyperplane_noise"):
        noise = 0.1 if name == "hyperplane_noise" else 0.0
        return iter(synth.Hyperplane(seed=seed, n_features=10, n_drift_features=5,
                                     mag_change=0.001, noise_percentage=noise, sigma=0.1))
    raise ValueError(f"unknown stream {name!r}; one of {', '.join(STREAMS)}")


def stream_rows(schema: Schema, stream: str, count: int, drift_at: int | None = None,
                seed: int = 0) -> np.ndarray:
    """All `count` records of `stream`, in order (`drift_at` overrides the default)."""
    drift_at = drift_at if drift_at is not None else STREAMS[stream].drift_at
    if stream == "drift":
        return hyperplane_samples(schema, 0, count, drift_at or count, 90.0, seed)
    if stream == "stationary":
        return hyperplane_samples(schema, 0, count, count, 0.0, seed)
    encode = _encoder(stream)
    rows = np.zeros(count, dtype=schema.dtype)
    rows["id"] = np.arange(count)
    for i, (x, y) in enumerate(itertools.islice(_river_source(stream, drift_at, seed), count)):
        rows["x"][i] = encode(x)
        rows["y"][i] = float(y)
    return rows


def generate(schema: Schema, stream: str = "drift", count: int = 100000,
             drift_at: int | None = None, seed: int = 0,
             chunk: int = 4000) -> Iterator[np.ndarray]:
    rows = stream_rows(schema, stream, count, drift_at, seed)
    for start in range(0, count, chunk):
        yield rows[start:start + chunk]
