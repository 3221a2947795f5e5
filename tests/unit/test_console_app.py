"""The console in-process: Flask test client and Socket.IO test client on a fresh app."""

import json

import keras
import numpy as np
import pytest

from console.app import create_app
from console.predictor import Predictor
from console.routes import VENDOR_FILES
from console.state import ConsoleState
from hvd_online.training.reports import StepReport
from streams.schema import Schema

TOKEN = "s3cret"
SCHEMA = Schema.from_fields([("id", "<i8"), ("x", "<f4", (3,)), ("y", "<f4")],
                            features="x", label="y", key="id")


def report(step: int, **extra) -> dict:
    fields = dict(step=step, count=10, samples_total=10 * step, loss=1.0 / step, metric=0.5,
                  applied=True, elapsed_s=float(step), samples_per_s=10.0,
                  rank_step_time_s=[0.01, 0.02], rank_fill=[1.0, 0.5],
                  partition_backlog=[0, 3, 1, 0])
    fields.update(extra)
    return StepReport(**fields).as_json()


@pytest.fixture
def model():
    keras.utils.set_random_seed(1)
    return keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])


@pytest.fixture
def console(model):
    state = ConsoleState({"train": {"learning_rate": 0.1}})
    predictor = Predictor(model, SCHEMA, max_batch=8)
    requests: list[str] = []
    console = create_app(state, predictor, requests.append, TOKEN, model_name="mlp")
    console.app.testing = True
    return state, predictor, requests, console.app, console


def test_page_opened_mid_run_gets_history_then_live_updates(console):
    state, _, _, app, live_console = console
    socketio = live_console.socketio
    for step in (1, 2, 3):
        state.push(report(step))
    client = socketio.test_client(app)
    received = client.get_received()
    assert [e["name"] for e in received] == ["history"]
    history = received[0]["args"][0]
    assert [p["step"] for p in history["points"]] == [1, 2, 3]
    assert history["status"] == "training"
    assert history["config"] == {"train": {"learning_rate": 0.1}}

    state.push(report(4, checkpoint="/runs/x/ckpt-4"))
    live_console.emit_pending()
    live = client.get_received()
    assert [e["name"] for e in live] == ["reports"]
    batch = live[0]["args"][0]
    assert [r["step"] for r in batch["reports"]] == [1, 2, 3, 4]  # nothing drained before
    assert batch["last_checkpoint"] == {"step": 4, "path": "/runs/x/ckpt-4"}


def test_queue_is_bounded_and_drops_oldest():
    state = ConsoleState({}, queue_size=5)
    for step in range(1, 21):
        state.push(report(step))
    assert [r["step"] for r in state.drain()] == [16, 17, 18, 19, 20]
    assert state.dropped == 15
    assert len(state.history()) == 20  # the chart history is kept separately


def test_history_is_thinned_not_truncated():
    state = ConsoleState({}, max_history=100)
    for step in range(1, 1001):
        state.push(report(step))
    steps = [p["step"] for p in state.history()]
    assert len(steps) <= 100
    assert steps[0] == 1 and steps[-1] > 900  # covers the whole run


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"},
                                     {"X-Console-Token": "nope"}])
@pytest.mark.parametrize("action", ["save", "stop"])
def test_controls_need_the_token(console, headers, action):
    _, _, requests, app, _ = console
    response = app.test_client().post(f"/api/{action}", headers=headers)
    assert response.status_code == 401
    assert "token" in response.get_json()["error"]
    assert requests == []


def test_controls_with_token_reach_the_trainer(console):
    state, _, requests, app, _ = console
    client = app.test_client()
    ok = client.post("/api/save", headers={"Authorization": f"Bearer {TOKEN}"})
    assert ok.status_code == 202 and ok.get_json()["accepted"] == "save"
    ok = client.post("/api/stop", headers={"X-Console-Token": TOKEN})
    assert ok.status_code == 202
    assert requests == ["save", "stop"]
    state.push(report(5, stopped="stop"))
    late = client.post("/api/save", headers={"Authorization": f"Bearer {TOKEN}"})
    assert late.status_code == 409 and requests == ["save", "stop"]


