"""The console's routes, grouped in three blueprints (flaskr style); `create_app` registers
them with the collaborators they need.

    dashboard  GET /, /vendor/<file>, /api/status, /api/history
    control    POST /api/save, /api/stop (token required)
    models     GET /v1/models/<name>[/metadata], POST /v1/models/<name>:predict
    metrics    GET /metrics (Prometheus; read-only, no token)
"""

from __future__ import annotations

import hmac
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from flask import Blueprint, Response, abort, jsonify, render_template, request, send_file
from prometheus_client import CONTENT_TYPE_LATEST

from console.predictor import BadInput, NotReady, Predictor
from console.state import ConsoleState

NODE_MODULES = Path(__file__).with_name("node_modules")
#: browser scripts from npm (console/package-lock.json), served locally: no CDN
VENDOR_FILES = {
    "chart.umd.min.js": NODE_MODULES / "chart.js" / "dist" / "chart.umd.min.js",
    "socket.io.min.js": NODE_MODULES / "socket.io-client" / "dist" / "socket.io.min.js",
}
Reply = Response | tuple[Response, int]


def json_body() -> Any:
    """The request's JSON body. Anything the parser refuses, including nesting too deep for
    it (a RecursionError, which Flask's own get_json lets through as a 500), is a 400."""
    if not request.is_json:
        abort(400, description="body must be JSON with Content-Type: application/json")
    try:
        return json.loads(request.get_data())
    except (ValueError, RecursionError) as err:
        abort(400, description=f"body is not valid JSON: {type(err).__name__}")


def same_token(given: str, token: str) -> bool:
    """Constant-time comparison of a header's token with ours. As bytes: `hmac` refuses
    non-ASCII `str`, and headers can carry any byte."""
    return hmac.compare_digest(given.encode("utf-8", "surrogateescape"), token.encode("utf-8"))


def dashboard_blueprint(state: ConsoleState, model_name: str) -> Blueprint:
    bp = Blueprint("dashboard", __name__)

    @bp.get("/")
    def dashboard() -> str:
        return render_template("dashboard.html", model_name=model_name)

    @bp.get("/vendor/<name>")
    def vendor(name: str) -> Response:
        path = VENDOR_FILES.get(name)
        if path is None:
            abort(404, description=f"no vendored script {name!r}")
        if not path.is_file():
            abort(503, description="console scripts are not installed: run scripts/setup.sh "
                  "(npm ci in console/)")
        return send_file(path, mimetype="text/javascript", max_age=3600)

    @bp.get("/api/status")
    def status() -> Response:
        return jsonify(**state.snapshot(), config=state.run_config)

    @bp.get("/api/history")
    def history() -> Response:
        return jsonify(points=state.history())

    return bp


def control_blueprint(state: ConsoleState, request_control: Callable[[str], None],
                      token: str) -> Blueprint:
    bp = Blueprint("control", __name__)

    def authorized() -> bool:
        given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        given = given or request.headers.get("X-Console-Token", "")
        return bool(given) and same_token(given, token)

    def control(name: str) -> Reply:
        if not authorized():
            return jsonify(error="missing or wrong token: send 'Authorization: Bearer TOKEN' "
                           "(printed at start, or console.token)"), 401
        if state.status == "stopped":
            return jsonify(error="the run has stopped"), 409
        request_control(name)
        return jsonify(accepted=name, note="acted on by every rank at the next step"), 202

    @bp.post("/api/save")
    def save() -> Reply:
        return control("save")

    @bp.post("/api/stop")
    def stop() -> Reply:
        return control("stop")

    return bp


def models_blueprint(predictor: Predictor | None, model_name: str,
                     record_latency: Callable[[float], None]) -> Blueprint:
    """TF-Serving's REST shape: status, metadata and predict for one model. Each answered
    predict's latency goes to `record_latency` (the histogram, the console's recent window)."""
    bp = Blueprint("models", __name__)

    def model_or_404(name: str) -> Predictor:
        if name != model_name or predictor is None:
            abort(404, description=f"no model {name!r}; this console serves {model_name!r}")
        return predictor

    @bp.get("/v1/models/<name>")
    def model_status(name: str) -> Response:
        served = model_or_404(name)
        return jsonify(model_version_status=[{"version": str(served.version),
                                              "state": "AVAILABLE" if served.version else
                                              "LOADING"}])

    @bp.get("/v1/models/<name>/metadata")
    def model_metadata(name: str) -> Response:
        served = model_or_404(name)
        schema = served.schema
        return jsonify(model=name, version=served.version, step=served.version,
                       max_batch=served.max_batch, inputs={
                           schema.features: {"dtype": str(schema.dtype[schema.features].base),
                                             "shape": [-1, *schema.feature_shape]}})

    @bp.post("/v1/models/<path:spec>")
    def predict(spec: str) -> Response:
        name, sep, verb = spec.rpartition(":")
        if not sep or verb != "predict":
            abort(404, description="use POST /v1/models/<name>:predict")
        served = model_or_404(name)
        started = time.perf_counter()
        try:
            x = served.validate(json_body())
        except BadInput as err:
            abort(400, description=str(err))
        try:
            version, predictions = served.predict(x)
        except NotReady as err:
            abort(503, description=str(err))
        reply = jsonify(predictions=predictions, model_version=str(version))
        record_latency(time.perf_counter() - started)
        return reply

    return bp


class Renders(Protocol):
    def render(self) -> bytes: ...


def metrics_blueprint(metrics: Renders) -> Blueprint:
    bp = Blueprint("metrics", __name__)

    @bp.get("/metrics")
    def scrape() -> Response:
        return Response(metrics.render(), mimetype=CONTENT_TYPE_LATEST)

    return bp
