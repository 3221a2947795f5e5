"""MovieLens-100K as a stream: every rating in timestamp order, keyed by its position in that
order so a ledger can check each is trained once.

- `generate`: labelled records (config.toml), `produce.rate` compresses time.
- `generate_joined`: a raw event stream (config-joined.toml): the event (user, movie) at its
  time in the compressed timeline, its rating on the labels topic after a lognormal delay
  (median `median_delay_s`), so the event is predicted before its rating is known.
"""

from collections.abc import Iterator

import numpy as np

from examples.movielens.data import ratings
from streams.schema import EventSchema, LabelSchema, Schema


def generate(schema: Schema, chunk: int = 1000) -> Iterator[np.ndarray]:
    stream = ratings()
    for start in range(0, len(stream), chunk):
        part = stream[start : start + chunk]
        rows = np.zeros(len(part), dtype=schema.dtype)
        rows["key"] = np.arange(start, start + len(part))
        rows["ids"][:, 0], rows["ids"][:, 1] = part["user"], part["item"]
        rows["rating"] = part["rating"]
        yield rows


def generate_joined(event_schema: EventSchema, label_schema: LabelSchema, rate: float = 2000.0,
                    median_delay_s: float = 1.0, delay_sigma: float = 0.5, seed: int = 0,
                    chunk: int = 1000) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    stream = ratings()
    rng = np.random.default_rng(seed)
    for start in range(0, len(stream), chunk):
        part = stream[start : start + chunk]
        keys = np.arange(start, start + len(part))
        times = (keys * 1000.0 / rate).astype(np.int64)  # time order kept, compressed
        delay = rng.lognormal(np.log(median_delay_s * 1000), delay_sigma, len(part))
        events = np.zeros(len(part), event_schema.dtype)
        events["key"], events["t"] = keys, times
        events["ids"][:, 0], events["ids"][:, 1] = part["user"], part["item"]
        labels = np.zeros(len(part), label_schema.dtype)
        labels["key"], labels["t"] = keys, times + delay.astype(np.int64)
        labels["rating"] = part["rating"]
        yield events, labels
