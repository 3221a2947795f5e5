"""What users would pick instead of hvd-online, fed the same stream by the same consumer:

- the expert hand loop: one multi-topic consumer over all partitions, `receive()` drained
  into a list, `np.frombuffer`, a `tf.function` step at batch 256. No prequential metric, no
  checkpoints, no dead letters, no dedupe: the practical limit of "Pulsar + TF in Python".
  (`batch_receive` stalled against pulsar-lite 0.2.0; plain `receive` does not.)
- River (the Python library for online learning): a linear model, a Hoeffding tree and
  k-nearest neighbours on the MLP demo's regression target, prequential (predict, then
  learn) one sample at a time, as River is used.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import pulsar

from benchmarks.throughput import plain_train_step
from examples.mlp.model import MLPRegression
from streams.pulsar.client import connect
from streams.pulsar.topics import partition_topic

#: how long the consumer waits for the first message of a batch before giving up on the stream
STREAM_END_S = 10.0


def consume(url: str, topic: str, partitions: int, subscription: str, batch: int,
            limit: int, on_rows: Callable[[np.ndarray], None], max_seconds: float = 0,
            until: Callable[[], bool] | None = None) -> int:
    """Feed `on_rows` batches of up to `batch` decoded samples until `limit` samples, `until()`
    or `max_seconds`, whichever is set and comes first - the hand loop's consumer, also
    River's. Returns samples fed."""
    dtype = MLPRegression().schema.dtype
    itemsize = dtype.itemsize
    client = connect(url)
    consumer = client.subscribe([partition_topic(topic, p) for p in range(partitions)],
                                subscription, initial_position=pulsar.InitialPosition.Earliest,
                                receiver_queue_size=1000)
    done = 0
    start = time.perf_counter()
    try:
        while not (until() if until else done >= limit) and not (
                max_seconds and time.perf_counter() - start > max_seconds):
            try:
                payloads = [consumer.receive(timeout_millis=int(STREAM_END_S * 1000)).data()]
            except pulsar.Timeout:
                break  # the stream ran dry
            filled = len(payloads[0]) // itemsize
            while filled < batch:
                try:
                    payload = consumer.receive(timeout_millis=0).data()
                except pulsar.Timeout:
                    break
                payloads.append(payload)
                filled += len(payload) // itemsize
            rows = np.frombuffer(b"".join(payloads), dtype=dtype)
            on_rows(rows)
            done += len(rows)
    finally:
        client.close()
    return done


def steady(marks: list[tuple[float, int]], total: int) -> tuple[float, float]:
    """(samples/s, seconds measured) between 10% and 90% of `total` samples."""
    inside = [(t, n) for t, n in marks if 0.1 * total <= n <= 0.9 * total]
    (t0, n0), (t1, n1) = inside[0], inside[-1]
    return (n1 - n0) / (t1 - t0), t1 - t0


def hand_loop(url: str, topic: str, partitions: int, samples: int, batch: int,
              subscription: str) -> dict:
    import keras

    step = plain_train_step(MLPRegression())
    marks: list[tuple[float, int]] = []
    # The loop trains on whatever comes, redeliveries too (pulsar-lite sends some to a
    # consumer that lags a backlog); its rate counts each sample once, as hvd-online's does.
    seen = np.zeros(samples, dtype=bool)

    def train(rows: np.ndarray) -> None:
        step(np.ascontiguousarray(rows["x"]), np.ascontiguousarray(rows["y"]))
        ids = rows["id"]
        seen[ids] = True
        marks.append((time.perf_counter(), int(seen.sum())))

    done = consume(url, topic, partitions, subscription, batch, samples, train,
                   until=lambda: bool(marks) and marks[-1][1] >= samples)
    keras.backend.clear_session()
    rate, seconds = steady(marks, samples)
    return {"samples_per_s": rate, "measured_s": seconds, "redelivered": done - samples}


def river_models() -> dict[str, Callable[[], object]]:
    from river import linear_model, neighbors, preprocessing, tree

    return {
        "River linear regression": lambda: (preprocessing.StandardScaler()
                                            | linear_model.LinearRegression()),
        "River Hoeffding adaptive tree": lambda: tree.HoeffdingAdaptiveTreeRegressor(seed=0),
        "River k-NN (k=5)": lambda: (preprocessing.StandardScaler()
                                     | neighbors.KNNRegressor(n_neighbors=5)),
    }


def river(url: str, topic: str, partitions: int, samples: int, max_seconds: float,
          subscription: str, make: Callable[[], object]) -> dict:
    """Prequential MAE of one River model on the stream: predict each sample, then learn it.
    Stops after `samples` or `max_seconds` (the slow models see fewer samples)."""
    model = make()
    errors: list[float] = []

    def learn(rows: np.ndarray) -> None:
        for features, target in zip(rows["x"].tolist(), rows["y"].tolist(), strict=True):
            x = dict(enumerate(features))
            errors.append(abs(target - (model.predict_one(x) or 0.0)))  # type: ignore[attr-defined]
            model.learn_one(x, target)  # type: ignore[attr-defined]

    start = time.perf_counter()
    done = consume(url, topic, partitions, subscription, 256, samples, learn, max_seconds)
    seconds = time.perf_counter() - start
    tail = errors[int(0.9 * done):]
    return {"samples_per_s": done / seconds, "samples": done, "mae": float(np.mean(errors)),
            "final_mae": float(np.mean(tail)), "measured_s": seconds}
