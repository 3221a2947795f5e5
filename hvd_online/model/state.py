"""A model's arrays, read and written in one place: the weights, the optimizer's state copied
by position (Keras names optimizer variables by a process-wide counter, so names do not match
across copies; positions do), and a digest that is equal on ranks that are in sync."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np


def weights_digest(model: keras.Model) -> str:
    """sha256 over all weights: equal on every rank when ranks are in sync."""
    h = hashlib.sha256()
    for w in model.get_weights():
        h.update(np.ascontiguousarray(w).tobytes())
    return h.hexdigest()


def optimizer_state(optimizer: keras.optimizers.Optimizer) -> list[np.ndarray]:
    return [v.numpy() for v in optimizer.variables]


def set_optimizer_state(optimizer: keras.optimizers.Optimizer,
                        values: Sequence[Any]) -> None:
    """`values`: arrays, or another optimizer's variables, in `optimizer.variables` order."""
    for variable, value in zip(optimizer.variables, values, strict=True):
        variable.assign(value)
