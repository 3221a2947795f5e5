"""Rank 0 publishes model versions for the serving replicas (`hvd-online serve`).

A report consumer on the training thread: every `serving.updates_every_s` (and at every
checkpoint and the end) it copies the weights (`get_weights`, the copy the console's shared
memory gets too) and offers them to the publisher, whose own thread numbers, diffs, encodes
and sends them (streams/pulsar/model_updates.py). Offering replaces a version not yet sent,
so a slow or absent broker costs training one copy of the weights per interval, no more.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from hvd_online.config import Config
from hvd_online.training.reports import StepReport
from streams.pulsar.client import connect
from streams.pulsar.model_updates import UpdatePublisher, model_updates_topic


class ModelUpdates:
    def __init__(self, config: Config, model_weights: Callable[[], list[np.ndarray]]) -> None:
        assert config.stream.url, "ranks always get the broker's URL"
        self._client = connect(config.stream.url, **config.stream.client_options)
        topic = model_updates_topic(config.join.events_topic or config.stream.topic)
        self.publisher = UpdatePublisher(self._client, topic, config.serving.snapshot_every)
        self._model_weights = model_weights
        self.every_s = config.serving.updates_every_s
        self._offered = 0.0
        #: when the oldest step not yet in a version was trained (None: no such step)
        self._first_change_ms: int | None = None

    def __call__(self, report: StepReport) -> None:
        # an empty step changes no weight: an idle job publishes no new version
        if report.applied and report.count > 0 and self._first_change_ms is None:
            self._first_change_ms = int(report.time_s * 1000)
        now = time.monotonic()
        due = now - self._offered >= self.every_s or report.stopped or report.checkpoint
        if due and self._first_change_ms is not None:
            self.publisher.offer(report.step, self._model_weights(), self._first_change_ms)
            self._offered, self._first_change_ms = now, None

    def close(self) -> None:
        self.publisher.close()  # sends the last version offered first
        self._client.close()
