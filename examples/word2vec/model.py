"""Skip-gram with negative sampling, as gensim's Word2Vec trains it: a record is one
(center, context) pair of a sentence plus `negatives` words drawn from the unigram^0.75 noise
distribution, and the loss is gensim's, log sigmoid(center . context) plus
log sigmoid(-center . noise) for each noise word. Embedding gradients are sparse
(tf.IndexedSlices): Horovod allgathers the touched rows instead of allreducing the tables."""

from typing import Any

import keras
from keras import ops

from hvd_online.model.lazy_adam import LazyAdam
from hvd_online.model.template import PER_SAMPLE, ModelTemplate
from streams.schema import Schema


class SkipGram(ModelTemplate):
    def __init__(self, vocabulary: int = 200, dimensions: int = 32, negatives: int = 2) -> None:
        self.vocabulary, self.dimensions, self.negatives = vocabulary, dimensions, negatives
        candidates = 1 + negatives
        # words = center, context, noise words; label = 1 for the context, 0 for each noise word
        self.schema = Schema.from_fields(
            [("id", "<i8"), ("words", "<i4", (1 + candidates,)),
             ("label", "<f4", (candidates,))],
            features="words",
            label="label",
            key="id",
        )

    def build_model(self) -> keras.Model:
        words = keras.Input((2 + self.negatives,), dtype="int32")
        # gensim starts the input vectors at uniform(-0.5, 0.5) / dimensions and the output
        # vectors at zero; zero would leave the first steps' center gradients at zero too
        spread = 0.5 / self.dimensions
        center = keras.layers.Embedding(
            self.vocabulary, self.dimensions, name="input_embedding",
            embeddings_initializer=keras.initializers.RandomUniform(-spread, spread),
        )(words[:, 0])
        candidates = keras.layers.Embedding(
            self.vocabulary, self.dimensions, name="output_embedding",
            embeddings_initializer=keras.initializers.RandomUniform(-spread, spread),
        )(words[:, 1:])
        logits = ops.einsum("nd,nkd->nk", center, candidates)
        return keras.Model(words, logits)

    def make_optimizer(self, learning_rate: float) -> keras.optimizers.Optimizer:
        # Adam's per-coordinate scale suits rows that are touched rarely and sparsely; the
        # lazy one moves only the rows a step touched (1.3x the records/s of Keras' Adam)
        return LazyAdam(learning_rate)

    def per_sample_loss(self, y_true: Any, y_pred: Any) -> Any:
        """The candidates' sigmoid cross-entropies, summed (one value a record)."""
        return ops.sum(PER_SAMPLE["binary_crossentropy"](y_true, y_pred), axis=-1)

    def per_sample_metric(self, y_true: Any, y_pred: Any) -> Any:
        """Share of the candidates told apart (context scored > 0, noise words < 0)."""
        return ops.mean(PER_SAMPLE["binary_accuracy"](y_true, y_pred), axis=-1)


class TextSkipGram(SkipGram):
    """SkipGram over the real-text corpus (`corpus.py`): its vocabulary is the corpus' words
    seen `min_count` times (in the first `limit_sentences` sentences, if set), so these two
    must equal those in `[produce] params` (the same words, so the same ids)."""

    def __init__(self, min_count: int = 5, limit_sentences: int = 0, dimensions: int = 100,
                 negatives: int = 5) -> None:
        from examples.word2vec.corpus import Vocabulary, sentences

        self.words = Vocabulary(sentences(limit_sentences), min_count).words
        super().__init__(len(self.words), dimensions, negatives)
