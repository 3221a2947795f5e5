"""Links the training loop to the console on rank 0: the console is one report consumer.

The link runs on the training thread and never blocks it: reports go to the console's
bounded drop-oldest queue, weights to the predictor's snapshot slot (copied at most every
`publish_every_s`, and at checkpoints and the end).
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable

import numpy as np

from console.app import create_app
from console.metrics import RunMetrics
from console.predictor import Predictor
from console.server import ConsoleServer
from console.state import ConsoleState
from hvd_online.config import Config, config_as_dict
from hvd_online.control import Controls
from hvd_online.layout import RunLayout
from hvd_online.reports import StepReport
from hvd_online.template import ModelTemplate, build_model

log = logging.getLogger(__name__)


class ConsoleLink:
    def __init__(self, state: ConsoleState, metrics: RunMetrics, predictor: Predictor,
                 server: ConsoleServer, weights: Callable[[], list[np.ndarray]],
                 publish_every_s: float = 0.25) -> None:
        self.state = state
        self.metrics = metrics
        self.predictor = predictor
        self.server = server
        self._weights = weights
        self.publish_every_s = publish_every_s
        self._published = 0.0

    def __call__(self, report: StepReport) -> None:
        figures = report.as_json()
        self.state.push(figures)
        self.metrics.observe(figures)
        now = time.monotonic()
        if report.applied and (now - self._published >= self.publish_every_s
                               or report.stopped or report.checkpoint):
            self._published = now
            self.predictor.publish(report.step, self._weights())

    def close(self) -> None:
        self.server.finish()


def start_console(config: Config, layout: RunLayout, template: ModelTemplate,
                  controls: Controls, weights: Callable[[], list[np.ndarray]]) -> ConsoleLink:
    """Rank 0 only: the one web server. Call after the trainer built its model (Keras names
    layers by a process-wide counter; the predictor's copy must not shift the trainer's)."""
    token = config.console.token or secrets.token_urlsafe(16)
    state = ConsoleState(config_as_dict(config))
    predictor = Predictor(build_model(template, config.model.pretrained), template.schema)
    console = create_app(state, predictor, controls.request, token,
                         model_name=config.console.model_name)
    server = ConsoleServer(console, config.console.host, config.console.port)
    log.info("console at %s  (token for save/stop: %s; open %s?token=%s)", server.url, token,
             server.url, token)
    layout.root.mkdir(parents=True, exist_ok=True)
    layout.console_url.write_text(f"{server.url}\n")  # scripts and tests find the port here
    return ConsoleLink(state, console.metrics, predictor, server, weights)
