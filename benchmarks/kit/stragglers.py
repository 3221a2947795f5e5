"""Freezing a reading process (a rank, a reader) as a straggler does: it stops reading while
everything else goes on. Never used on the process that publishes the stream."""

import os
import signal


def freeze(pid: int) -> None:
    os.kill(pid, signal.SIGSTOP)


def thaw(pid: int) -> None:
    os.kill(pid, signal.SIGCONT)
