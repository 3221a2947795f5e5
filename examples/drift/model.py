"""Binary classifier on a stream whose concept changes abruptly (rotating hyperplane)."""

import keras

from hvd_online.model.template import ModelTemplate
from streams.schema import Schema


class HyperplaneClassifier(ModelTemplate):
    loss = "binary_crossentropy"
    metric = "binary_accuracy"

    def __init__(self, inputs: int = 10, hidden: int = 32) -> None:
        self.inputs, self.hidden = inputs, hidden
        self.schema = Schema.from_fields(
            [("id", "<i8"), ("x", "<f4", (inputs,)), ("y", "<f4")],
            features="x", label="y", key="id",
        )

    def build_model(self) -> keras.Model:
        return keras.Sequential([
            keras.Input((self.inputs,)),
            keras.layers.Dense(self.hidden, activation="relu"),
            keras.layers.Dense(1),  # logit
        ])
