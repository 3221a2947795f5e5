"""A generated corpus with planted structure: the vocabulary is split into clusters and each
sentence mostly uses words of one cluster. Streams skip-gram pairs (window 2) plus negative
samples, so nearest neighbours in the learned embedding should be words of the same cluster."""

from collections.abc import Iterator

import numpy as np

from streams.schema import Schema


def cluster_of(word: np.ndarray | int, cluster_size: int) -> np.ndarray | int:
    return word // cluster_size


def generate(schema: Schema, vocabulary: int = 200, clusters: int = 8, sentence: int = 8,
             window: int = 2, negatives: int = 2, noise: float = 0.1, seed: int = 0,
             chunk_sentences: int = 100) -> Iterator[np.ndarray]:
    rng = np.random.default_rng(seed)
    size = vocabulary // clusters
    next_id = 0
    while True:
        topic = rng.integers(0, clusters, size=chunk_sentences)
        words = topic[:, None] * size + rng.integers(0, size, size=(chunk_sentences, sentence))
        noisy = rng.random(words.shape) < noise
        words[noisy] = rng.integers(0, vocabulary, size=int(noisy.sum()))
        centers, contexts = [], []
        for offset in range(1, window + 1):  # pairs in both directions within the window
            centers += [words[:, :-offset].ravel(), words[:, offset:].ravel()]
            contexts += [words[:, offset:].ravel(), words[:, :-offset].ravel()]
        center = np.concatenate(centers)
        context = np.concatenate(contexts)
        n = len(center)
        negative_center = np.repeat(center, negatives)
        negative_context = rng.integers(0, vocabulary, size=n * negatives)
        rows = np.zeros(n * (1 + negatives), dtype=schema.dtype)
        rows["pair"][:, 0] = np.concatenate([center, negative_center])
        rows["pair"][:, 1] = np.concatenate([context, negative_context])
        rows["label"][:n] = 1.0
        rows = rows[rng.permutation(len(rows))]
        rows["id"] = np.arange(next_id, next_id + len(rows))
        next_id += len(rows)
        yield rows
