"""A small classifier for drifting streams: binary (one logit) or multi-class (a logit a class),
on records (id, x, y) with the class index in y."""

import keras

from hvd_online.model.template import ModelTemplate
from streams.schema import Schema


class StreamClassifier(ModelTemplate):
    def __init__(self, inputs: int = 10, hidden: int = 32, classes: int = 2) -> None:
        if classes < 2:
            raise ValueError(f"classes must be 2 or more, got {classes}")
        self.inputs, self.hidden, self.classes = inputs, hidden, classes
        binary = classes == 2
        self.loss = "binary_crossentropy" if binary else "sparse_categorical_crossentropy"
        self.metric = "binary_accuracy" if binary else "accuracy"
        self.schema = Schema.from_fields(
            [("id", "<i8"), ("x", "<f4", (inputs,)), ("y", "<f4")],
            features="x", label="y", key="id",
        )

    def build_model(self) -> keras.Model:
        return keras.Sequential([
            keras.Input((self.inputs,)),
            keras.layers.Dense(self.hidden, activation="relu"),
            keras.layers.Dense(1 if self.classes == 2 else self.classes),  # logits
        ])
