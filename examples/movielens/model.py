"""Ratings from user and movie IDs: a biased matrix factorisation whose user and movie rows
live in DynamicEmbedding tables, so a user or a movie seen for the first time mid-stream gets
a row of its own (and rows of those gone quiet are reused once the table is full).

    rating = mean + b_user + b_movie + <p_user, q_movie>
"""

from __future__ import annotations

import keras

from hvd_online.model.dynamic_embedding import DynamicEmbedding
from hvd_online.model.template import ModelTemplate
from streams.schema import EventSchema, LabelSchema, Schema


class GlobalBias(keras.layers.Layer):
    """A trainable scalar added to its input, starting at the ratings' usual mean."""

    def __init__(self, start: float, **kwargs) -> None:
        super().__init__(**kwargs)
        self.start = start

    def build(self, input_shape) -> None:
        self.bias = self.add_weight(name="bias", shape=(), initializer=keras.initializers.
                                    Constant(self.start))

    def call(self, x):
        return x + self.bias

    def get_config(self) -> dict:
        return {**super().get_config(), "start": self.start}


class RatingMF(ModelTemplate):
    loss = "mse"
    metric = "mae"

    def __init__(self, dim: int = 32, capacity: int = 4096, ttl_steps: int = 1_000_000,
                 min_count: int = 1, mean: float = 3.5, table_optimizer: str = "adam",
                 factor_lr: float = 0.05, bias_lr: float = 0.025) -> None:
        """`table_optimizer`: "adam" (the model's learning rate; stable at any batch) or
        "sgd" at `factor_lr` and `bias_lr` per rating (River's BiasedMF rates, as
        benchmarks/recsys.py runs it, a few ratings a step: with dozens a step, a user who
        rates many movies at once takes one step of dozens of ratings and can diverge). The
        global bias learns at the model's learning rate."""
        self.dim, self.capacity, self.ttl_steps = dim, capacity, ttl_steps
        self.min_count, self.mean = min_count, mean
        self.table_optimizer, self.factor_lr, self.bias_lr = table_optimizer, factor_lr, bias_lr
        self.schema = Schema.from_fields(
            [("key", "<i8"), ("ids", "<i8", (2,)), ("rating", "<f4")],
            features="ids", label="rating", key="key")
        # as a raw event stream (config-joined.toml): the rating event, and its rating later;
        # t: the event's and the rating's time in ms (the producer's clock)
        self.event_schema = EventSchema.from_fields(
            [("key", "<i8"), ("t", "<i8"), ("ids", "<i8", (2,))], key="key", features="ids",
            time="t")
        self.label_schema = LabelSchema.from_fields(
            [("key", "<i8"), ("t", "<i8"), ("rating", "<f4")], key="key", label="rating",
            time="t")

    def build_model(self) -> keras.Model:
        ids = keras.Input((2,), dtype="int64", name="ids")

        def table(dim: int, column: int, name: str, rate: float) -> DynamicEmbedding:
            sgd = self.table_optimizer == "sgd"
            return DynamicEmbedding(dim, self.capacity, column=column, name=name,
                                    ttl_steps=self.ttl_steps, min_count=self.min_count,
                                    optimizer=self.table_optimizer,
                                    learning_rate=rate if sgd else None)

        user = table(self.dim, 0, "user", self.factor_lr)(ids)
        movie = table(self.dim, 1, "movie", self.factor_lr)(ids)
        user_bias = table(1, 0, "user_bias", self.bias_lr)(ids)
        movie_bias = table(1, 1, "movie_bias", self.bias_lr)(ids)
        dot = keras.layers.Dot(axes=1)([user, movie])
        rating = keras.layers.Add()([dot, user_bias, movie_bias])
        return keras.Model(ids, GlobalBias(self.mean)(rating))
