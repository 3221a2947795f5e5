"""MovieLens-100K as a stream: every rating in timestamp order (`produce.rate` compresses
time), keyed by its position in that order so a ledger can check each is trained once."""

from collections.abc import Iterator

import numpy as np

from examples.movielens.data import ratings
from streams.schema import Schema


def generate(schema: Schema, chunk: int = 1000) -> Iterator[np.ndarray]:
    stream = ratings()
    for start in range(0, len(stream), chunk):
        part = stream[start : start + chunk]
        rows = np.zeros(len(part), dtype=schema.dtype)
        rows["key"] = np.arange(start, start + len(part))
        rows["ids"][:, 0], rows["ids"][:, 1] = part["user"], part["item"]
        rows["rating"] = part["rating"]
        yield rows
