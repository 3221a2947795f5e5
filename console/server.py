"""Serves a `Console` from daemon threads of the current process (rank 0's).

Werkzeug's threaded server, WebSocket through simple-websocket (see shared notes: eventlet
and gevent need monkey patching, risky next to TensorFlow and Horovod threads).
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from typing import Any

from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.serving import DechunkedInput, WSGIRequestHandler, make_server

from console.app import MAX_BODY_BYTES, Console

log = logging.getLogger(__name__)
#: a chunk-size line, or a trailer field line, longer than this is refused
MAX_LINE_BYTES = 4096


class Dechunked(DechunkedInput):
    """Werkzeug's chunked body reader, with what HTTP/1.1 allows and it refuses: chunk
    extensions (`1a;name=value`, ignored) and trailer fields after the last chunk (read and
    dropped), and a body over the console's limit answered 413 instead of cut silently."""

    def __init__(self, rfile: Any) -> None:
        super().__init__(rfile)
        self._total = 0

    def read_chunk_len(self) -> int:
        line = self._rfile.readline(MAX_LINE_BYTES).decode("latin1")
        try:
            size = int(line.split(";", 1)[0].strip(" \t\r\n"), 16)
        except ValueError as err:
            raise OSError("Invalid chunk header") from err
        if size < 0:
            raise OSError("Negative chunk length not allowed")
        self._total += size
        if self._total > MAX_BODY_BYTES:
            raise RequestEntityTooLarge(f"the body is over {MAX_BODY_BYTES} bytes")
        return size

    def readinto(self, buf: Any) -> int:
        read = 0
        while not self._done and read < len(buf):
            if self._len == 0:
                self._len = self.read_chunk_len()
                if self._len == 0:  # the last chunk: then trailer fields, up to a blank line
                    self._done = True
                    self._skip_trailers()
                    break
            n = min(len(buf) - read, self._len)
            data = self._rfile.read(n)
            if len(data) < n:
                raise OSError("the body ended inside a chunk")
            buf[read : read + n] = data
            self._len -= n
            read += n
            if self._len == 0 and self._rfile.readline(2) not in (b"\n", b"\r\n"):
                raise OSError("Missing chunk terminating newline")
        return read

    def _skip_trailers(self) -> None:
        for _ in range(100):
            if self._rfile.readline(MAX_LINE_BYTES) in (b"\r\n", b"\n", b""):
                return
        raise OSError("too many trailer fields")


class JsonErrors(WSGIRequestHandler):
    """Errors the HTTP layer answers before Flask sees a request (a bad request line, an
    HTTP version it does not speak, too many headers) as a JSON 4xx with a status line, like
    every other answer of the console."""

    def send_error(self, code: int, message: str | None = None,
                   explain: str | None = None) -> None:
        # an unparsed or unsupported version leaves HTTP/0.9, which has no status line
        if self.request_version not in ("HTTP/1.0", "HTTP/1.1"):
            self.request_version = "HTTP/1.1"
        if code >= 500:  # 505 HTTP Version Not Supported: the client's request, a 400
            code = 400
        phrase = self.responses.get(code, ("Bad Request",))[0]
        body = json.dumps({"error": message or phrase}).encode()
        self.log_error("code %d, message %s", code, message)
        self.send_response(code, phrase)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        self.close_connection = True

    def make_environ(self) -> Any:
        environ = super().make_environ()
        if isinstance(environ["wsgi.input"], DechunkedInput):
            environ["wsgi.input"] = Dechunked(environ["wsgi.input"]._rfile)
        return environ


class HttpServer:
    """An app on Werkzeug's threaded server in a daemon thread, with the JSON protocol
    errors and chunked bodies above: the console's, and a serving replica's."""

    def __init__(self, app: Any, host: str, port: int) -> None:
        self._server = make_server(host, port, app, threaded=True, request_handler=JsonErrors)
        # bound to every address: name this host, so the printed URL works from elsewhere
        shown = socket.gethostname() if host in ("0.0.0.0", "::", "") else host
        self.port = self._server.server_port
        self.url = f"http://{shown}:{self.port}/"
        threading.Thread(target=self._server.serve_forever, name="http",
                         daemon=True).start()

    def shutdown(self) -> None:
        self._server.shutdown()


class ConsoleServer(HttpServer):
    def __init__(self, console: Console, host: str, port: int) -> None:
        super().__init__(console.app, host, port)
        self.console = console
        console.socketio.start_background_task(console.emitter)

    def finish(self, linger_s: float = 1.0) -> None:
        """Send what is left (e.g. 'stopped') to open pages, then stop serving."""
        self.console.emit_pending()
        time.sleep(linger_s)
        self.shutdown()
