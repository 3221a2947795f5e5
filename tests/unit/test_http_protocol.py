"""The console's HTTP layer under hostile input of the protocol itself, over raw sockets to a
real server on a port: unsupported versions, garbage request lines and too many headers get
a 4xx with a status line and a JSON body; chunked bodies take chunk extensions and trailer
fields (both standard) and get 413 past the 1 MiB limit instead of being cut silently."""

import json
import socket

import keras
import pytest

from console.app import MAX_BODY_BYTES, create_app
from console.predictor import Predictor
from console.server import ConsoleServer
from console.state import ConsoleState
from streams.schema import Schema

SCHEMA = Schema.from_fields([("id", "<i8"), ("x", "<f4", (3,)), ("y", "<f4")],
                            features="x", label="y", key="id")
GOOD = json.dumps({"instances": [[1, 2, 3]]}).encode()


@pytest.fixture(scope="module")
def port():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    predictor = Predictor(model, SCHEMA, max_batch=8)
    predictor.publish(1, model.get_weights())
    server = ConsoleServer(create_app(ConsoleState({}), predictor, print, token="t"),
                           "127.0.0.1", 0)
    yield int(server.url.rstrip("/").rsplit(":", 1)[1])
    server.finish(linger_s=0)


def exchange(port: int, data: bytes) -> tuple[int, dict[str, str], bytes]:
    """(status, headers, body) of the answer to raw request bytes."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(data)
        out = b""
        while b"\r\n\r\n" not in out and (chunk := s.recv(65536)):
            out += chunk
        head, _, body = out.partition(b"\r\n\r\n")
        lines = head.decode("latin1").split("\r\n")
        assert lines[0].startswith("HTTP/1."), f"a status line: {out[:80]!r}"
        headers = {k.lower(): v for k, v in (line.split(": ", 1) for line in lines[1:])}
        # the whole body, by its length (a server may keep the connection open)
        while len(body) < int(headers["content-length"]) and (chunk := s.recv(65536)):
            body += chunk
    return int(lines[0].split()[1]), headers, body


def chunked(body: bytes, extension: bytes = b"", trailer: bytes = b"") -> bytes:
    return (b"POST /v1/models/model:predict HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n"
            b"Connection: close\r\n\r\n" + b"%x" % len(body) + extension + b"\r\n" + body
            + b"\r\n0\r\n" + trailer + b"\r\n")


@pytest.mark.parametrize(("name", "request_bytes", "status"), [
    ("HTTP/2.0", b"GET /api/status HTTP/2.0\r\nHost: x\r\n\r\n", 400),
    ("HTTP/9.9", b"GET /api/status HTTP/9.9\r\nHost: x\r\n\r\n", 400),
    ("a garbage request line", b"\x00\x01\x02 nonsense\r\n\r\n", 400),
    ("150 header fields", b"GET /api/status HTTP/1.1\r\nHost: x\r\n"
     + b"".join(b"X-%d: 1\r\n" % i for i in range(150)) + b"\r\n", 431),
    ("a chunked body over the limit",
     chunked(GOOD + b" " * (MAX_BODY_BYTES + 1 - len(GOOD))), 413),
    ("a chunk size that is no number", chunked(GOOD).replace(b"\r\n%x\r\n" % len(GOOD),
                                                            b"\r\nzz\r\n"), 400),
])
def test_the_protocol_s_errors_are_json_4xx(port, name, request_bytes, status):
    got, headers, body = exchange(port, request_bytes)
    assert got == status, (name, body[:200])
    assert headers["content-type"].startswith("application/json"), (name, headers)
    assert "error" in json.loads(body), name


@pytest.mark.parametrize(("name", "request_bytes"), [
    ("plain chunks", chunked(GOOD)),
    ("a chunk extension", chunked(GOOD, extension=b";name=value")),
    ("a trailer field", chunked(GOOD, trailer=b"X-Checksum: 1\r\n")),
    ("a body of exactly the limit", chunked(GOOD + b" " * (MAX_BODY_BYTES - len(GOOD)))),
])
def test_standard_chunked_bodies_are_read_whole(port, name, request_bytes):
    got, _, body = exchange(port, request_bytes)
    assert got == 200, (name, body[:200])
    assert len(json.loads(body)["predictions"]) == 1, name


def get(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()


@pytest.mark.parametrize(("name", "path", "message"), [
    ("no protocol version", "/socket.io/", "unsupported version"),
    ("Engine.IO 3", "/socket.io/?EIO=3&transport=polling", "unsupported version"),
    ("an unknown session", "/socket.io/?EIO=4&transport=polling&sid=bogus", "Invalid session"),
    ("an unknown transport", "/socket.io/?EIO=4&transport=nope", "Invalid transport"),
    ("a WebSocket without its upgrade", "/socket.io/?EIO=4&transport=websocket",
     "Invalid websocket upgrade"),
])
def test_socket_io_refusals_are_json_4xx(port, name, path, message):
    got, headers, body = exchange(port, get(path))
    assert got == 400, (name, body[:200])
    assert headers["content-type"].startswith("application/json"), (name, headers)
    assert message in json.loads(body)["error"], name


def test_a_socket_io_handshake_still_opens_a_session(port):
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(get("/socket.io/?EIO=4&transport=polling"))
        out = b""
        while chunk := s.recv(65536):  # Connection: close, so the answer ends at EOF
            out += chunk
    head, _, body = out.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head[:80]
    assert b'\r\n0{"sid":' in body, body[:200]  # Engine.IO's open packet, in a chunk
