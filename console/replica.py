"""A serving replica's web app: TF-Serving's REST API (the console's routes, limits and
codes), `/metrics`, and `GET /api/serving`, which says which version is served and how old
it is. No dashboard and no Socket.IO: a replica only answers predict, and keeps answering
with the newest version it has while training is down.

>>> status = ServingStatus()
>>> app = create_replica_app(None, "model", status)
>>> app.test_client().get("/api/serving").get_json()["version"]
0
>>> status.applied(version=3, step=120, created_ms=1_000, now_ms=1_250)
>>> reply = app.test_client().get("/api/serving").get_json()
>>> reply["version"], reply["step"], reply["update_delay_s"]
(3, 120, 0.25)
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable
from typing import Any

from flask import Flask, Response, jsonify
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from console.app import MAX_BODY_BYTES, json_errors
from console.metrics import PREDICT_BUCKETS
from console.predictor import Predictor
from console.routes import metrics_blueprint, models_blueprint

#: update -> served delay buckets in seconds: the target is p99 < 1 s
#: the update delays /api/serving gives quantiles of
RECENT = 1000
DELAY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class ServingStatus:
    """What a replica serves and how fresh it is; its own Prometheus registry."""

    def __init__(self, following: Callable[[], bool] = lambda: False) -> None:
        self._lock = threading.Lock()
        self.version = 0
        self.step = -1
        self.created_ms = 0
        self.applied_ms = 0
        self.delay_s = 0.0
        self._recent: collections.deque[float] = collections.deque(maxlen=RECENT)
        self.following = following
        self.registry = registry = CollectorRegistry()
        self.predict_latency = Histogram(
            "hvd_online_predict_latency_seconds", "Predict latency, validation to reply",
            buckets=PREDICT_BUCKETS, registry=registry)
        self.update_delay = Histogram(
            "hvd_online_serving_update_delay_seconds",
            "From training taking the weights to this replica serving them",
            buckets=DELAY_BUCKETS, registry=registry)
        self.updates = Counter("hvd_online_serving_updates", "Model versions applied",
                               registry=registry)
        gauges = {
            "version": ("Model version served (never goes back)", lambda: self.version),
            "step": ("Training step of the weights served (-1: none yet)", lambda: self.step),
            "model_age_seconds": ("Seconds since training took the weights served "
                                  "(-1: none yet)", self.age_s),
            "following": ("1 while the model-updates topic is being read",
                          lambda: float(self.following())),
        }
        for name, (doc, read) in gauges.items():
            Gauge(f"hvd_online_serving_{name}", doc, registry=registry).set_function(read)

    def applied(self, version: int, step: int, created_ms: int, now_ms: int | None = None,
                trained_ms: int = 0) -> None:
        """A version is served from now on. Its update delay runs from `trained_ms` (the
        oldest step it was the first version to hold), else from `created_ms`."""
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        with self._lock:
            self.version, self.step, self.created_ms = version, step, created_ms
            self.applied_ms = now_ms
            self.delay_s = max(0.0, (now_ms - (trained_ms or created_ms)) / 1000)
            self._recent.append(self.delay_s)
        self.updates.inc()
        self.update_delay.observe(self.delay_s)

    def delay_quantiles(self) -> dict[str, float | None]:
        """p50/p99 of the update delays of the last RECENT versions."""
        ordered = sorted(self._recent)
        if not ordered:
            return {"p50": None, "p99": None, "versions": 0}

        def pick(q: float) -> float:
            return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 3)

        return {"p50": pick(0.5), "p99": pick(0.99), "versions": len(ordered)}

    def age_s(self) -> float:
        created = self.created_ms
        return -1.0 if not created else max(0.0, time.time() - created / 1000)

    def as_json(self) -> dict[str, Any]:
        with self._lock:
            return {"version": self.version, "step": self.step, "age_s": round(self.age_s(), 3),
                    "created_ms": self.created_ms, "applied_ms": self.applied_ms,
                    "update_delay_s": round(self.delay_s, 3),
                    "update_delay_recent_s": self.delay_quantiles(),
                    "following": self.following()}

    def render(self) -> bytes:
        return generate_latest(self.registry)


def create_replica_app(predictor: Predictor | None, model_name: str,
                       status: ServingStatus) -> Flask:
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES

    json_errors(app)

    app.register_blueprint(models_blueprint(predictor, model_name,
                                            status.predict_latency.observe))
    app.register_blueprint(metrics_blueprint(status))

    @app.get("/api/serving")
    def serving() -> Response:
        return jsonify(model=model_name, **status.as_json())

    return app
