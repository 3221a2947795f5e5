"""Property-based fuzzing of every console route: whatever the method, headers (any bytes),
body (JSON or not, nested thousands deep, huge numbers, sizes around the limit), the answer
is never a 5xx, every error is a JSON {"error": ...}, and the console still answers after.

In CI this runs in-process (Flask test client). Against a live run, as README shows:

    HVD_FUZZ_URL=http://127.0.0.1:8080 HVD_FUZZ_MODEL=drift HVD_FUZZ_EXAMPLES=5000 \\
        .venv/bin/python -m pytest -q tests/unit/test_console_fuzz.py -p no:cacheprovider
"""

from __future__ import annotations

import http.client
import json
import os
from urllib.parse import urlsplit

import keras
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from console.app import MAX_BODY_BYTES, create_app
from console.predictor import Predictor
from console.state import ConsoleState
from streams.schema import Schema

LIVE_URL = os.environ.get("HVD_FUZZ_URL")
MODEL = os.environ.get("HVD_FUZZ_MODEL", "mlp")
EXAMPLES = int(os.environ.get("HVD_FUZZ_EXAMPLES", "300"))
SCHEMA = Schema.from_fields([("id", "<i8"), ("x", "<f4", (3,)), ("y", "<f4")],
                            features="x", label="y", key="id")

ROUTES = [("GET", "/"), ("GET", "/api/status"), ("GET", "/api/history"),
          ("POST", "/api/save"), ("POST", "/api/stop"), ("GET", "/metrics"),
          ("GET", "/vendor/x.js"),
          ("GET", "/vendor/chart.umd.min.js"), ("GET", f"/v1/models/{MODEL}"),
          ("GET", f"/v1/models/{MODEL}/metadata"), ("POST", f"/v1/models/{MODEL}:predict"),
          ("POST", "/v1/models/other:predict"), ("POST", f"/v1/models/{MODEL}:x")]
METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]
PREDICT = f"/v1/models/{MODEL}:predict"
# mostly each route's own method (so bodies reach the handlers), predict the most (it parses
# the most), sometimes any method
requests = st.one_of(
    st.just(("POST", PREDICT)), st.sampled_from(ROUTES),
    st.tuples(st.sampled_from(METHODS), st.sampled_from([path for _, path in ROUTES])))
HEADER_NAMES = ["Authorization", "X-Console-Token", "Content-Type", "Accept", "X-Other"]

numbers = st.one_of(st.integers(), st.floats(allow_nan=True, allow_infinity=True),
                    st.integers(min_value=10**300, max_value=10**1000))
json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), numbers, st.text(max_size=20)),
    lambda inner: st.one_of(st.lists(inner, max_size=5),
                            st.dictionaries(st.text(max_size=10), inner, max_size=5)),
    max_leaves=30)
instances = st.lists(st.one_of(st.lists(numbers, min_size=0, max_size=5),
                               st.fixed_dictionaries({"x": st.lists(numbers, max_size=4)})),
                     max_size=12)


@st.composite
def bodies(draw) -> bytes:
    kind = draw(st.sampled_from(["json", "predict", "deep", "bigint", "bytes", "size"]))
    if kind == "json":
        return json.dumps(draw(json_values)).encode()
    if kind == "predict":
        return json.dumps({"instances": draw(instances)}).encode()
    if kind == "deep":
        depth = draw(st.integers(1, 5000))
        inner = "[" * depth + "1" + "]" * depth
        return f'{{"instances": [{inner}]}}'.encode()
    if kind == "bigint":
        digits = draw(st.integers(300, 6000))
        return f'{{"instances": [[{"9" * digits}, 1, 2]]}}'.encode()
    if kind == "bytes":
        return draw(st.binary(max_size=300))
    return b"[" + b"0," * ((MAX_BODY_BYTES + draw(st.integers(-4, 4))) // 2) + b"0]"


# any byte but CR/LF, which end a header on the wire
header_values = st.binary(max_size=40).map(
    lambda b: b.replace(b"\r", b"").replace(b"\n", b"").decode("latin-1"))
# mostly JSON bodies declared as such, so the fuzz reaches the validation behind the parser
headers = st.builds(
    lambda content_type, others: {"Content-Type": content_type, **others},
    st.one_of(st.sampled_from(["application/json"] * 4 + ["text/plain"]), header_values),
    st.dictionaries(st.sampled_from(HEADER_NAMES[:2] + HEADER_NAMES[3:]), header_values,
                    max_size=3))
AS_JSON = {"Content-Type": "application/json"}


class InProcess:
    def __init__(self) -> None:
        keras.utils.set_random_seed(1)
        model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
        predictor = Predictor(model, SCHEMA, max_batch=8)
        predictor.publish(1, model.get_weights())
        console = create_app(ConsoleState({}), predictor, lambda _name: None, "s3cret",
                             model_name=MODEL)
        self.client = console.app.test_client()

    def send(self, method, path, header_map, body) -> tuple[int, str, bytes]:
        reply = self.client.open(path, method=method, headers=header_map, data=body)
        return reply.status_code, reply.content_type or "", reply.get_data()


class Live:
    def __init__(self, url: str) -> None:
        self.address = urlsplit(url)

    def send(self, method, path, header_map, body) -> tuple[int, str, bytes]:
        connection = http.client.HTTPConnection(self.address.hostname, self.address.port,
                                                timeout=30)
        try:
            connection.putrequest(method, path)
            for name, value in header_map.items():
                connection.putheader(name, value.encode("latin-1"))
            connection.putheader("Content-Length", str(len(body)))
            connection.endheaders(body)
            reply = connection.getresponse()
            return reply.status, reply.getheader("Content-Type") or "", reply.read()
        finally:
            connection.close()


@pytest.fixture(scope="module")
def console():
    return Live(LIVE_URL) if LIVE_URL else InProcess()


@example(route=("POST", PREDICT), header_map=AS_JSON,  # the three 500s of the issue
         body=b'{"instances": [' + b"[" * 2000 + b"1" + b"]" * 2000 + b"]}")
@example(route=("POST", PREDICT), header_map=AS_JSON,
         body=b'{"instances": [[' + b"9" * 400 + b', 1, 2]]}')
@example(route=("POST", "/api/stop"), header_map={"Authorization": "Bearer \u00e9t\u00e9"},
         body=b"")
@settings(max_examples=EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.data_too_large])
@given(route=requests, header_map=headers, body=bodies())
def test_no_input_gets_a_5xx_and_errors_are_json(console, route, header_map, body):
    method, path = route
    status, content_type, data = console.send(method, path, header_map, body)
    assert status < 500, (status, data[:300])
    if status >= 400:
        assert content_type.startswith("application/json"), (status, content_type, data[:200])
        assert "error" in json.loads(data)
    assert path not in ("/api/save", "/api/stop") or method != "POST" or status == 401, \
        "no generated token is the right one"
    status, _, _ = console.send("GET", "/api/status", {}, b"")
    assert status == 200, "the console still answers"
