"""The console's Flask app: `create_app(...)` builds a fresh app and its SocketIO each time
(no module-level state), so tests get an isolated app per test. Routes: `console/routes.py`.

>>> console = create_app(ConsoleState({}), None, print, token="t")
>>> console.app.test_client().get("/api/status").get_json()["status"]
'starting'
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from flask import Flask, Response, jsonify, request
from flask_socketio import SocketIO
from werkzeug.exceptions import HTTPException

from console.engineio_errors import JsonEngineErrors
from console.metrics import RunMetrics
from console.predictor import Predictor
from console.routes import (
    control_blueprint,
    dashboard_blueprint,
    metrics_blueprint,
    models_blueprint,
)
from console.state import ConsoleState

MAX_BODY_BYTES = 1 << 20


@dataclass(frozen=True)
class Console:
    """The app, its Socket.IO server, and the emitter that pushes queued reports to pages."""

    app: Flask
    socketio: SocketIO
    state: ConsoleState
    metrics: RunMetrics
    emit_interval_s: float
    #: every answered predict's latency, REST's or gRPC's (the histogram, the recent window)
    record_latency: Callable[[float], None]

    def emit_pending(self) -> None:
        """Send the reports queued since the last call to every open page."""
        reports = self.state.drain()
        if reports:
            self.socketio.emit("reports", {"reports": reports, **self.state.snapshot()})

    def emitter(self) -> None:
        """The background task that keeps pages live."""
        while True:
            self.emit_pending()
            self.socketio.sleep(self.emit_interval_s)


def json_errors(app: Flask) -> None:
    """Every error a JSON object, as every answer is: 4xx for the client's mistakes, 500
    only for a bug (logged)."""

    @app.errorhandler(HTTPException)
    def http_error(err: HTTPException) -> tuple[Response, int]:
        return jsonify(error=err.description or err.name), err.code or 500

    @app.errorhandler(Exception)
    def server_error(err: Exception) -> tuple[Response, int]:
        # a bug, never bad input (that is a 4xx above): logged, and still JSON for clients
        app.logger.exception("request failed")
        return jsonify(error=f"internal error: {type(err).__name__}"), 500


def create_app(state: ConsoleState, predictor: Predictor | None,
               request_control: Callable[[str], None], token: str,
               model_name: str = "model", emit_interval_s: float = 0.2) -> Console:
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    socketio = SocketIO(app, async_mode="threading", cors_allowed_origins=[])
    app.wsgi_app = JsonEngineErrors(app.wsgi_app)  # type: ignore[method-assign]

    json_errors(app)

    app.register_blueprint(dashboard_blueprint(state, model_name))
    app.register_blueprint(control_blueprint(state, request_control, token))
    def serving_version() -> int:
        return predictor.latest_version if predictor else 0

    metrics = RunMetrics(serving_version=serving_version)
    state.serving_version = serving_version

    def record_latency(seconds: float) -> None:
        metrics.predict_latency.observe(seconds)
        state.predicts.add(seconds)

    app.register_blueprint(models_blueprint(predictor, model_name, record_latency))
    app.register_blueprint(metrics_blueprint(metrics))

    @socketio.on("connect")
    def connected() -> None:
        # a page opened mid-run first gets the history, then live updates
        socketio.emit("history", {"points": state.history(), **state.snapshot(),
                                  "config": state.run_config}, to=request.sid)  # type: ignore[attr-defined]

    return Console(app, socketio, state, metrics, emit_interval_s, record_latency)
