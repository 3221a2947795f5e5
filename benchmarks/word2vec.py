"""Word2Vec on real text, side by side with gensim: the same tokens, the same vocabulary
(min_count), dimension, window, negatives, subsampling and number of passes.

    python -m benchmarks.word2vec              # the whole corpus, 5 passes (~20 min here)
    python -m benchmarks.word2vec --smoke      # a slice, 1 pass (the CI case)

hvd-online: the corpus' skip-gram records (`examples/word2vec/producer.py:real_text`) are
published into a fresh topic of the embedded broker, then `hvd-online train` with 2 ranks
learns them from it. gensim: `Word2Vec(sg=1)` on the same sentences with one worker a core,
for several seeds (its figures move with the seed; the spread is shown). Both are scored by
`examples/word2vec/evaluate.py`, which gives gensim's own `evaluate_word_pairs` /
`evaluate_word_analogies` figures (tests/unit/test_word2vec.py checks that).

words/s: corpus words times passes over the training wall time (hvd-online: the first to the
last step of the run, read from its metrics; gensim: `train` alone, vocabulary built before).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import (
    REPO,
    metrics_rows,
    prequential_mean,
    redeliveries,
    run_ranks,
    work_dir,
    write_results,
)
from examples.word2vec.corpus import Vocabulary, sentences
from examples.word2vec.evaluate import scores, word_vectors
from hvd_online.commands.produce import produce
from hvd_online.config import load_config
from hvd_online.model.template import load_template
from hvd_online.state.checkpoint import load_latest_checkpoint
from hvd_online.state.run_dir import RunLayout
from streams.pulsar.broker import EmbeddedBroker

CONFIG = REPO / "examples" / "word2vec" / "real_text.toml"
RESULTS = REPO / "benchmarks" / "results" / "word2vec.json"
FIGURES = (("wordsim353", "spearman"), ("simlex999", "spearman"), ("analogies", "accuracy"))


def settings_overrides(args: argparse.Namespace) -> list[str]:
    corpus = f"min_count = {args.min_count}, limit_sentences = {args.limit_sentences}"
    return [f"model.params={{{corpus}, dimensions = {args.dimensions}, "
            f"negatives = {args.negatives}}}",
            f"produce.params={{{corpus}, window = {args.window}, negatives = {args.negatives}, "
            f"sample = {args.sample}, passes = {args.passes}}}",
            f"window.batch_size={args.batch}", f"train.learning_rate={args.lr}"]


def run_hvd_online(args: argparse.Namespace, words: list[str], tmp: Path) -> dict[str, Any]:
    with EmbeddedBroker(tmp / "broker") as broker:
        topic = f"word2vec-{int(time.time())}"
        config = load_config(CONFIG, [*settings_overrides(args), f'stream.topic="{topic}"'])
        started = time.perf_counter()
        records = produce(config, broker.url, progress=False)
        produced_s = time.perf_counter() - started
        run_dir = tmp / "run"
        argv = ["train", str(CONFIG), "--url", broker.url, "--run-dir", str(run_dir),
                "--no-console"]
        for override in [*settings_overrides(args), f'stream.topic="{topic}"',
                         f"train.max_samples={records}", "checkpoint.every_seconds=0"]:
            argv += ["--set", override]
        found = run_ranks(args.ranks, argv, run_dir)
    trained = metrics_rows(run_dir)
    seconds = trained[-1]["elapsed_s"] - trained[0]["elapsed_s"]
    checkpoint = load_latest_checkpoint(RunLayout(run_dir).checkpoints)
    assert checkpoint is not None
    template = load_template(config.model.template, config.model.params)
    return {"records_published": records, "records_trained": checkpoint.state.samples_total,
            "publish_s": round(produced_s, 1), "train_s": round(seconds, 1),
            "words_per_s": round(args.corpus_words * args.passes / seconds),
            "told_apart_first_tenth": prequential_mean(run_dir, "metric", 0, records // 10),
            "told_apart_last_tenth": prequential_mean(run_dir, "metric", records * 9 // 10),
            **redeliveries(found), **scores(word_vectors(template, checkpoint), words)}


def run_gensim(args: argparse.Namespace, text: list[list[str]], words: list[str],
               seed: int) -> dict[str, Any]:
    from gensim.models import Word2Vec

    model = Word2Vec(vector_size=args.dimensions, window=args.window, min_count=args.min_count,
                     sample=args.sample, sg=1, negative=args.negatives, workers=os.cpu_count(),
                     seed=seed)
    model.build_vocab(text)
    assert sorted(model.wv.index_to_key) == sorted(words), "the same vocabulary"
    started = time.perf_counter()
    model.train(text, total_examples=len(text), epochs=args.passes)
    seconds = time.perf_counter() - started
    vectors = np.stack([model.wv[w] for w in words])
    return {"seed": seed, "train_s": round(seconds, 1),
            "words_per_s": round(args.corpus_words * args.passes / seconds),
            **scores(vectors, words)}


def figure(result: dict[str, Any], name: str, key: str) -> float:
    return float(result[name][key])


def gensim_summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over the seeds, with the lowest and highest beside."""
    out: dict[str, Any] = {"seeds": [r["seed"] for r in runs]}
    for name, key in FIGURES:
        values = [figure(r, name, key) for r in runs]
        out[name] = {key: statistics.median(values), "lowest": min(values),
                     "highest": max(values)}
    out["words_per_s"] = round(statistics.median(r["words_per_s"] for r in runs))
    out["train_s"] = round(statistics.median(r["train_s"] for r in runs), 1)
    return out


