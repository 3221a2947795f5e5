"""The published predictions against the true clicks, next to two baselines on the same
stream (same template, learning rate and batch size, simulated in time order in-process):

- instant labels: every impression's true outcome is known at once (the upper bound);
- naive joiner: only impressions whose click came are ever trained (expired ones dropped),
  the usual hand-written join that forgets non-clicks.

    python -m examples.clicks.evaluate examples/clicks/config.toml

Each impression's first prediction counts (a restart may publish one again). Prints one JSON
line: ROC-AUC and log loss of each, over every impression and over the steady state (after
the first join window, when non-clicks have started to expire).
"""

import json
from contextlib import ExitStack

import keras
import numpy as np
import pulsar

from examples.clicks.producer import outcomes
from hvd_online.commands.finished_run import open_run
from hvd_online.state.run_dir import RunLayout
from streams.pulsar.broker import EmbeddedBroker
from streams.pulsar.predictions import predictions_topic


def roc_auc(y: np.ndarray, p: np.ndarray) -> float:
    """Rank statistic (Mann-Whitney U), ties averaged."""
    order = np.argsort(p, kind="mergesort")
    ranks = np.empty(len(p))
    ranks[order] = np.arange(1, len(p) + 1)
    for value in np.unique(p[np.diff(np.sort(p), prepend=np.nan) == 0]):  # average tied ranks
        tied = p == value
        ranks[tied] = ranks[tied].mean()
    positives = y.sum()
    return float((ranks[y].sum() - positives * (positives + 1) / 2)
                 / (positives * (len(y) - positives)))


def log_loss(y: np.ndarray, p: np.ndarray) -> float:
    p = np.clip(p, 1e-7, 1 - 1e-7)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def published(url: str, topic: str) -> dict[int, float]:
    client = pulsar.Client(url, logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Warn))
    reader = client.create_reader(predictions_topic(topic), pulsar.MessageId.earliest)
    first: dict[int, float] = {}
    try:
        while reader.has_message_available():
            message = json.loads(reader.read_next(timeout_millis=10_000).data())
            first.setdefault(message["key"], message["prediction"])
    finally:
        client.close()
    return first


def simulate(template, config, truth: dict, naive: bool) -> np.ndarray:
    """Predictions of a model trained in event-time order: at each step it predicts the
    impressions that arrived, then trains on what became known (instantly, or for the
    naive joiner the clicks whose time has come)."""
    keras.utils.set_random_seed(config.train.seed)
    model = template.build_model()
    model.compile(template.make_optimizer(config.train.learning_rate),
                  keras.losses.BinaryCrossentropy(from_logits=True))
    x, clicked, delay = truth["x"], truth["clicked"], truth["delay_ms"]
    rate = config.produce.params.get("rate", 1000.0)
    times = np.arange(len(x)) * 1000.0 / rate
    batch = 2 * config.window.batch_size  # both ranks' windows
    predictions = np.zeros(len(x))
    window = config.join.window_s * 1000
    click_times = np.where(clicked & (delay <= window), times + delay, np.inf)
    known = np.argsort(click_times)
    trained = 0
    for start in range(0, len(x), batch):
        chunk = slice(start, start + batch)
        predictions[chunk] = 1 / (1 + np.exp(-model.predict_on_batch(x[chunk])[:, 0]))
        if not naive:
            model.train_on_batch(x[chunk], clicked[chunk].astype("f4"))
            continue
        now = times[min(start + batch, len(x)) - 1]
        due = known[trained:][click_times[known[trained:]] <= now]
        if len(due):
            model.train_on_batch(x[due], np.ones(len(due), "f4"))
            trained += len(due)
    return predictions


def scores(y: np.ndarray, p: np.ndarray, steady: slice) -> dict[str, float]:
    return {"auc": round(roc_auc(y, p), 4), "log_loss": round(log_loss(y, p), 4),
            "steady_auc": round(roc_auc(y[steady], p[steady]), 4),
            "steady_log_loss": round(log_loss(y[steady], p[steady]), 4)}


def main() -> None:
    config, template, _ = open_run("click predictions vs true outcomes and two baselines",
                                   need_checkpoint=False)
    with ExitStack() as stack:
        url = config.stream.url
        if not url:  # the run's embedded broker kept its data: serve it again to read
            url = stack.enter_context(EmbeddedBroker(RunLayout.of(config).broker_data)).url
        first = published(url, config.join.events_topic)
    count = len(first)
    params = {k: v for k, v in config.produce.params.items()}
    truth = outcomes(count, inputs=template.event_schema.dtype["x"].shape[0], **params)
    y = truth["clicked"]
    ours = np.array([first.get(int(k), np.nan) for k in truth["id"]])
    steady = slice(int(config.join.window_s * params.get("rate", 1000.0)), count)
    print(json.dumps({
        "impressions": count, "click_rate": round(float(y.mean()), 4),
        "hvd_online": scores(y, ours, steady),
        "instant_labels": scores(y, simulate(template, config, truth, naive=False), steady),
        "naive_joiner": scores(y, simulate(template, config, truth, naive=True), steady),
    }))


if __name__ == "__main__":
    main()
