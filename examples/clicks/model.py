"""Click-through prediction on a raw event stream: impressions (events) need a click
probability now; clicks (labels) come seconds later, and most impressions are never clicked.
"""

import keras
import numpy as np

from hvd_online.model.template import ModelTemplate
from streams.schema import EventSchema, LabelSchema, Schema


class ClickModel(ModelTemplate):
    loss = "binary_crossentropy"
    metric = "binary_accuracy"

    def __init__(self, inputs: int = 8, hidden: int = 32) -> None:
        self.inputs, self.hidden = inputs, hidden
        x = ("x", "<f4", (inputs,))
        self.schema = Schema.from_fields([("id", "<i8"), x, ("y", "<f4")], features="x",
                                         label="y", key="id")
        # t: event time / click time in ms (the producer's clock)
        self.event_schema = EventSchema.from_fields([("id", "<i8"), ("t", "<i8"), x],
                                                    key="id", features="x", time="t")
        self.label_schema = LabelSchema.from_fields([("id", "<i8"), ("t", "<i8"), ("y", "<f4")],
                                                    key="id", label="y", time="t")

    def build_model(self) -> keras.Model:
        return keras.Sequential([keras.Input((self.inputs,)),
                                 keras.layers.Dense(self.hidden, activation="relu"),
                                 keras.layers.Dense(1)])

    def prediction(self, outputs: np.ndarray) -> np.ndarray:
        """The predictions topic carries click probabilities, not logits."""
        return 1.0 / (1.0 + np.exp(-outputs))
