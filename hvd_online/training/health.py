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


class ProcessHealth:
    def __init__(self) -> None:
        self._last = (time.monotonic(), time.process_time())

    def read(self) -> tuple[float, float]:
        """(resident MB now, CPU % of one core since the last read; over 100 with threads)."""
        resident_pages = int(Path("/proc/self/statm").read_text().split()[1])
        now = (time.monotonic(), time.process_time())
        wall, cpu = now[0] - self._last[0], now[1] - self._last[1]
        self._last = now
        return resident_pages * PAGE_MB, 100.0 * cpu / wall if wall > 0 else 0.0


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
