"""Impressions at a fixed rate; each is clicked with a probability that depends nonlinearly
on its features, after a lognormal delay (median `median_delay_s`): some clicks come after
the join window, and unclicked impressions get no label at all.

`outcomes(...)` regenerates the same stream's true clicks for evaluation.
"""

from collections.abc import Iterator

import numpy as np

from streams.schema import EventSchema, LabelSchema


def click_probability(x: np.ndarray) -> np.ndarray:
    logit = 1.5 * x[:, 0] - 1.2 * x[:, 1] * x[:, 2] + 0.8 * np.abs(x[:, 3]) - 2.0
    return 1.0 / (1.0 + np.exp(-logit))


def stream(inputs: int, seed: int, chunk: int, rate: float, median_delay_s: float,
           delay_sigma: float) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """(ids, event time offsets ms, features, click delay ms or -1), chunk by chunk."""
    rng = np.random.default_rng(seed)
    first = 0
    while True:
        ids = np.arange(first, first + chunk)
        times = (ids * 1000.0 / rate).astype(np.int64)
        x = rng.normal(size=(chunk, inputs)).astype("f4")
        clicked = rng.random(chunk) < click_probability(x)
        delay = rng.lognormal(np.log(median_delay_s * 1000), delay_sigma, chunk).astype(np.int64)
        yield ids, times, x, np.where(clicked, delay, -1)
        first += chunk


def generate(event_schema: EventSchema, label_schema: LabelSchema, seed: int = 0,
             chunk: int = 500, rate: float = 1000.0, median_delay_s: float = 2.0,
             delay_sigma: float = 1.0) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    inputs = event_schema.dtype["x"].shape[0]
    for ids, times, x, delay in stream(inputs, seed, chunk, rate, median_delay_s, delay_sigma):
        events = np.zeros(len(ids), event_schema.dtype)
        events["id"], events["t"], events["x"] = ids, times, x
        hit = delay >= 0
        labels = np.zeros(int(hit.sum()), label_schema.dtype)
        labels["id"], labels["t"], labels["y"] = ids[hit], times[hit] + delay[hit], 1.0
        yield events, labels


def outcomes(count: int, inputs: int = 8, seed: int = 0, chunk: int = 500, rate: float = 1000.0,
             median_delay_s: float = 2.0, delay_sigma: float = 1.0) -> dict[str, np.ndarray]:
    """The first `count` impressions' features, click delays (-1: never) and true clicks."""
    parts = []
    for part in stream(inputs, seed, chunk, rate, median_delay_s, delay_sigma):
        parts.append(part)
        if sum(len(p[0]) for p in parts) >= count:
            break
    ids, times, x, delay = (np.concatenate(column)[:count] for column in zip(*parts,
                                                                              strict=True))
    return {"id": ids, "x": x, "delay_ms": delay, "clicked": delay >= 0}