def test_predict_uses_the_published_snapshot(console, model):
    _, predictor, _, app, _ = console
    weights = [np.full_like(w, 0.5) for w in model.get_weights()]
    predictor.publish(42, weights)
    x = [[1.0, 2.0, 3.0], [0.0, 0.0, 1.0]]
    response = app.test_client().post("/v1/models/mlp:predict", json={"instances": x})
    assert response.status_code == 200
    body = response.get_json()
    assert body["model_version"] == "42"
    expected = np.asarray(x) @ weights[0] + weights[1]
    np.testing.assert_allclose(body["predictions"], expected, rtol=1e-6)
    named = app.test_client().post("/v1/models/mlp:predict", json={"instances": [{"x": x[0]}]})
    np.testing.assert_allclose(named.get_json()["predictions"], expected[:1], rtol=1e-6)


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        ({"instances": [[1, 2]]}, 400, "shape [3]"),
        ({"instances": [[1, 2, 3], [1, 2]]}, 400, "shape [3]"),
        ({"instances": [["a", "b", "c"]]}, 400, "must be numbers"),
        ({"instances": [[True, 1, 2]]}, 400, "must be numbers"),
        ({"instances": [[None, 1, 2]]}, 400, "must be numbers"),
        ({"instances": []}, 400, "non-empty list"),
        ({"instances": "abc"}, 400, "non-empty list"),
        ({"inputs": [[1, 2, 3]]}, 400, '{"instances": [...]}'),
        ([1, 2, 3], 400, '{"instances": [...]}'),
        ({"instances": [[0, 0, 0]] * 9}, 400, "at most 8"),
        ({"instances": [{"z": [1, 2, 3]}]}, 400, "must have the key 'x'"),
        ({"instances": [{"x": [1, 2, 3], "extra": 1}]}, 400, "and no other"),
        ({"instances": [{"x": [1, 2, 3]}, [1, 2, 3]]}, 400, "not a mix (instance 1"),
        ({"instances": [[1, 2, 3], {"x": [1, 2, 3]}]}, 400, "not a mix (instance 1"),
    ],
)
def test_predict_rejects_bad_input_with_json_4xx(console, body, status, fragment):
    _, _, _, app, _ = console
    response = app.test_client().post("/v1/models/mlp:predict", json=body)
    assert response.status_code == status
    assert fragment in response.get_json()["error"]


def test_predict_rejects_non_json_nan_huge_and_unknown(console):
    _, _, _, app, _ = console
    client = app.test_client()
    not_json = client.post("/v1/models/mlp:predict", data="instances=1",
                           content_type="text/plain")
    assert not_json.status_code == 400 and "JSON" in not_json.get_json()["error"]
    broken = client.post("/v1/models/mlp:predict", data="{bad", content_type="application/json")
    assert broken.status_code == 400
    nan = client.post("/v1/models/mlp:predict", data='{"instances": [[NaN, 1, 2]]}',
                      content_type="application/json")
    assert nan.status_code == 400 and "NaN" in nan.get_json()["error"]
    huge = client.post("/v1/models/mlp:predict",
                       data=json.dumps({"instances": [[0.0] * 3] * 100000}),
                       content_type="application/json")
    assert huge.status_code == 413 and "error" in huge.get_json()
    unknown = client.post("/v1/models/other:predict", json={"instances": [[1, 2, 3]]})
    assert unknown.status_code == 404 and "'mlp'" in unknown.get_json()["error"]
    wrong_verb = client.post("/v1/models/mlp:classify", json={"instances": [[1, 2, 3]]})
    assert wrong_verb.status_code == 404


def test_metadata_and_status_routes(console):
    _, predictor, _, app, _ = console
    client = app.test_client()
    meta = client.get("/v1/models/mlp/metadata").get_json()
    assert meta["inputs"] == {"x": {"dtype": "float32", "shape": [-1, 3]}}
    assert client.get("/v1/models/mlp").get_json()["model_version_status"][0]["state"] == "LOADING"
    status = client.get("/api/status").get_json()
    assert status["status"] == "starting"


def test_dashboard_and_vendored_scripts_are_served_locally(console):
    _, _, _, app, _ = console
    client = app.test_client()
    page = client.get("/").get_data(as_text=True)
    assert "/vendor/chart.umd.min.js" in page and "/vendor/socket.io.min.js" in page
    assert "http" not in page.split("<body")[0].replace("http-equiv", "")  # nothing remote
    for name, path in VENDOR_FILES.items():
        response = client.get(f"/vendor/{name}")
        assert response.status_code == 200, f"{path} missing: run scripts/setup.sh"
        assert len(response.get_data()) > 10000
    assert client.get("/vendor/evil.js").status_code == 404
