"""Socket.IO's own refusals as JSON. Engine.IO answers a bad handshake, session or transport
itself, before Flask sees the request, as `text/plain` with a JSON string ("Invalid session
x"); every other 4xx of the console is `{"error": "..."}` in `application/json`."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

WsgiApp = Callable[[dict, Callable], Iterable[bytes]]


class JsonEngineErrors:
    """WSGI middleware around the Engine.IO app: its plain-text 4xx becomes a JSON 4xx with the
    same status and message; everything else (handshakes, polls, WebSocket upgrades) passes
    through untouched."""

    def __init__(self, app: WsgiApp, path: str = "/socket.io") -> None:
        self.app, self.path = app, path

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        if not environ.get("PATH_INFO", "").startswith(self.path):
            return self.app(environ, start_response)
        refused: dict[str, str] = {}

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            content_type = dict((k.lower(), v) for k, v in headers).get("content-type", "")
            if status.startswith("4") and content_type.startswith("text/plain"):
                refused["status"] = status
                return lambda data: None  # the body is read from the iterable below
            return start_response(status, headers, exc_info)

        body = self.app(environ, capture)
        if not refused:
            return body
        try:
            text = b"".join(body)
        finally:
            getattr(body, "close", lambda: None)()
        try:
            message = json.loads(text)
        except ValueError:
            message = text.decode("utf-8", "replace")
        payload = json.dumps({"error": str(message)}).encode()
        start_response(refused["status"], [("Content-Type", "application/json"),
                                           ("Content-Length", str(len(payload)))])
        return [payload]
