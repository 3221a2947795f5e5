"""Requests from other threads (console, signal handler) to the training thread.

Other threads only set flags here; the training thread reads them once per step and turns
them into a collective, so every rank acts on them at the same step boundary.

>>> controls = Controls()
>>> controls.request("save")
>>> controls.take(), controls.take()
({'save': 1}, {})
"""

from __future__ import annotations

import threading


class Controls:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: dict[str, int] = {}

    def request(self, name: str) -> None:
        with self._lock:
            self._pending[name] = 1

    def take(self) -> dict[str, int]:
        """The requests since the last call (each is acted on once)."""
        with self._lock:
            pending, self._pending = self._pending, {}
        return pending
