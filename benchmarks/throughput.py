"""Throughput cases on a pre-filled stream: the in-memory limit, hvd-online on 1 and 2 ranks,
and the loops users write today (a consumer calling `train_on_batch`)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pulsar

from benchmarks.common import run_ranks, steady_rate, train_argv
from examples.mlp.model import MLPRegression
from examples.mlp.producer import generate
from streams.client import connect
from streams.topics import partition_topic


def in_memory(samples: int, batch: int) -> dict:
    """The same model, batch and data in a plain TF loop over numpy arrays: the limit."""
    import keras
    import tensorflow as tf

    template = MLPRegression()
    rows = next(generate(template.schema, chunk=samples))
    x, y = np.ascontiguousarray(rows["x"]), np.ascontiguousarray(rows["y"])
    model = template.build_model()
    optimizer = template.make_optimizer(0.003)

    @tf.function
    def step(xb: tf.Tensor, yb: tf.Tensor) -> tf.Tensor:
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(template.per_sample_loss(yb, model(xb, training=True)))
        optimizer.apply(tape.gradient(loss, model.trainable_variables),
                        model.trainable_variables)
        return loss

    step(x[:batch], y[:batch])
    start = time.perf_counter()
    for i in range(0, samples - batch + 1, batch):
        step(x[i : i + batch], y[i : i + batch])
    keras.backend.clear_session()
    return {"samples_per_s": (samples // batch * batch) / (time.perf_counter() - start)}


def hvd_online(url: str, topic: str, samples: int, ranks: int, batch: int,
               run_dir: Path, extra: tuple[str, ...] = ()) -> dict:
    found = run_ranks(ranks, train_argv(url, topic, run_dir, samples, batch, extra), run_dir)
    return {"samples_per_s": steady_rate(run_dir, samples),
            "peak_rss_mb": max(s["peak_rss_mb"] for s in found)}


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
