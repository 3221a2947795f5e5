"""What every benchmark case shares: the MLP demo's config, starting ranks, reading summaries."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
from pathlib import Path

from hvd_online.config import load_config
from hvd_online.launch import horovodrun_command
from hvd_online.layout import RunLayout
from hvd_online.produce import produce

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "examples" / "mlp" / "config.toml"
ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}


def fill_topic(url: str, topic: str, samples: int, per_message: int) -> None:
    """Pre-fill `topic` (4 partitions) with the MLP demo stream, as fast as possible."""
    config = load_config(CONFIG, [f'stream.topic="{topic}"', "produce.rate=0",
                                  f"produce.samples_per_message={per_message}"])
    produce(config, url, count=samples, progress=False)


def train_argv(url: str, topic: str, run_dir: Path, samples: int, batch: int,
               extra: tuple[str, ...] = ()) -> list[str]:
    """`hvd-online train` on the demo config: its own subscription, no console, no periodic
    checkpoints (one final one), stop after `samples`."""
    return ["train", str(CONFIG), "--url", url, "--run-dir", str(run_dir), "--no-console",
            "--set", f'stream.topic="{topic}"', "--set", f'stream.subscription="{run_dir.name}"',
            "--set", f"train.max_samples={samples}", "--set", f"window.batch_size={batch}",
            "--set", "checkpoint.every_seconds=0", *extra]


def summaries(run_dir: Path) -> list[dict]:
    """Every rank's summary-rank-R.json in `run_dir`, by rank."""
    return [summary for _, summary in sorted(RunLayout(run_dir).summaries().items())]


def run_ranks(ranks: int, argv: list[str], run_dir: Path) -> list[dict]:
    out = subprocess.run(horovodrun_command(ranks, argv), capture_output=True, text=True,
                         env=ENV, timeout=900)
    found = summaries(run_dir)
    if out.returncode or len(found) != ranks:
        raise RuntimeError(f"ranks failed:\n{(out.stdout + out.stderr)[-3000:]}")
    return found


def steady_rate(run_dir: Path, total: int) -> float:
    """Samples/s between 10% and 90% of the stream (start-up and the tail not counted), from
    the run's metrics log."""
    rows = [json.loads(line) for line in RunLayout(run_dir).metrics.read_text().splitlines()]
    rows = [r for r in rows if r["count"] and 0.1 * total <= r["samples_total"] <= 0.9 * total]
    first, last = rows[0], rows[-1]
    return (last["samples_total"] - first["samples_total"]) / (last["elapsed_s"]
                                                               - first["elapsed_s"])


def median_of(runs: list[dict]) -> dict:
    return {key: statistics.median(r[key] for r in runs) for key in runs[0]}
