"""Runs the console inside rank 0's training process and links it to the trainer.

The web server runs in daemon threads (Werkzeug's threaded server; WebSocket through
simple-websocket). The trainer talks to it only through `ConsoleHook.on_report`, which never
blocks: reports go to a bounded drop-oldest queue, weights to the predictor's snapshot slot.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from werkzeug.serving import make_server

from console.app import create_app
from console.predictor import Predictor
from console.state import ConsoleState
from hvd_online.config import Config, config_as_dict
from hvd_online.control import Controls
from hvd_online.reports import StepReport
from hvd_online.template import ModelTemplate, build_model

log = logging.getLogger("hvd_online.console")


class ConsoleHook:
    """The trainer's side of the console (called on the training thread)."""

    def __init__(self, state: ConsoleState, predictor: Predictor, build_predict_model: Any,
                 emit_pending: Any, server: Any, publish_every_s: float = 0.25) -> None:
        self.state = state
        self.predictor = predictor
        self._build_predict_model = build_predict_model
        self._emit_pending = emit_pending
        self._server = server
        self.publish_every_s = publish_every_s
        self._published = 0.0

    def on_applied(self, step: int, rows: np.ndarray) -> None:
        pass

    def on_report(self, report: StepReport, model: Any) -> None:
        if self._build_predict_model is not None:
            # built after the trainer's model (so Keras names on rank 0 match other ranks')
            self.predictor.attach(self._build_predict_model())
            self._build_predict_model = None
        self.state.push(report.as_json())
        now = time.monotonic()
        if report.applied and (now - self._published >= self.publish_every_s
                               or report.stopped or report.checkpoint):
            self._published = now
            self.predictor.publish(report.step, model.get_weights())

    def finish(self, linger_s: float = 1.0) -> None:
        """Send what is left (e.g. 'stopped') to open pages before the process exits."""
        self._emit_pending()
        time.sleep(linger_s)
        self._server.shutdown()


def start_console(config: Config, template: ModelTemplate, controls: Controls) -> ConsoleHook:
    token = config.console.token or secrets.token_urlsafe(16)
    state = ConsoleState(config_as_dict(config))
    predictor = Predictor(None, template.schema)
    name = config.console.model_name
    app, socketio = create_app(state, predictor, controls.request, token, model_name=name)
    server = make_server(config.console.host, config.console.port, app, threaded=True)
    port = server.server_port
    threading.Thread(target=server.serve_forever, name="console-http", daemon=True).start()
    socketio.start_background_task(app.extensions["hvd_online"]["emitter"])
    url = f"http://{config.console.host}:{port}/"
    log.info("console at %s  (token for save/stop: %s; open %s?token=%s)", url, token, url,
             token)
    run_dir = Path(config.run.dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "console.url").write_text(f"{url}\n")  # scripts and tests find the port here
    return ConsoleHook(state, predictor,
                       lambda: build_model(template, config.model.pretrained),
                       app.extensions["hvd_online"]["emit_pending"], server)
