"""The unit tests' kit: a linear template and its records, a dynamic-embedding template, and
an in-process trainer (one Horovod rank) fed by in-memory TestingSources."""

from pathlib import Path

import keras
import numpy as np

from hvd_online.config import load_config_text
from hvd_online.inputs.labelled import LabelledInput
from hvd_online.model.dynamic_embedding import DynamicEmbedding
from hvd_online.model.template import ModelTemplate
from hvd_online.training.trainer import OnlineTrainer
from streams.codecs import RecordCodec
from streams.schema import Schema
from streams.testing import CountingSink


class Linear(ModelTemplate):
    loss = "mse"
    metric = "mae"

    def __init__(self) -> None:
        self.schema = Schema.from_fields([("id", "<i8"), ("x", "<f4", (4,)), ("y", "<f4")],
                                         features="x", label="y", key="id")

    def build_model(self) -> keras.Model:
        return keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])


class Ratings(ModelTemplate):
    """user and item IDs -> a rating: dot product of their dynamic embeddings."""

    loss, metric = "mse", "mae"

    def __init__(self, capacity: int = 8) -> None:
        self.capacity = capacity
        self.schema = Schema.from_fields([("ids", "<i8", (2,)), ("y", "<f4")],
                                         features="ids", label="y")

    def build_model(self) -> keras.Model:
        ids = keras.Input((2,), dtype="int64")
        user = DynamicEmbedding(4, self.capacity, column=0, name="users")(ids)
        item = DynamicEmbedding(4, self.capacity, column=1, name="items")(ids)
        rating = keras.layers.Dot(axes=1)([user, item])
        return keras.Model(ids, keras.layers.Dense(1)(rating))


def payloads(template: Linear, n: int, seed: int = 0) -> list[bytes]:
    rng = np.random.default_rng(seed)
    rows = np.zeros(n, dtype=template.schema.dtype)
    rows["id"] = np.arange(n)
    rows["x"] = rng.normal(size=(n, 4))
    rows["y"] = rows["x"] @ np.array([1.0, -2.0, 0.5, 3.0], dtype="f4")
    return RecordCodec(template.schema).encode_many(rows)


def make_trainer(world, tmp_path: Path, sources, overrides=(), controls=None, hooks=()):
    config = load_config_text(
        '[stream]\ntopic = "t"\npartitions = 2\n[window]\nbatch_size = 32\nmax_wait_ms = 5\n'
        '[train]\nlearning_rate = 0.05\n', [f'run.dir="{tmp_path}"', *overrides])
    sink = CountingSink()
    template = Linear()
    step_input = LabelledInput(sources, RecordCodec(template.schema), sink, 32, 0.005)
    trainer = OnlineTrainer(config, template, world, step_input, 2, controls, hooks)
    return trainer, sink
