"""The console in a process of its own on rank 0's host: web requests (the dashboard,
Socket.IO, save/stop, predict) never take the training process's GIL or wait on its steps.

    training process                              console process
    ConsoleLink --- step reports (queue) ------>  ConsoleState, RunMetrics
                --- weights (shared memory) --->  Predictor (its own model)
                <-- save/stop (queue) ----------  control routes

Started with "spawn" (a fresh interpreter: forking a process that runs TensorFlow and
Horovod threads is unsafe). It exits when told to, and by itself when its parent is gone (a
kill -9 of rank 0 must not leave a process holding the console's port).
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

#: how often the console process looks for newer weights in shared memory
WEIGHTS_POLL_S = 0.02


@dataclass(frozen=True)
class ConsoleSpec:
    """Everything the console process needs, picklable."""

    template: str
    params: dict[str, Any]
    pretrained: str
    run_config: dict[str, Any]
    host: str
    port: int
    token: str
    model_name: str
    weights_name: str
    weights_layout: list[tuple[tuple[int, ...], str]]
    grpc_port: int
    #: the run's metrics log (the history of earlier launches) and TF-Serving versions
    metrics_log: str
    serving_dir: str


def serve(spec: ConsoleSpec, reports: Any, controls: Any, ready: Any,
          go: Any = None) -> None:
    """The console process's main: serve until a None report arrives or the parent dies.

    With `go` (a pipe), it is a standby: it imports and builds everything, says "loaded" on
    `ready`, and binds its ports only once `go` says so (the console it stands by for died):
    taking over then costs no interpreter start, no TensorFlow import and no model build."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s",
                        datefmt="%H:%M:%S")
    parent = os.getppid()
    from console.app import create_app
    from console.predictor import Predictor
    from console.server import ConsoleServer
    from console.shared_weights import SharedWeights
    from console.state import ConsoleState
    from hvd_online.model.template import build_model, load_template

    template = load_template(spec.template, spec.params)
    predictor = Predictor(build_model(template, spec.pretrained), template.schema)
    state = ConsoleState(spec.run_config, metrics_log=Path(spec.metrics_log),
                         serving_dir=Path(spec.serving_dir))
    if go is not None:
        ready.send("loaded")
        log.info("console standby: loaded, takes over if the console dies")
        while not go.poll(1.0):
            if os.getppid() != parent:
                os._exit(0)
        go.recv()
        # what the console before it showed, up to now (the metrics log is rank 0's record):
        # the history was read at load, only what came since is read now
        state.catch_up()
    console = create_app(state, predictor, controls.put, spec.token,
                         model_name=spec.model_name)
    server = bind(lambda: ConsoleServer(console, spec.host, spec.port))
    grpc_server = bind(lambda: start_grpc(spec, predictor, console.record_latency))
    weights = SharedWeights.attach(spec.weights_name, spec.weights_layout)
    ready.send((server.url, grpc_server.address if grpc_server else ""))

    def feed_weights() -> None:
        seen = -1
        while True:
            if weights.published_step() != seen:
                snapshot = weights.read()
                if snapshot is not None:
                    seen = snapshot[0]
                    predictor.publish(*snapshot)
            time.sleep(WEIGHTS_POLL_S)

    threading.Thread(target=feed_weights, name="weights-feed", daemon=True).start()
    while True:
        try:
            report = reports.get(timeout=1.0)
        except queue.Empty:
            if os.getppid() != parent:  # rank 0 is gone without a word
                os._exit(0)
            continue
        if report is None:
            break
        state.push(report)
        console.metrics.observe(report)
    server.finish()
    if grpc_server is not None:
        grpc_server.stop()


def bind(start: Any, within_s: float = 5.0) -> Any:
    """Start a server, retrying while its port is still held (by the console this one
    replaces, whose sockets the kernel may not have released yet)."""
    deadline = time.monotonic() + within_s
    while True:
        try:
            return start()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def start_grpc(spec: ConsoleSpec, predictor: Any, record_latency: Any) -> Any:
    """TF-Serving's gRPC API, when its protos are installed (scripts/setup.sh installs
    tensorflow-serving-api with --no-deps: its wheel asks for a second TensorFlow)."""
    try:
        from console.grpc_service import GrpcServer
    except ImportError as err:
        log.warning("TF-Serving gRPC API off: %s (pip install --no-deps "
                    "tensorflow-serving-api==2.21.0)", err)
        return None
    return GrpcServer(predictor, spec.model_name, spec.host, spec.grpc_port, record_latency)
