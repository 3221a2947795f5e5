"""What every benchmark case shares: the MLP demo's config, starting ranks, reading summaries."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hvd_online.commands.produce import produce
from hvd_online.commands.run import horovodrun_command
from hvd_online.config import load_config
from hvd_online.state.run_dir import RunLayout

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


def metrics_rows(run_dir: Path) -> list[dict]:
    """The rows of the run's metrics log that trained something."""
    rows = [json.loads(line) for line in RunLayout(run_dir).metrics.read_text().splitlines()]
    return [r for r in rows if r["count"]]


def steady_window(run_dir: Path, total: int) -> tuple[float, float]:
    """(samples/s, seconds measured) between 10% and 90% of the stream: start-up, tracing
    and the tail are not counted."""
    rows = [r for r in metrics_rows(run_dir) if 0.1 * total <= r["samples_total"] <= 0.9 * total]
    first, last = rows[0], rows[-1]
    seconds = last["elapsed_s"] - first["elapsed_s"]
    return (last["samples_total"] - first["samples_total"]) / seconds, seconds


def steady_rate(run_dir: Path, total: int) -> float:
    return steady_window(run_dir, total)[0]


def prequential_mean(run_dir: Path, field: str, first: int = 0, last: int = 0) -> float:
    """Count-weighted mean of the prequential `field` ("loss" or "metric") over the steps whose
    samples fall between `first` and `last` of the stream (0: its end)."""
    rows = [r for r in metrics_rows(run_dir)
            if r["samples_total"] > first and (not last or r["samples_total"] <= last)]
    return sum(r[field] * r["count"] for r in rows) / sum(r["count"] for r in rows)


#: figures that say a repeat went wrong: the worst repeat's, never hidden in a median
WORST_OF = ("redelivered", "resubscribed")


def median_of(runs: list[dict]) -> dict:
    """Medians over repeats (the worst for `WORST_OF`), and the spread of the rate (slowest
    and fastest repeat)."""
    out: dict = {key: (max if key in WORST_OF else statistics.median)(r[key] for r in runs)
                 for key in runs[0]}
    rates = [r["samples_per_s"] for r in runs]
    out.update(slowest_per_s=min(rates), fastest_per_s=max(rates), repeats=len(runs))
    return out


def redeliveries(found: list[dict]) -> dict[str, int]:
    """Redelivered messages the ranks dropped and resubscriptions, over every partition: a
    stalled partition (pulsar-lite redelivers a backlog after a resubscription) shows here,
    not only as a low rate."""
    stats = [p for summary in found for p in summary["partitions"].values()]
    return {"redelivered": sum(p["duplicates"] for p in stats),
            "resubscribed": sum(p["resubscribed"] for p in stats)}


def provenance() -> dict[str, Any]:
    """When and from which commit a result came, and on how many cores."""
    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True)
        return done.stdout.strip() if done.returncode == 0 else ""

    commit = git("rev-parse", "HEAD") or "unknown"
    dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    return {"written_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "commit": commit + ("-dirty" if dirty else ""), "cores": os.cpu_count()}


def write_results(path: str | Path, results: Any) -> None:
    """A benchmark's JSON, with its provenance."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    body = {**provenance(), **results} if isinstance(results, dict) else {
        **provenance(), "results": results}
    path.write_text(json.dumps(body, indent=1))


@contextmanager
def work_dir(prefix: str) -> Iterator[Path]:
    """A temporary folder for a benchmark's broker and runs, removed when it ends."""
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        yield Path(tmp)
