"""Links the training loop to the console on rank 0: the console is one report consumer, and
runs in a process of its own (`hvd_online.observers.console_process`).

The link runs on the training thread and never blocks it: reports go into a bounded queue
(dropped, and counted, when the console process falls behind), weights into shared memory
(copied at most every `publish_every_s`, and at checkpoints and the end), and save/stop
requests come back through a queue polled at every report.

Training never waits for the console process: it starts while the first steps run. A
second console process stands by, loaded (`console.standby`): when the serving one dies,
the link notices within CHECK_EVERY_S of a report, tells the standby to take the same ports
(it reads the run's history back from the metrics log), and starts a new standby.
"""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing
import queue
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
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
#: how often the training thread looks whether the console process still lives
CHECK_EVERY_S = 0.2


@dataclass
class ConsoleProcess:
    """One console process and its pipes: the serving one, or the standby."""

    process: multiprocessing.process.BaseProcess
    reports: Queue[Any]
    requests: Queue[Any]
    ready: Any
    go: Any

    @classmethod
    def spawn(cls, spec: ConsoleSpec, standby: bool) -> ConsoleProcess:
        context = multiprocessing.get_context("spawn")  # never fork TensorFlow and Horovod
        reports: Queue[Any] = context.Queue(maxsize=2000)
        requests: Queue[Any] = context.Queue()
        ready, ready_child = context.Pipe(duplex=False)
        go_child, go = context.Pipe(duplex=False) if standby else (None, None)
        process = context.Process(target=serve, args=(spec, reports, requests, ready_child,
                                                      go_child),
                                  name="hvd-online-console", daemon=True)
        process.start()
        return cls(process, reports, requests, ready, go)

    def wait_ready(self, timeout_s: float) -> Any:
        """What the process sends once it serves (or, a standby, once it is loaded)."""
        deadline = time.monotonic() + timeout_s
        while not self.ready.poll(0.2):
            if not self.process.is_alive() or time.monotonic() > deadline:
                self.end()
                msg = (f"the console process exited with code {self.process.exitcode} (its "
                       "error is above)" if self.process.exitcode is not None else
                       f"the console process did not start within {timeout_s:.0f} s")
                raise HvdOnlineError(msg)
        return self.ready.recv()

    def end(self) -> None:
        if self.process.is_alive():
            self.process.terminate()
        self.process.join(timeout=10)
        self.reports.cancel_join_thread()  # never wait for a feeder no one reads


