"""A rank's own health for the step reports: resident memory and CPU use, read in-process
(no psutil on the training thread), so the console and /metrics show every rank's, not only
rank 0's.

>>> health = ProcessHealth()
>>> rss_mb, cpu_percent = health.read()
>>> rss_mb > 10 and cpu_percent >= 0
True
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
