"""MLP regression on a synthetic stream with a known target function (the seed's MLP demo)."""

import keras

from hvd_online.model.template import ModelTemplate
from streams.schema import Schema


class MLPRegression(ModelTemplate):
    loss = "mse"
    metric = "mae"

    def __init__(self, inputs: int = 16, hidden: int = 64, layers: int = 2) -> None:
        self.inputs, self.hidden, self.layers = inputs, hidden, layers
        self.schema = Schema.from_fields(
            [("id", "<i8"), ("x", "<f4", (inputs,)), ("y", "<f4")],
            features="x", label="y", key="id",
        )

    def build_model(self) -> keras.Model:
        model = keras.Sequential([keras.Input((self.inputs,))])
        for _ in range(self.layers):
            model.add(keras.layers.Dense(self.hidden, activation="relu"))
        model.add(keras.layers.Dense(1))
        return model
