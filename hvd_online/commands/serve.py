"""`hvd-online serve CONFIG`: a serving replica, apart from the training job.

    model-updates topic --(UpdateFollower: full versions and deltas, in order)--> Predictor
    Predictor <-- REST (TF-Serving's routes, /api/serving, /metrics) and gRPC (TF-Serving's)

A replica needs the config's template (to build the model) and the broker; nothing of the
job. It answers with the newest version it has whatever training does (a rank killed, the
job relaunched, the broker away), and says how old that version is. Start as many as wanted,
on any host; `hvd-online run` starts `serving.replicas` of them and restarts one that dies.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from hvd_online.config import Config
from hvd_online.errors import HvdOnlineError
from hvd_online.model.template import build_model, load_template
from hvd_online.state.run_dir import RunLayout
from streams.model_updates import Header
from streams.pulsar.model_updates import UpdateFollower, model_updates_topic

log = logging.getLogger(__name__)


def updates_topic(config: Config) -> str:
    """The model-updates topic of this config's job."""
    return model_updates_topic(config.join.events_topic or config.stream.topic)


def replica_ports(config: Config, index: int) -> tuple[int, int]:
    """REST and gRPC ports of replica `index` (0 stays 0: a free port each)."""
    serving = config.serving
    return (serving.rest_port + index if serving.rest_port else 0,
            serving.grpc_port + index if serving.grpc_port else 0)


def serve_command(config: Config, index: int = 0, stop: threading.Event | None = None) -> int:
    from console.grpc_service import GrpcServer
    from console.predictor import Predictor
    from console.replica import ServingStatus, create_replica_app
    from console.server import HttpServer

    if not config.stream.url:
        msg = "serve needs --url (or stream.url): the broker the trainer publishes to"
        raise HvdOnlineError(msg)
    template = load_template(config.model.template, config.model.params)
    predictor = Predictor(build_model(template, config.model.pretrained), template.schema)
    model_name = config.console.model_name
    follower: list[UpdateFollower] = []
    status = ServingStatus(following=lambda: bool(follower) and follower[0].connected)

    def on_version(header: Header, arrays: Sequence[np.ndarray]) -> None:
        predictor.publish(header.version, list(arrays))
        predictor.load()
        status.applied(header.version, header.step, header.created_ms,
                       trained_ms=header.trained_ms)

    rest_port, grpc_port = replica_ports(config, index)
    host = config.serving.host
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request
    server = HttpServer(create_replica_app(predictor, model_name, status), host, rest_port)
    grpc_server = GrpcServer(predictor, model_name, host, grpc_port,
                             status.predict_latency.observe, describe=status.as_json)
    topic = updates_topic(config)
    follower.append(UpdateFollower(config.stream.url, topic, on_version,
                                   dict(config.stream.client_options)))
    write_address(RunLayout.of(config).replica(index), server.url, grpc_server.address)
    log.info("serving replica %d: REST %s, gRPC %s, following %s", index, server.url,
             grpc_server.address, topic)
    if stop is None:  # the command's own process: kill -15 and Ctrl-C stop it
        stop = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())  # type: ignore[union-attr]
    stop.wait()
    follower[0].close()
    grpc_server.stop()
    server.shutdown()
    return 0


def write_address(path: Path, rest: str, grpc: str) -> None:
    """Where clients, scripts and tests find a replica (written aside, then renamed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_suffix(".tmp")
    staging.write_text(json.dumps({"rest": rest, "grpc": grpc, "pid": os.getpid()}) + "\n")
    staging.replace(path)