def table(ours: dict[str, Any], gensim: dict[str, Any], args: argparse.Namespace) -> str:
    lines = ["| model | WordSim-353 Spearman | SimLex-999 Spearman | analogies | words/s | "
             "training s |", "|---|---|---|---|---|---|"]
    cells = [f"{figure(ours, n, k):.3f}" for n, k in FIGURES]
    lines.append(f"| hvd-online ({args.ranks} ranks, batch {args.batch}) | "
                 f"{' | '.join(cells)} | {ours['words_per_s']:,} | {ours['train_s']} |")
    cells = [f"{gensim[n][k]:.3f} ({gensim[n]['lowest']:.3f}-{gensim[n]['highest']:.3f})"
             for n, k in FIGURES]
    lines.append(f"| gensim Word2Vec ({os.cpu_count()} workers; median of seeds "
                 f"{', '.join(map(str, gensim['seeds']))}) | {' | '.join(cells)} | "
                 f"{gensim['words_per_s']:,} | {gensim['train_s']} |")
    ratios = [figure(ours, n, k) / gensim[n][k] if gensim[n][k] else float("nan")
              for n, k in FIGURES]
    lines.append(f"| hvd-online / gensim | {' | '.join(f'{r:.2f}' for r in ratios)} | "
                 f"{ours['words_per_s'] / gensim['words_per_s']:.3f} | |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true",
                        help="the first 3,000 sentences, 1 pass, 1 gensim seed")
    parser.add_argument("--passes", type=int, default=5)
    parser.add_argument("--dimensions", type=int, default=100)
    parser.add_argument("--window", type=int, default=5)
    parser.add_argument("--negatives", type=int, default=5)
    parser.add_argument("--min-count", type=int, default=5)
    parser.add_argument("--sample", type=float, default=1e-3)
    parser.add_argument("--limit-sentences", type=int, default=0)
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--batch", type=int, default=1024, help="records per rank per step")
    parser.add_argument("--lr", type=float, default=0.002, help="hvd-online's Adam")
    parser.add_argument("--gensim-seeds", type=int, default=3)
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args(argv)
    if args.smoke:
        args.limit_sentences, args.passes, args.gensim_seeds = 3000, 1, 1
    text = sentences(args.limit_sentences)
    words = Vocabulary(text, args.min_count).words
    args.corpus_words = sum(map(len, text))
    with work_dir("word2vec-") as tmp:
        ours = run_hvd_online(args, words, tmp)
    print("hvd-online", json.dumps(ours), file=sys.stderr, flush=True)
    gensim_runs = [run_gensim(args, text, words, seed) for seed in range(1, args.gensim_seeds + 1)]
    gensim = gensim_summary(gensim_runs)
    report = {"settings": vars(args), "sentences": len(text), "vocabulary": len(words),
              "hvd_online": ours, "gensim": gensim, "gensim_runs": gensim_runs}
    write_results(args.out, report)
    print(f"{len(text):,} sentences, {args.corpus_words:,} words, vocabulary {len(words):,}, "
          f"{args.passes} passes")
    print(table(ours, gensim, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
