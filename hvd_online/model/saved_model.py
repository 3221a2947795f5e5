"""The one SavedModel writer: `hvd-online export` and the serving exporter write the same
thing, a `serving_default` signature whose input is named after the schema's features field
(what a TF-Serving client sends: {"instances": ...} or a PredictRequest input of that name)."""

from __future__ import annotations

from pathlib import Path

import keras
import tensorflow as tf

from hvd_online.model.template import ModelTemplate


def write_saved_model(model: keras.Model, template: ModelTemplate, path: Path) -> None:
    schema = template.schema
    spec = tf.TensorSpec((None, *schema.feature_shape), tf.as_dtype(
        schema.dtype[schema.features].base), name=schema.features)
    model.export(str(path), format="tf_saved_model", verbose=False, input_signature=[spec])
