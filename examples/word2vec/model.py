"""Skip-gram with negative sampling. Embedding gradients are sparse (tf.IndexedSlices): Horovod
allgathers the touched rows instead of allreducing the whole table."""

import keras

from hvd_online.model.template import ModelTemplate
from streams.schema import Schema


class SkipGram(ModelTemplate):
    loss = "binary_crossentropy"
    metric = "binary_accuracy"

    def __init__(self, vocabulary: int = 200, dimensions: int = 32) -> None:
        self.vocabulary, self.dimensions = vocabulary, dimensions
        # pair = (center word, context word); label 1 for a real pair, 0 for a negative sample
        self.schema = Schema.from_fields(
            [("id", "<i8"), ("pair", "<i4", (2,)), ("label", "<f4")],
            features="pair",
            label="label",
            key="id",
        )

    def build_model(self) -> keras.Model:
        pair = keras.Input((2,), dtype="int32")
        spread = 0.5 / self.dimensions**0.5  # larger than Keras' default: dot products start
        init = keras.initializers.RandomUniform(-spread, spread)  # non-zero, so both tables move
        center = keras.layers.Embedding(
            self.vocabulary, self.dimensions, embeddings_initializer=init, name="input_embedding"
        )(pair[:, 0])
        context = keras.layers.Embedding(
            self.vocabulary, self.dimensions, embeddings_initializer=init, name="output_embedding"
        )(pair[:, 1])
        logit = keras.layers.Dot(axes=1)([center, context])
        return keras.Model(pair, logit)

    def make_optimizer(self, learning_rate: float) -> keras.optimizers.Optimizer:
        # Adam's per-coordinate scale suits rows that are touched rarely and sparsely
        return keras.optimizers.Adam(learning_rate)
