"""Control flags: requests from other threads (console, signal handler) and conditions a rank
notices itself, all carried to every rank by the step's collective.

Other threads only set flags here; the training thread reads them once per step and sums
them into the step's stats vector, so every rank acts on them at the same step boundary.

>>> controls = Controls()
>>> controls.request("save")
>>> controls.take(), controls.take()
({<Flag.SAVE: 'save'>}, set())
>>> controls.request("pause")
Traceback (most recent call last):
...
hvd_online.errors.ControlError: unknown control 'pause': use one of stop, save, idle, sigterm
"""

from __future__ import annotations

import enum
import threading

from hvd_online.errors import ControlError


class Flag(enum.Enum):
    #: an operator asked to stop (console): save, then every rank exits 0
    STOP = "stop"
    #: save a checkpoint at this step (console button, or the periodic timer on rank 0)
    SAVE = "save"
    #: this rank received nothing for train.idle_timeout_s
    IDLE = "idle"
    #: kill -15 reached a rank: save, then exit 0
    SIGTERM = "sigterm"

    @classmethod
    def named(cls, name: str | Flag) -> Flag:
        try:
            return cls(name)
        except ValueError:
            known = ", ".join(f.value for f in cls)
            msg = f"unknown control {name!r}: use one of {known}"
            raise ControlError(msg) from None


class Controls:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: set[Flag] = set()

    def request(self, name: str | Flag) -> None:
        flag = Flag.named(name)
        with self._lock:
            self._pending.add(flag)

    def take(self) -> set[Flag]:
        """The requests since the last call (each is acted on once)."""
        with self._lock:
            pending, self._pending = self._pending, set()
        return pending
