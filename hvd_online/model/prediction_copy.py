"""A second model holding the training model's weights, for a thread that predicts while the
training thread steps.

Keras is not thread-safe (../shared notes), and a forward pass on the live model could also
read half an update (one layer at step k, the next at k + 1; a dynamic table's index from one
step and its rows from another). So the predicting thread only ever calls this copy, and the
training thread copies every variable into it between two steps (`refresh`, one compiled
function: a memcpy per variable), under the lock a prediction holds.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import keras
import numpy as np
import tensorflow as tf


class PredictionCopy:
    def __init__(self, live: keras.Model, build: Callable[[], keras.Model],
                 feature_spec: tf.TensorSpec) -> None:
        """`build` makes a model of the same architecture as `live` (the template's)."""
        self._lock = threading.Lock()
        copy = build()
        shape = [1 if d is None else d for d in feature_spec.shape]
        copy(np.zeros(shape, feature_spec.dtype.as_numpy_dtype), training=False)  # build it
        targets, sources = copy.weights, live.weights
        if [tuple(v.shape) for v in targets] != [tuple(v.shape) for v in sources]:
            msg = "the template built a model unlike the trained one (its weights differ)"
            raise ValueError(msg)

        @tf.function
        def copy_weights() -> None:
            for target, source in zip(targets, sources, strict=True):
                target.assign(source.value)

        @tf.function(reduce_retracing=True)
        def forward(x: tf.Tensor) -> tf.Tensor:
            return copy(x, training=False)

        self._copy_weights, self._forward = copy_weights, forward
        #: the training step whose weights the copy holds
        self.step = -1
        # traced here, on the training thread, before any other thread calls them
        self.refresh(0)
        self.predict(np.zeros(shape, feature_spec.dtype.as_numpy_dtype))

    def refresh(self, step: int) -> None:
        """On the training thread, between steps: take the live weights (of `step`)."""
        with self._lock:
            self._copy_weights()
            self.step = step

    def predict(self, x: np.ndarray) -> tuple[np.ndarray, int]:
        """The outputs for `x`, and the step of the weights that made them."""
        with self._lock:
            return self._forward(x).numpy(), self.step
