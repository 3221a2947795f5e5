"""Fresh versions for TensorFlow Serving: rank 0 writes the live weights as a SavedModel in
TF-Serving's layout, RUN_DIR/serving/NAME/VERSION/ with VERSION = the training step.

    tensorflow_model_server --rest_api_port=8501 --model_name=NAME \\
        --model_base_path=$PWD/RUN_DIR/serving/NAME

A version is written every `serving.export_every_s` and at every checkpoint, by a thread of
its own on its own copy of the model (an export takes ~0.2 s: never on the training thread;
Keras models are not thread-safe, so the copy is never the trainer's). It is written aside
(`serving/.staging/`) and renamed into place, so a server polling the directory never sees a
half-written version. Only the newest `serving.keep` versions stay.

Versions are a view of the run's state, so a restart reconciles them with the checkpoint it
resumes from: versions newer than that step hold weights the restart rolled back (a kill -9
after them), and are removed before the first new one is written.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path

import keras
import numpy as np

from hvd_online.model.saved_model import write_saved_model
from hvd_online.model.template import ModelTemplate
from hvd_online.training.reports import StepReport

log = logging.getLogger(__name__)

STAGING = ".staging"


def versions(base: Path) -> list[int]:
    """The complete versions under a model base path, oldest first."""
    if not base.is_dir():
        return []
    return sorted(int(p.name) for p in base.iterdir() if p.name.isdigit() and p.is_dir())


def remove_versions_after(base: Path, step: int) -> list[int]:
    """Delete the versions newer than `step` (weights a restart rolled back)."""
    removed = [v for v in versions(base) if v > step]
    for version in removed:
        shutil.rmtree(base / str(version))
    return removed


def write_version(model: keras.Model, template: ModelTemplate, base: Path, version: int,
                  keep: int) -> Path:
    """Export `model` as `base/version`, atomically, then prune to the newest `keep`."""
    staging = base.parent / STAGING / f"{base.name}-{version}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.parent.mkdir(parents=True, exist_ok=True)
    write_saved_model(model, template, staging)
    final = base / str(version)
    base.mkdir(parents=True, exist_ok=True)
    if final.exists():  # the same step again (a checkpoint right after a timed export)
        shutil.rmtree(staging)
        return final
    os.rename(staging, final)  # same filesystem: atomic
    for old in versions(base)[:-keep]:
        shutil.rmtree(base / str(old))
    return final


class ServingExporter:
    """A report consumer on rank 0: hands weight snapshots to its export thread."""

    def __init__(self, base: Path, template: ModelTemplate, model: keras.Model,
                 weights: Callable[[], list[np.ndarray]], every_s: float, keep: int) -> None:
        self.base = base
        self.template = template
        self._model = model  # the exporter's own copy
        self._weights = weights
        self.every_s = every_s
        self.keep = max(1, keep)
        self._last = time.monotonic()
        self._pending: tuple[int, list[np.ndarray], float] | None = None
        self._wake = threading.Condition()
        self._closing = False
        #: (version, seconds the export took, seconds from the step's report to on disk)
        self.exported: list[tuple[int, float, float]] = []
        self._thread = threading.Thread(target=self._run, name="serving-export", daemon=True)
        self._thread.start()

    def __call__(self, report: StepReport) -> None:
        now = time.monotonic()
        due = self.every_s > 0 and report.applied and now - self._last >= self.every_s
        if not (due or report.checkpoint):
            return
        self._last = now
        with self._wake:  # a newer snapshot replaces one not yet exported
            self._pending = (report.step, self._weights(), time.perf_counter())
            self._wake.notify()

    def _run(self) -> None:
        while True:
            with self._wake:
                while self._pending is None and not self._closing:
                    self._wake.wait()
                if self._pending is None:
                    return
                step, weights, handed_at = self._pending
                self._pending = None
            started = time.perf_counter()
            try:
                self._model.set_weights(weights)
                write_version(self._model, self.template, self.base, step, self.keep)
            except Exception:  # noqa: BLE001 - a failed export must not end training
                log.exception("serving export of step %d failed; the next one retries", step)
                continue
            done = time.perf_counter()
            self.exported.append((step, done - started, done - handed_at))

    def close(self) -> None:
        """Write what is pending (the final checkpoint's version), then stop."""
        with self._wake:
            self._closing = True
            self._wake.notify()
        self._thread.join()
        if self.exported:
            took = sorted(t for _, t, _ in self.exported)
            lag = sorted(t for _, _, t in self.exported)
            log.info("serving: %d versions written to %s; export %.2f s median, %.2f s max; "
                     "step report to version on disk %.2f s median, %.2f s max", len(took),
                     self.base, took[len(took) // 2], took[-1], lag[len(lag) // 2], lag[-1])