class ConsoleLink:
    """The training side of the console. Nothing here waits for the console process: it
    starts (TensorFlow's import, the model's build: ~10 s measured beside a relaunch) while
    training steps, and reports wait in its queue meanwhile. If it dies (kill -9, a crash),
    its standby takes over at the next report, and a new standby is started."""

    def __init__(self, spec: ConsoleSpec, active: ConsoleProcess, weights: SharedWeights,
                 controls: Controls, model_weights: Callable[[], list[np.ndarray]],
                 layout: RunLayout, standby: bool = True,
                 publish_every_s: float = 0.25) -> None:
        self.spec = spec
        self.active = active
        self.standby: ConsoleProcess | None = None
        self._want_standby = standby
        self._weights = weights
        self._controls = controls
        self._model_weights = model_weights
        #: the console's address, once it serves (None before)
        self.url: str | None = None
        self.layout = layout
        self.publish_every_s = publish_every_s
        self._published = 0.0
        self._checked = 0.0
        self.dropped = 0
        self.takeovers = 0

    def __call__(self, report: StepReport) -> None:
        now = time.monotonic()
        if now - self._checked >= CHECK_EVERY_S:
            self._checked = now
            if self.url is None:
                self._check_started()
            else:
                self._check_alive()
        try:
            self.active.reports.put_nowait(report.as_json())
        except queue.Full:
            self.dropped += 1
        if report.applied and (now - self._published >= self.publish_every_s
                               or report.stopped or report.checkpoint):
            self._published = now
            self._weights.publish(report.step, self._model_weights())
        while True:
            try:
                self._controls.request(self.active.requests.get_nowait())
            except (queue.Empty, OSError, EOFError):
                break

    def _check_started(self) -> None:
        """The first console of this launch: once it listens, say where, and start its
        standby (not sooner: both loading at once would slow the first steps more)."""
        if not self.active.ready.poll(0):
            if not self.active.process.is_alive():
                raise HvdOnlineError(f"the console process exited with code "
                                     f"{self.active.process.exitcode} at start (its error is "
                                     "above)")
            return
        self._started(*self.active.ready.recv())

    def wait_until_serving(self, timeout_s: float = START_TIMEOUT_S) -> str:
        """Block until the first console listens (for scripts and tests; training never
        waits)."""
        if self.url is None:
            self._started(*self.active.wait_ready(timeout_s))
        assert self.url is not None
        return self.url

    def _started(self, url: str, grpc_address: str) -> None:
        spec, layout = self.spec, self.layout
        log.info("console at %s  (token for save/stop: %s; open %s?token=%s); TF-Serving gRPC "
                 "at %s", url, spec.token, url, spec.token, grpc_address)
        layout.root.mkdir(parents=True, exist_ok=True)
        if grpc_address:
            layout.console_grpc.write_text(f"{grpc_address}\n")
        layout.console_url.write_text(f"{url}\n")  # scripts and tests find the ports here
        if not spec.port or (grpc_address and not spec.grpc_port):
            # a free port picked at start: the standby takes over the same ones
            port = int(url.rstrip("/").rsplit(":", 1)[1])
            grpc_port = int(grpc_address.rsplit(":", 1)[1]) if grpc_address else 0
            self.spec = dataclasses.replace(spec, port=port, grpc_port=grpc_port)
        self.url = url
        if self._want_standby:
            self.standby = ConsoleProcess.spawn(self.spec, standby=True)

    def _check_alive(self) -> None:
        """Never blocks the training thread: a standby that is not loaded yet is left to
        load, and the next check tries again."""
        if self.active.process.is_alive():
            return
        standby = self.standby
        if standby is None or not standby.process.is_alive():
            log.error("console: its process exited with code %s and no standby is loaded: "
                      "starting a new one", self.active.process.exitcode)
            self.standby = ConsoleProcess.spawn(self.spec, standby=True)
            return
        if not standby.ready.poll(0):
            return  # still loading
        standby.ready.recv()  # "loaded"
        log.warning("console: its process exited with code %s; the standby takes over",
                    self.active.process.exitcode)
        self.active.end()
        standby.go.send("go")
        self.active, self.takeovers = standby, self.takeovers + 1
        self.standby = ConsoleProcess.spawn(self.spec, standby=True)

    def close(self) -> None:
        if self.standby is not None:
            self.standby.end()  # it serves nothing: no page to tell
        try:
            self.active.reports.put(None, timeout=5)  # 'stopped' reaches open pages first
        except (queue.Full, OSError, ValueError):  # gone or stuck: terminated below
            pass
        self.active.reports.cancel_join_thread()
        self.active.process.join(timeout=10)
        self.active.end()
        self._weights.close()
        if self.dropped:
            log.info("console: %d step reports dropped (its process fell behind)", self.dropped)


def start_console(config: Config, layout: RunLayout, controls: Controls,
                  model_weights: Callable[[], list[np.ndarray]]) -> ConsoleLink:
    """Rank 0 only: start the console process (its standby once it serves); no waiting."""
    token = config.console.token or secrets.token_urlsafe(16)
    first = model_weights()
    weights = SharedWeights.create([(w.shape, w.dtype.name) for w in first])
    spec = ConsoleSpec(
        template=config.model.template, params=dict(config.model.params),
        pretrained=config.model.pretrained, run_config=config_as_dict(config),
        host=config.console.host, port=config.console.port, token=token,
        model_name=config.console.model_name, grpc_port=config.console.grpc_port,
        weights_name=weights.name,
        weights_layout=weights.layout, metrics_log=str(layout.metrics),
        serving_dir=str(layout.serving(config.console.model_name)))
    active = ConsoleProcess.spawn(spec, standby=False)
    return ConsoleLink(spec, active, weights, controls, model_weights, layout,
                       standby=config.console.standby)
