"""Serves a `Console` from daemon threads of the current process (rank 0's).

Werkzeug's threaded server, WebSocket through simple-websocket (see shared notes: eventlet
and gevent need monkey patching, risky next to TensorFlow and Horovod threads).
"""

from __future__ import annotations

import logging
import socket
import threading
import time

from werkzeug.serving import make_server

from console.app import Console

log = logging.getLogger(__name__)


class ConsoleServer:
    def __init__(self, console: Console, host: str, port: int) -> None:
        self.console = console
        self._server = make_server(host, port, console.app, threaded=True)
        # bound to every address: name this host, so the printed URL works from elsewhere
        shown = socket.gethostname() if host in ("0.0.0.0", "::", "") else host
        self.url = f"http://{shown}:{self._server.server_port}/"
        threading.Thread(target=self._server.serve_forever, name="console-http",
                         daemon=True).start()
        console.socketio.start_background_task(console.emitter)

    def finish(self, linger_s: float = 1.0) -> None:
        """Send what is left (e.g. 'stopped') to open pages, then stop serving."""
        self.console.emit_pending()
        time.sleep(linger_s)
        self._server.shutdown()
