"""Throughput cases on a pre-filled stream: the in-memory limit, hvd-online on 1 and 2 ranks,
and the loops users write today (a consumer calling `train_on_batch`)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pulsar

from benchmarks.common import (
    prequential_mean,
    redeliveries,
    run_ranks,
    steady_window,
    train_argv,
)
from examples.mlp.model import MLPRegression
from examples.mlp.producer import generate
from hvd_online.model.template import ModelTemplate
from streams.pulsar.client import connect
from streams.pulsar.topics import partition_topic


def plain_train_step(template: ModelTemplate,
                     learning_rate: float = 0.003) -> Callable[[Any, Any], Any]:
    """A fresh model's `tf.function` train step, as a plain TF loop writes it (the in-memory
    limit and the expert hand loop use it)."""
    import tensorflow as tf

    model = template.build_model()
    optimizer = template.make_optimizer(learning_rate)

    @tf.function
    def step(x: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(template.per_sample_loss(y, model(x, training=True)))
        optimizer.apply(tape.gradient(loss, model.trainable_variables),
                        model.trainable_variables)
        return loss

    return step


def in_memory(samples: int, batch: int, min_seconds: float) -> dict:
    """The same model, batch and data in a plain TF loop over numpy arrays: the limit. Warmed
    up like a stream case (its first 10%, at least one second), then timed for at least
    `min_seconds`, going round the data as often as needed."""
    import keras

    template = MLPRegression()
    rows = next(generate(template.schema, chunk=samples))
    x, y = np.ascontiguousarray(rows["x"]), np.ascontiguousarray(rows["y"])
    step = plain_train_step(template)
    starts = range(0, samples - batch + 1, batch)

    def run_for(seconds: float) -> tuple[int, float]:
        done, start = 0, time.perf_counter()
        while True:
            for i in starts:
                step(x[i : i + batch], y[i : i + batch])
                done += batch
            elapsed = time.perf_counter() - start
            if elapsed >= seconds:
                return done, elapsed

    run_for(1.0)
    done, seconds = run_for(min_seconds)
    keras.backend.clear_session()
    return {"samples_per_s": done / seconds, "measured_s": seconds}


def hvd_online(url: str, topic: str, samples: int, ranks: int, batch: int,
               run_dir: Path, extra: tuple[str, ...] = ()) -> dict:
    """Steady samples/s (10% to 90% of the stream), peak RSS, and the prequential loss and MAE
    over the stream's last 10% ("final")."""
    found = run_ranks(ranks, train_argv(url, topic, run_dir, samples, batch, extra), run_dir)
    rate, seconds = steady_window(run_dir, samples)
    return {"samples_per_s": rate, "measured_s": seconds,
            "peak_rss_mb": max(s["peak_rss_mb"] for s in found), **redeliveries(found),
            "final_loss": prequential_mean(run_dir, "loss", first=int(0.9 * samples)),
            "final_mae": prequential_mean(run_dir, "metric", first=int(0.9 * samples))}


def consumer_loop(url: str, topic: str, partitions: int, samples: int, group: int,
                  subscription: str) -> dict:
    """What users hand-roll: receive, decode, `train_on_batch` every `group` messages."""
    template = MLPRegression()
    model = template.build_model()
    model.compile(template.make_optimizer(0.003), "mse")
    client = connect(url)
    consumer = client.subscribe([partition_topic(topic, p) for p in range(partitions)],
                                subscription, initial_position=pulsar.InitialPosition.Earliest)
    dtype = template.schema.dtype
    buffer: list[bytes] = []
    done = 0
    start = time.perf_counter()
    while done < samples:
        message = consumer.receive(timeout_millis=10000)
        buffer.append(message.data())
        consumer.acknowledge(message)
        if len(buffer) == group:
            rows = np.frombuffer(b"".join(buffer), dtype=dtype)
            model.train_on_batch(rows["x"], rows["y"])
            done += len(rows)
            buffer.clear()
    rate = done / (time.perf_counter() - start)
    client.close()
    return {"samples_per_s": rate}
