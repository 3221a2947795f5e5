"""How good are the word vectors of a real-text run? WordSim-353 and SimLex-999 (Spearman of
cosine similarity against human scores) and the analogy set questions-words.txt (3CosAdd,
top 30,000 words), scored as gensim's `evaluate_word_pairs` / `evaluate_word_analogies` score
them: pairs or questions with a word outside the vocabulary are left out, case ignored.

    python -m examples.word2vec.evaluate examples/word2vec/real_text.toml
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from examples.word2vec.corpus import evaluation_file
from hvd_online.commands.finished_run import open_run
from hvd_online.model.template import ModelTemplate
from hvd_online.state.checkpoint import Checkpoint

#: gensim's default restrict_vocab is 300,000; the corpus has fewer words, so all are used
ANALOGY_VOCABULARY = 300000


def _ranks(values: np.ndarray) -> np.ndarray:
    """Ranks from 1, ties given their mean rank."""
    order = np.argsort(values, kind="stable")
    ranks = np.empty(len(values))
    ranks[order] = np.arange(1, len(values) + 1)
    for value in np.unique(values):
        tied = values == value
        ranks[tied] = ranks[tied].mean()
    return ranks


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(_ranks(a), _ranks(b))[0, 1])


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True).clip(1e-12)


def word_pairs(vectors: np.ndarray, words: list[str], path: Path) -> dict[str, float]:
    """Spearman of the pairs' cosine similarity against the human scores."""
    index = {w: i for i, w in enumerate(words)}
    unit = unit_rows(vectors)
    model, human, total = [], [], 0
    for line in path.read_text().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        a, b, score = line.lower().split("\t")[:3]
        total += 1
        if a in index and b in index:
            model.append(float(unit[index[a]] @ unit[index[b]]))
            human.append(float(score))
    return {"spearman": spearman(np.array(model), np.array(human)),
            "pairs": len(model), "oov_share": 1 - len(model) / total}


def analogies(vectors: np.ndarray, words: list[str], path: Path) -> dict[str, float]:
    """a : b :: c : ?  answered by the word nearest to b - a + c (unit vectors), a, b and c
    excluded; accuracy over the questions whose four words are all known."""
    words = words[:ANALOGY_VOCABULARY]
    index = {w: i for i, w in enumerate(words)}
    unit = unit_rows(vectors[:len(words)])
    questions = []
    for line in path.read_text().splitlines():
        if line.startswith(":"):
            continue
        quad = line.lower().split()
        if len(quad) == 4 and all(w in index for w in quad):
            questions.append([index[w] for w in quad])
    if not questions:
        return {"accuracy": 0.0, "questions": 0}
    q = np.array(questions)
    correct = 0
    for start in range(0, len(q), 1024):
        batch = q[start:start + 1024]
        target = unit_rows(unit[batch[:, 1]] - unit[batch[:, 0]] + unit[batch[:, 2]])
        scores = target @ unit.T
        rows = np.arange(len(batch))[:, None]
        scores[rows, batch[:, :3]] = -np.inf
        correct += int(np.sum(np.argmax(scores, axis=1) == batch[:, 3]))
    return {"accuracy": correct / len(q), "questions": len(q)}


def scores(vectors: np.ndarray, words: list[str]) -> dict[str, Any]:
    return {"wordsim353": word_pairs(vectors, words, evaluation_file("wordsim353.tsv")),
            "simlex999": word_pairs(vectors, words, evaluation_file("simlex999.txt")),
            "analogies": analogies(vectors, words, evaluation_file("questions-words.txt"))}


def word_vectors(template: ModelTemplate, checkpoint: Checkpoint) -> np.ndarray:
    """The checkpoint's input embedding: a word's vector is its row."""
    model = template.build_model()
    model.set_weights(checkpoint.weights)
    return model.get_layer("input_embedding").get_weights()[0]


def main() -> None:
    config, template, checkpoint = open_run("WordSim-353, SimLex-999 and analogies of a run")
    words = getattr(template, "words", None)  # TextSkipGram's, loaded from its file
    assert checkpoint is not None and words, "a run of examples/word2vec/real_text.toml"
    print(json.dumps({"samples": checkpoint.state.samples_total, "words": len(words),
                      **scores(word_vectors(template, checkpoint), words)}))


if __name__ == "__main__":
    main()
