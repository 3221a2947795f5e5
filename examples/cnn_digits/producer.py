"""Streams scikit-learn's digits (bundled with the package: no download) as 8x8 images.

The data set is split once, with a fixed seed, into a training part (streamed, reshuffled
each pass) and a held-out part that the stream never contains (used by evaluate.py).
"""

from collections.abc import Iterator

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from streams.schema import Schema


def split(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    digits = load_digits()
    images = (digits.images / 16.0).astype("f4")[..., None]
    return train_test_split(images, digits.target.astype("i4"), test_size=0.2,
                            random_state=seed, stratify=digits.target)


def generate(schema: Schema, seed: int = 0, chunk: int = 500) -> Iterator[np.ndarray]:
    x_train, _, y_train, _ = split(seed)
    rng = np.random.default_rng(seed)
    next_id = 0
    while True:  # one pass over the training part after another, reshuffled
        order = rng.permutation(len(x_train))
        for start in range(0, len(order), chunk):
            index = order[start : start + chunk]
            rows = np.zeros(len(index), dtype=schema.dtype)
            rows["id"] = np.arange(next_id, next_id + len(index))
            rows["image"] = x_train[index]
            rows["label"] = y_train[index]
            next_id += len(index)
            yield rows
