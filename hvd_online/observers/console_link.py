"""Links the training loop to the console on rank 0: the console is one report consumer, and
runs in a process of its own (`hvd_online.observers.console_process`).

The link runs on the training thread and never blocks it: reports go into a bounded queue
(dropped, and counted, when the console process falls behind), weights into shared memory
(copied at most every `publish_every_s`, and at checkpoints and the end), and save/stop
requests come back through a queue polled at every report.
"""

from __future__ import annotations

import logging
import multiprocessing
import queue
import secrets
import time
from collections.abc import Callable
from multiprocessing.queues import Queue
from typing import Any

import numpy as np

from console.shared_weights import SharedWeights
from hvd_online.config import Config, config_as_dict
from hvd_online.errors import HvdOnlineError
from hvd_online.observers.console_process import ConsoleSpec, serve
from hvd_online.state.run_dir import RunLayout
from hvd_online.sync.control import Controls
from hvd_online.training.reports import StepReport

log = logging.getLogger(__name__)

START_TIMEOUT_S = 120.0


class ConsoleLink:
    def __init__(self, process: multiprocessing.process.BaseProcess, reports: Queue[Any],
                 requests: Queue[Any], weights: SharedWeights, controls: Controls,
                 model_weights: Callable[[], list[np.ndarray]], url: str,
                 publish_every_s: float = 0.25) -> None:
        self.process = process
        self._reports = reports
        self._requests = requests
        self._weights = weights
        self._controls = controls
        self._model_weights = model_weights
        self.url = url
        self.publish_every_s = publish_every_s
        self._published = 0.0
        self.dropped = 0

    def __call__(self, report: StepReport) -> None:
        try:
            self._reports.put_nowait(report.as_json())
        except queue.Full:
            self.dropped += 1
        now = time.monotonic()
        if report.applied and (now - self._published >= self.publish_every_s
                               or report.stopped or report.checkpoint):
            self._published = now
            self._weights.publish(report.step, self._model_weights())
        while True:
            try:
                self._controls.request(self._requests.get_nowait())
            except queue.Empty:
                break

    def close(self) -> None:
        try:
            self._reports.put(None, timeout=5)
        except queue.Full:  # the console process is gone or stuck: it is terminated below
            pass
        # never wait at exit for the queue's feeder to hand over reports no one reads
        self._reports.cancel_join_thread()
        self.process.join(timeout=10)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join()
        self._weights.close()
        if self.dropped:
            log.info("console: %d step reports dropped (its process fell behind)", self.dropped)


def start_console(config: Config, layout: RunLayout, controls: Controls,
                  model_weights: Callable[[], list[np.ndarray]]) -> ConsoleLink:
    """Rank 0 only: start the console process and wait until it listens."""
    token = config.console.token or secrets.token_urlsafe(16)
    first = model_weights()
    weights = SharedWeights.create([(w.shape, w.dtype.name) for w in first])
    context = multiprocessing.get_context("spawn")  # never fork TensorFlow and Horovod
    reports: Queue[Any] = context.Queue(maxsize=2000)
    requests: Queue[Any] = context.Queue()
    ready, ready_child = context.Pipe(duplex=False)
    spec = ConsoleSpec(
        template=config.model.template, params=dict(config.model.params),
        pretrained=config.model.pretrained, run_config=config_as_dict(config),
        host=config.console.host, port=config.console.port, token=token,
        model_name=config.console.model_name, grpc_port=config.console.grpc_port,
        weights_name=weights.name,
        weights_layout=weights.layout, metrics_log=str(layout.metrics),
        serving_dir=str(layout.serving(config.console.model_name)))
    process = context.Process(target=serve, args=(spec, reports, requests, ready_child),
                              name="hvd-online-console", daemon=True)
    process.start()
    deadline = time.monotonic() + START_TIMEOUT_S
    while not ready.poll(0.2):
        if not process.is_alive() or time.monotonic() > deadline:
            process.terminate()
            weights.close()
            msg = (f"the console process exited with code {process.exitcode} (its error is "
                   "above)" if process.exitcode is not None else
                   f"the console process did not start within {START_TIMEOUT_S:.0f} s")
            raise HvdOnlineError(msg)
    url, grpc_address = ready.recv()
    log.info("console at %s  (token for save/stop: %s; open %s?token=%s); TF-Serving gRPC at "
             "%s", url, token, url, token, grpc_address)
    layout.root.mkdir(parents=True, exist_ok=True)
    if grpc_address:
        layout.console_grpc.write_text(f"{grpc_address}\n")
    layout.console_url.write_text(f"{url}\n")  # scripts and tests find the ports here
    return ConsoleLink(process, reports, requests, weights, controls, model_weights, url)
