"""Do nearest neighbours in the learned embedding recover the planted word clusters?

    python -m examples.word2vec.neighbours examples/word2vec/config.toml

Prints the share of each word's 5 nearest neighbours (cosine) that belong to its cluster,
next to what chance gives.
"""

import json

import numpy as np

from hvd_online.commands.finished_run import open_run


def neighbour_purity(vectors: np.ndarray, cluster_size: int, k: int = 5) -> float:
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True).clip(1e-9)
    similarity = unit @ unit.T
    np.fill_diagonal(similarity, -np.inf)
    nearest = np.argsort(-similarity, axis=1)[:, :k]
    words = np.arange(len(vectors))
    return float(np.mean(nearest // cluster_size == (words // cluster_size)[:, None]))


def main() -> None:
    config, template, checkpoint = open_run("nearest-neighbour purity of the embedding")
    assert checkpoint is not None
    model = template.build_model()
    model.set_weights(checkpoint.weights)
    vectors = model.get_layer("input_embedding").get_weights()[0]
    clusters = int(config.produce.params.get("clusters", 8))
    size = template.vocabulary // clusters
    print(json.dumps({"samples": checkpoint.state.samples_total,
                      "neighbour_purity_at_5": round(neighbour_purity(vectors, size), 4),
                      "chance": round((size - 1) / (template.vocabulary - 1), 4)}))


if __name__ == "__main__":
    main()
