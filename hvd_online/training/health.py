"""A rank's own health for the step reports: resident memory and CPU use, read in-process
(no psutil on the training thread), so the console and /metrics show every rank's, not only
rank 0's.

>>> health = ProcessHealth()
>>> rss_mb, cpu_percent = health.read()
>>> rss_mb > 10 and cpu_percent >= 0
True
>>> sorted(memory_breakdown())
['anonymous_mb', 'files_mb', 'peak_mb', 'resident_mb']
"""

from __future__ import annotations

import resource
import time
from pathlib import Path

PAGE_MB = resource.getpagesize() / 2**20

#: a step asks every time, but the figures are read at most this often (reading /proc each
#: of ~500 steps/s took 3% of a rank's training thread, by a sampling profile)
READ_EVERY_S = 0.25


class ProcessHealth:
    def __init__(self) -> None:
        self._last = (time.monotonic(), time.process_time())
        self._figures: tuple[float, float] | None = None

    def read(self) -> tuple[float, float]:
        """(resident MB, CPU % of one core over the last READ_EVERY_S or more; over 100 with
        threads)."""
        now = (time.monotonic(), time.process_time())
        wall, cpu = now[0] - self._last[0], now[1] - self._last[1]
        if self._figures is not None and wall < READ_EVERY_S:
            return self._figures
        resident_pages = int(Path("/proc/self/statm").read_text().split()[1])
        self._last = now
        self._figures = (resident_pages * PAGE_MB, 100.0 * cpu / wall if wall > 0 else 0.0)
        return self._figures


def memory_breakdown() -> dict[str, float]:
    """Where this process's resident memory is now (MB), from /proc/self/status: `anonymous`
    is its own (heaps, tensors, buffers); `files` are mapped files, mostly TensorFlow's shared
    libraries (about 350 MB), whose pages every process on the host that maps them shares;
    `peak` is the highest resident figure so far."""
    fields = {"VmHWM": "peak_mb", "VmRSS": "resident_mb", "RssAnon": "anonymous_mb",
              "RssFile": "files_mb"}
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in fields:
            out[fields[name]] = round(int(value.split()[0]) / 1024, 1)
    return out
