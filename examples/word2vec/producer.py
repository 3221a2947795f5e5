"""Skip-gram records from sentences of word ids, made as gensim's Word2Vec makes its training
pairs: frequent words subsampled, a window shrunk at random for each center word, noise words
drawn from the unigram distribution raised to 0.75.

Two corpora:
- `generate`: a generated one with planted structure; the vocabulary is split into clusters
  and each sentence mostly uses words of one cluster, so nearest neighbours in the learned
  embedding should be words of the same cluster;
- `real_text`: Wikipedia and the King James Bible (`corpus.py`), `passes` times over.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from examples.word2vec.corpus import Vocabulary, sentences
from streams.schema import Schema


def cluster_of(word: np.ndarray | int, cluster_size: int) -> np.ndarray | int:
    return word // cluster_size


def noise_table(counts: np.ndarray) -> np.ndarray:
    """Cumulative unigram^0.75 distribution: noise words are its searchsorted draws."""
    weights = counts.astype(np.float64) ** 0.75
    return np.cumsum(weights) / weights.sum()


def keep_probability(counts: np.ndarray, sample: float) -> np.ndarray:
    """gensim's subsampling: a word of frequency f is kept with probability
    (sqrt(f / t) + 1) * t / f, t = sample * total words (at most 1)."""
    if not sample:
        return np.ones(len(counts))
    threshold = sample * counts.sum()
    return np.minimum(1.0, (np.sqrt(counts / threshold) + 1) * threshold / counts)


def skipgram_rows(schema: Schema, corpus: list[np.ndarray], window: int, negatives: int,
                  noise: np.ndarray, keep: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Every (center, context) pair of `corpus` (sentences of word ids), shuffled, each with
    `negatives` noise words (`id` is left for the caller)."""
    kept = [s[rng.random(len(s)) < keep[s]] for s in corpus]
    words = np.concatenate(kept) if kept else np.zeros(0, np.int32)
    sentence = np.repeat(np.arange(len(kept)), [len(s) for s in kept])
    reach = rng.integers(1, window + 1, size=len(words))  # each center's shrunk window
    centers, contexts = [], []
    for offset in range(1, window + 1):
        same = sentence[offset:] == sentence[:-offset]
        left, right = np.arange(len(words) - offset), np.arange(offset, len(words))
        for center, context in ((left, right), (right, left)):
            use = same & (reach[center] >= offset)
            centers.append(words[center[use]])
            contexts.append(words[context[use]])
    center, context = np.concatenate(centers), np.concatenate(contexts)
    order = rng.permutation(len(center))
    rows = np.zeros(len(center), dtype=schema.dtype)
    rows["words"][:, 0] = center[order]
    rows["words"][:, 1] = context[order]
    drawn = np.searchsorted(noise, rng.random((len(center), negatives)))
    rows["words"][:, 2:] = np.minimum(drawn, len(noise) - 1)
    rows["label"][:, 0] = 1.0
    return rows


def generate(schema: Schema, vocabulary: int = 200, clusters: int = 8, sentence: int = 8,
             window: int = 2, negatives: int = 2, noise: float = 0.1, seed: int = 0,
             chunk_sentences: int = 100) -> Iterator[np.ndarray]:
    """The planted corpus, endless."""
    rng = np.random.default_rng(seed)
    size = vocabulary // clusters
    uniform = np.arange(1, vocabulary + 1) / vocabulary
    keep_all = np.ones(vocabulary)
    next_id = 0
    while True:
        topic = rng.integers(0, clusters, size=chunk_sentences)
        words = topic[:, None] * size + rng.integers(0, size, size=(chunk_sentences, sentence))
        noisy = rng.random(words.shape) < noise
        words[noisy] = rng.integers(0, vocabulary, size=int(noisy.sum()))
        rows = skipgram_rows(schema, list(words.astype(np.int32)), window, negatives, uniform,
                             keep_all, rng)
        rows["id"] = np.arange(next_id, next_id + len(rows))
        next_id += len(rows)
        yield rows


def real_text(schema: Schema, min_count: int = 5, window: int = 5, negatives: int = 5,
              sample: float = 1e-3, passes: int = 1, limit_sentences: int = 0, seed: int = 0,
              chunk_sentences: int = 2000) -> Iterator[np.ndarray]:
    """The real-text corpus `passes` times over, in order; pairs shuffled within each chunk
    of sentences (a stream's shuffle buffer). The template's vocabulary must be the corpus'
    (`python -m examples.word2vec.evaluate --vocabulary`)."""
    text = sentences(limit_sentences)
    vocabulary = Vocabulary(text, min_count)
    if schema.dtype["words"].shape != (2 + negatives,):
        msg = f"the template's negatives must be produce.params.negatives = {negatives}"
        raise ValueError(msg)
    corpus = vocabulary.encode(text)
    noise, keep = noise_table(vocabulary.counts), keep_probability(vocabulary.counts, sample)
    rng = np.random.default_rng(seed)
    next_id = 0
    for _ in range(passes):
        for start in range(0, len(corpus), chunk_sentences):
            rows = skipgram_rows(schema, corpus[start:start + chunk_sentences], window,
                                 negatives, noise, keep, rng)
            rows["id"] = np.arange(next_id, next_id + len(rows))
            next_id += len(rows)
            yield rows
