"""Child processes that end with their parent, even when the parent is killed with SIGKILL
(as Kubernetes does after the grace period): nothing can clean up after a SIGKILL, so the
kernel is asked to (Linux `PR_SET_PDEATHSIG`).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
from collections.abc import Callable

PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int = signal.SIGTERM) -> Callable[[], None] | None:
    """A `preexec_fn` for `subprocess.Popen`: the child gets `sig` when the thread that
    started it ends (call Popen from the main thread). None where prctl is unavailable."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    prctl = ctypes.CDLL(name, use_errno=True).prctl  # looked up before fork, not in the child
    parent = os.getpid()

    def in_child() -> None:
        prctl(PR_SET_PDEATHSIG, sig)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os.kill(os.getpid(), sig)

    return in_child
