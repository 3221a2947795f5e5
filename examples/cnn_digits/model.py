"""A small CNN on scikit-learn's bundled 8x8 digits, streamed as images."""

import keras

from hvd_online.model.template import ModelTemplate
from streams.schema import Schema


class DigitsCNN(ModelTemplate):
    loss = "sparse_categorical_crossentropy"
    metric = "accuracy"

    def __init__(self, filters: int = 16, dense: int = 64) -> None:
        self.filters, self.dense = filters, dense
        self.schema = Schema.from_fields(
            [("id", "<i8"), ("image", "<f4", (8, 8, 1)), ("label", "<i4")],
            features="image", label="label", key="id",
        )

    def build_model(self) -> keras.Model:
        return keras.Sequential([
            keras.Input((8, 8, 1)),
            keras.layers.Conv2D(self.filters, 3, padding="same", activation="relu"),
            keras.layers.MaxPooling2D(2),
            keras.layers.Conv2D(2 * self.filters, 3, padding="same", activation="relu"),
            keras.layers.Flatten(),
            keras.layers.Dense(self.dense, activation="relu"),
            keras.layers.Dense(10),  # logits
        ])
