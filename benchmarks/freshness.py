"""Freshness at fixed publish rates: publish -> weights-updated latency, 2 ranks.

The ranks start first on an empty topic; once both have run their first step (TensorFlow
traced), a producer publishes at a fixed rate for a fixed time. Each rank's summary file
carries a histogram of publish -> applied latency of every sample it trained
(hvd_online/training/freshness.py); the histograms of the ranks are merged here. A rate is
*sustained* when the producer reached it, training kept up with it (both within 5%) and p99
stayed under 1 s: a backlog that grows would push the latency of every later sample up with
it.
"""

from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path

from benchmarks.common import CONFIG, ENV, steady_rate, summaries, train_argv
from hvd_online.commands.produce import produce
from hvd_online.commands.run import horovodrun_command
from hvd_online.config import load_config
from hvd_online.training.freshness import FreshnessHistogram

SUSTAINED_P99_MS = 1000.0


def sustained(result: dict) -> bool:
    reached = min(result["publish_rate"], result["trained_rate"]) >= 0.95 * result["rate"]
    return bool(reached and result["p99_ms"] < SUSTAINED_P99_MS)


def _wait_for_lines(process: subprocess.Popen, marker: str, count: int, lines: list[str],
                    timeout: float) -> None:
    seen = threading.Event()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line)
            if sum(marker in x for x in lines) >= count:
                seen.set()

    threading.Thread(target=read, daemon=True).start()
    if not seen.wait(timeout):
        process.kill()
        raise RuntimeError("ranks did not start:\n" + "".join(lines[-40:]))


def fixed_rate(url: str, rate: float, seconds: float, per_message: int, ranks: int,
               run_dir: Path) -> dict:
    topic = run_dir.name
    total = int(rate * seconds)
    argv = train_argv(url, topic, run_dir, total, 256, ("--set", "train.idle_timeout_s=60"))
    process = subprocess.Popen(horovodrun_command(ranks, argv), env=ENV, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    lines: list[str] = []
    _wait_for_lines(process, "first step done", ranks, lines, timeout=180)
    config = load_config(CONFIG, [f'stream.topic="{topic}"',
                                  f"produce.samples_per_message={per_message}"])
    start = time.monotonic()
    produce(config, url, count=total, rate=rate, progress=False)
    published_s = time.monotonic() - start
    if process.wait(timeout=600):
        raise RuntimeError("ranks failed:\n" + "".join(lines[-40:]))
    found = summaries(run_dir)
    merged = FreshnessHistogram()
    for summary in found:
        merged.merge(FreshnessHistogram.from_json(summary["freshness"]["histogram"]))
    result = {
        "rate": rate, "samples_per_message": per_message, "samples": merged.count,
        "publish_rate": total / published_s,
        "trained_rate": steady_rate(run_dir, total),
        "p50_ms": merged.quantile(0.5), "p99_ms": merged.quantile(0.99),
        "max_ms": merged.quantile(1.0),
    }
    return {**result, "sustained": sustained(result)}
