"""Rank 0's step reports as TensorBoard scalars, in `RUN_DIR/tensorboard`.

Throttled to one set of scalars per `every_s` (the last step that trained something), so the
cost stays at a few eager summary ops a second; events (drift flags and responses,
checkpoints) are written at their own step, always. `tensorboard --logdir runs` then shows a
run next to a user's other experiments.

Written with TensorFlow's own `tf.summary.write` and the scalars plugin's metadata, which is
what `tf.summary.scalar` does: that one lives in the `tensorboard` package, which training
does not need (TensorBoard is installed where people look, not where ranks run).
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any

import tensorflow as tf
from tensorflow.core.framework import summary_pb2

from hvd_online.training.reports import StepReport

log = logging.getLogger(__name__)

SCALAR = summary_pb2.SummaryMetadata(
    plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars"),
    data_class=summary_pb2.DATA_CLASS_SCALAR)


def scalar(tag: str, value: float, step: int) -> None:
    tf.summary.write(tag, tf.constant(value, tf.float32), step=step, metadata=SCALAR)


class TensorBoardLog:
    def __init__(self, path: Path, every_s: float = 1.0) -> None:
        self.every_s = every_s
        self._written = -math.inf
        self._writer: Any = None
        try:
            self._writer = tf.summary.create_file_writer(str(path), flush_millis=5000)
        except tf.errors.OpError as err:  # e.g. a full disk: training matters more
            log.error("TensorBoard log %s not written: %s", path, err.message)

    def __call__(self, report: StepReport) -> None:
        if self._writer is None:
            return
        try:
            self._write(report)
        except tf.errors.OpError as err:
            log.error("TensorBoard log: %s; no more scalars this run", err.message)
            self._writer = None

    def _write(self, report: StepReport) -> None:
        now = time.monotonic()
        due = report.count and now - self._written >= self.every_s
        events = report.drift or report.drift_action or report.checkpoint
        if not (due or events or report.stopped):
            return
        step = report.step
        with self._writer.as_default():
            if due or report.stopped:
                self._written = now
                for name, value in (("loss", report.loss), ("metric", report.metric),
                                    ("challenger_loss", report.challenger_loss)):
                    if math.isfinite(value):
                        scalar(f"train/{name}", value, step)
                scalar("train/samples_per_s", report.samples_per_s, step)
                scalar("stream/lag_s", max(report.partition_lag_ms, default=0) / 1000, step)
                scalar("stream/backlog_messages", sum(report.partition_backlog), step)
            if report.drift:
                scalar("events/drift", 1.0, step)
            if report.drift_action:  # boost, challenger, promoted, dropped
                scalar(f"events/drift_{report.drift_action}", 1.0, step)
            if report.checkpoint:
                scalar("events/checkpoint", 1.0, step)

    def close(self) -> None:
        if self._writer is None:
            return
        try:
            self._writer.flush()
            self._writer.close()
        except tf.errors.OpError as err:
            log.error("TensorBoard log: %s", err.message)
