"""Do nearest neighbours in the learned embedding recover the planted word clusters?

    python -m examples.word2vec.neighbours examples/word2vec/config.toml

Prints the share of each word's 5 nearest neighbours (cosine) that belong to its cluster,
next to what chance gives.
"""

import argparse
import json
from pathlib import Path

import numpy as np

from hvd_online.checkpoint import load_latest_checkpoint
from hvd_online.config import load_config
from hvd_online.template import load_template


def neighbour_purity(vectors: np.ndarray, cluster_size: int, k: int = 5) -> float:
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True).clip(1e-9)
    similarity = unit @ unit.T
    np.fill_diagonal(similarity, -np.inf)
    nearest = np.argsort(-similarity, axis=1)[:, :k]
    words = np.arange(len(vectors))
    return float(np.mean(nearest // cluster_size == (words // cluster_size)[:, None]))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("config")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args()
    config = load_config(args.config, args.overrides)
    template = load_template(config.model.template, config.model.params)
    checkpoint = load_latest_checkpoint(Path(config.run.dir) / "checkpoints")
    if checkpoint is None:
        raise SystemExit(f"no checkpoint in {config.run.dir}: run the example first")
    model = template.build_model()
    model.set_weights(checkpoint.weights)
    vectors = model.get_layer("input_embedding").get_weights()[0]
    clusters = int(config.produce.params.get("clusters", 8))
    size = template.vocabulary // clusters
    print(json.dumps({"samples": checkpoint.state["samples_total"],
                      "neighbour_purity_at_5": round(neighbour_purity(vectors, size), 4),
                      "chance": round((size - 1) / (template.vocabulary - 1), 4)}))


if __name__ == "__main__":
    main()
