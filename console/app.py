"""The console's Flask app: `create_app(...)` builds a fresh app and its SocketIO each time
(no module-level state), so tests get an isolated app per test.

Routes
    GET  /                              dashboard
    GET  /vendor/<file>                 Chart.js and socket.io-client from console/node_modules
    GET  /api/status, /api/history      run state, chart history
    POST /api/save, /api/stop           control (token required)
    GET  /v1/models/<name>[/metadata]   model status / input schema, step, version
    POST /v1/models/<name>:predict      {"instances": [...]} -> {"predictions": [...]}
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flask import Flask, abort, jsonify, render_template, request, send_file
from flask_socketio import SocketIO
from werkzeug.exceptions import HTTPException

from console.predictor import BadInput, NotReady, Predictor
from console.state import ConsoleState

NODE_MODULES = Path(__file__).with_name("node_modules")
VENDOR_FILES = {
    "chart.umd.min.js": NODE_MODULES / "chart.js" / "dist" / "chart.umd.min.js",
    "socket.io.min.js": NODE_MODULES / "socket.io-client" / "dist" / "socket.io.min.js",
}
MAX_BODY_BYTES = 1 << 20


def create_app(state: ConsoleState, predictor: Predictor | None,
               request_control: Callable[[str], None], token: str,
               model_name: str = "model", emit_interval_s: float = 0.2) -> tuple[Flask, SocketIO]:
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    socketio = SocketIO(app, async_mode="threading", cors_allowed_origins=[])

    def authorized() -> bool:
        given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        given = given or request.headers.get("X-Console-Token", "")
        return bool(given) and hmac.compare_digest(given, token)

    @app.errorhandler(HTTPException)
    def http_error(err: HTTPException) -> Any:
        return jsonify(error=err.description or err.name), err.code

    @app.get("/")
    def dashboard() -> Any:
        return render_template("dashboard.html", model_name=model_name)

    @app.get("/vendor/<name>")
    def vendor(name: str) -> Any:
        path = VENDOR_FILES.get(name)
        if path is None:
            abort(404, description=f"no vendored script {name!r}")
        if not path.is_file():
            abort(503, description="console scripts are not installed: run scripts/setup.sh "
                  "(npm ci in console/)")
        return send_file(path, mimetype="text/javascript", max_age=3600)

    @app.get("/api/status")
    def status() -> Any:
        return jsonify(**state.snapshot(), config=state.run_config)

    @app.get("/api/history")
    def history() -> Any:
        return jsonify(points=state.history())

    def control(name: str) -> Any:
        if not authorized():
            return jsonify(error="missing or wrong token: send 'Authorization: Bearer TOKEN' "
                           "(printed at start, or console.token)"), 401
        if state.status == "stopped":
            return jsonify(error="the run has stopped"), 409
        request_control(name)
        return jsonify(accepted=name, note="acted on by every rank at the next step"), 202

    @app.post("/api/save")
    def save() -> Any:
        return control("save")

    @app.post("/api/stop")
    def stop() -> Any:
        return control("stop")

    def model_or_404(name: str) -> Predictor:
        if name != model_name or predictor is None:
            abort(404, description=f"no model {name!r}; this console serves {model_name!r}")
        return predictor

    @app.get("/v1/models/<name>")
    def model_status(name: str) -> Any:
        served = model_or_404(name)
        return jsonify(model_version_status=[{"version": str(served.version),
                                              "state": "AVAILABLE" if served.version else
                                              "LOADING"}])

    @app.get("/v1/models/<name>/metadata")
    def model_metadata(name: str) -> Any:
        served = model_or_404(name)
        schema = served.schema
        return jsonify(model=name, version=served.version, step=served.version,
                       max_batch=served.max_batch, inputs={
                           schema.features: {"dtype": str(schema.dtype[schema.features].base),
                                             "shape": [-1, *schema.feature_shape]}})

    @app.post("/v1/models/<path:spec>")
    def predict(spec: str) -> Any:
        name, sep, verb = spec.rpartition(":")
        if not sep or verb != "predict":
            abort(404, description="use POST /v1/models/<name>:predict")
        served = model_or_404(name)
        body = request.get_json(silent=True)
        if body is None:
            abort(400, description="body must be JSON with Content-Type: application/json")
        try:
            x = served.validate(body)
        except BadInput as err:
            abort(400, description=str(err))
        try:
            version, predictions = served.predict(x)
        except NotReady as err:
            abort(503, description=str(err))
        return jsonify(predictions=predictions, model_version=str(version))

    @socketio.on("connect")
    def connected() -> None:
        # a page opened mid-run first gets the history, then live updates
        socketio.emit("history", {"points": state.history(), **state.snapshot(),
                                  "config": state.run_config}, to=request.sid)  # type: ignore[attr-defined]

    def emit_pending() -> None:
        reports = state.drain()
        if reports:
            socketio.emit("reports", {"reports": reports, **state.snapshot()})

    def emitter() -> None:
        while True:
            emit_pending()
            socketio.sleep(emit_interval_s)

    app.extensions["hvd_online"] = {"emit_pending": emit_pending, "emitter": emitter}
    return app, socketio
