"""The model template: what a user writes to train a model online.

A template is a class whose constructor arguments are its hyperparameters. It declares the
record `schema`, builds the Keras model, and names its per-sample loss and metric:

    class MLPRegression(ModelTemplate):
        loss = "mse"
        metric = "mae"

        def __init__(self, inputs: int = 8, hidden: int = 64):
            self.inputs, self.hidden = inputs, hidden
            self.schema = Schema.from_fields(
                [("id", "<i8"), ("x", "<f4", (inputs,)), ("y", "<f4")],
                features="x", label="y", key="id")

        def build_model(self):
            return keras.Sequential([keras.Input((self.inputs,)),
                                     keras.layers.Dense(self.hidden, activation="relu"),
                                     keras.layers.Dense(1)])

Losses and metrics are per sample (one value per row), so a window of any size, empty
included, can be weighted exactly when ranks are combined.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import keras
import numpy as np
from keras import ops

from hvd_online.errors import TemplateError
from hvd_online.model.loading import load_object
from streams.schema import EventSchema, LabelSchema, Schema


def _squeeze_last(y_true: Any, y_pred: Any) -> tuple[Any, Any]:
    """A scalar label against a (n, 1) output: compare (n,) with (n,)."""
    if len(y_pred.shape) == len(y_true.shape) + 1 and y_pred.shape[-1] == 1:
        y_pred = ops.squeeze(y_pred, -1)
    return ops.cast(y_true, y_pred.dtype), y_pred


def _mse(y_true: Any, y_pred: Any) -> Any:
    y_true, y_pred = _squeeze_last(y_true, y_pred)
    err = ops.square(y_true - y_pred)
    return ops.mean(ops.reshape(err, (ops.shape(err)[0], -1)), axis=1)


def _mae(y_true: Any, y_pred: Any) -> Any:
    y_true, y_pred = _squeeze_last(y_true, y_pred)
    err = ops.abs(y_true - y_pred)
    return ops.mean(ops.reshape(err, (ops.shape(err)[0], -1)), axis=1)


def _sparse_ce(y_true: Any, y_pred: Any) -> Any:
    return keras.losses.sparse_categorical_crossentropy(y_true, y_pred, from_logits=True)


def _accuracy(y_true: Any, y_pred: Any) -> Any:
    hit = ops.equal(ops.cast(ops.argmax(y_pred, axis=-1), "int64"), ops.cast(y_true, "int64"))
    return ops.cast(hit, "float32")


def _binary_ce(y_true: Any, y_pred: Any) -> Any:
    y_true, y_pred = _squeeze_last(y_true, y_pred)
    return keras.losses.binary_crossentropy(y_true[..., None], y_pred[..., None], from_logits=True)


def _binary_accuracy(y_true: Any, y_pred: Any) -> Any:
    y_true, y_pred = _squeeze_last(y_true, y_pred)
    return ops.cast(ops.equal(ops.cast(y_pred > 0, "float32"), ops.cast(y_true, "float32")),
                    "float32")


#: per-sample functions by name; outputs are logits for the classification ones
PER_SAMPLE: dict[str, Callable[[Any, Any], Any]] = {
    "mse": _mse,
    "mae": _mae,
    "sparse_categorical_crossentropy": _sparse_ce,
    "accuracy": _accuracy,
    "binary_crossentropy": _binary_ce,
    "binary_accuracy": _binary_accuracy,
}


class ModelTemplate:
    """Subclass this. Override `build_model`; set `schema`, `loss`, `metric`.

    For raw event streams (`[join]`) also set `event_schema` and `label_schema`: events carry
    the training schema's key and features fields (same names and types), labels its key and
    label fields; the trainer joins them into `schema` samples.
    """

    schema: Schema
    event_schema: EventSchema | None = None
    label_schema: LabelSchema | None = None
    #: name from PER_SAMPLE, or override `per_sample_loss`
    loss: str = "mse"
    #: name from PER_SAMPLE, or override `per_sample_metric`
    metric: str = "mae"

    def build_model(self) -> keras.Model:
        raise NotImplementedError

    def make_optimizer(self, learning_rate: float) -> keras.optimizers.Optimizer:
        return keras.optimizers.Adam(learning_rate)

    def per_sample_loss(self, y_true: Any, y_pred: Any) -> Any:
        return PER_SAMPLE[self.loss](y_true, y_pred)

    def per_sample_metric(self, y_true: Any, y_pred: Any) -> Any:
        return PER_SAMPLE[self.metric](y_true, y_pred)

    def prediction(self, outputs: np.ndarray) -> np.ndarray:
        """What the predictions topic carries for the model's outputs (e.g. a sigmoid of a
        logit); the raw outputs by default."""
        return outputs


def load_template(spec: str, params: dict[str, Any]) -> ModelTemplate:
    cls = load_object(spec)
    if not (inspect.isclass(cls) and issubclass(cls, ModelTemplate)):
        msg = f"{spec!r} is not a ModelTemplate subclass"
        raise TemplateError(msg)
    try:
        template = cls(**params)
    except (TypeError, ValueError) as err:  # a missing, unknown or refused parameter
        msg = f"cannot build {cls.__name__} with params {params}: {err}"
        raise TemplateError(msg) from err
    if not isinstance(getattr(template, "schema", None), Schema):
        msg = f"{cls.__name__} must set `schema` to a streams.schema.Schema"
        raise TemplateError(msg)
    for role in ("loss", "metric"):
        overridden = getattr(cls, f"per_sample_{role}") is not getattr(ModelTemplate,
                                                                        f"per_sample_{role}")
        if not overridden and getattr(template, role) not in PER_SAMPLE:
            msg = (f"{cls.__name__}.{role} = {getattr(template, role)!r} is not one of "
                   f"{sorted(PER_SAMPLE)}; or override per_sample_{role}")
            raise TemplateError(msg)
    return template


def build_model(template: ModelTemplate, pretrained: str = "") -> keras.Model:
    if pretrained:
        return keras.models.load_model(pretrained, compile=False)
    return template.build_model()
