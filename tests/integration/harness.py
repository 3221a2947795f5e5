"""Runs real ranks: `horovodrun -np N hvd-online train` against a real pulsar-lite broker."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulsar

from benchmarks.availability import wait_until
from benchmarks.kit.generators import HOT, skewed_ids
from benchmarks.kit.ledger import ledger_hook, read_labelled_ledger
from hvd_online.commands.produce import produce
from hvd_online.commands.run import horovodrun_command
from hvd_online.config import load_config
from hvd_online.state.checkpoint import load_latest_checkpoint
from hvd_online.state.run_dir import RunLayout
from streams.pulsar.predictions import predictions_topic

REPO = Path(__file__).resolve().parents[2]
MLP_TEMPLATE = REPO / "examples" / "mlp" / "model.py"
GENERATORS = REPO / "benchmarks" / "kit" / "generators.py"
LEDGER = REPO / "benchmarks" / "kit" / "ledger.py"


def write_config(tmp_path: Path, url: str, topic: str, partitions: int = 4, extra: str = "",
                 generator: str = "skewed_samples", generator_params: str = "{}") -> Path:
    """A labelled MLP job; by default its stream is skewed (`generators.skewed_samples`: 60% of
    the records on partition 1), so its ids are `produced_ids(count)`."""
    path = tmp_path / "config.toml"
    path.write_text(f"""
[model]
template = "{MLP_TEMPLATE}:MLPRegression"
params = {{ inputs = 16, hidden = 32, layers = 2 }}
[stream]
url = "{url}"
topic = "{topic}"
partitions = {partitions}
[window]
batch_size = 128
max_wait_ms = 20
[train]
learning_rate = 0.01
log_every = 1
idle_timeout_s = 120
threads = 1
[run]
dir = "{tmp_path / 'run'}"
[console]
enabled = false
[produce]
generator = "{GENERATORS}:{generator}"
params = {generator_params}
{extra}
""")
    return path


def toml_value(value: Any) -> str:
    """`value` as TOML: strings, numbers, booleans, lists and inline tables."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a TOML basic string
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"no TOML for {value!r}")


def edit_config(config_path: Path, changes: dict[str, dict[str, Any] | None]) -> Path:
    """Rewrite a config with `changes` merged in, table by table: a key set to None is
    removed, and so is a table set to None. Parsed and written again, never text-replaced."""
    tables = tomllib.loads(config_path.read_text())
    for table, keys in changes.items():
        if keys is None:
            tables.pop(table, None)
            continue
        merged = tables.setdefault(table, {})
        for key, value in keys.items():
            if value is None:
                merged.pop(key, None)
            else:
                merged[key] = value
    config_path.write_text("".join(
        f"[{table}]\n" + "".join(f"{k} = {toml_value(v)}\n" for k, v in keys.items()) + "\n"
        for table, keys in tables.items()))
    return config_path


def enable_console(config_path: Path, token: str) -> Path:
    """Turn on the console of a config, on free ports: REST and gRPC alike, so a run never
    waits for a port an earlier run's console still holds."""
    return edit_config(config_path, {"console": {"enabled": True, "port": 0, "grpc_port": 0,
                                                 "token": token}})


def produced_ids(count: int) -> list[int]:
    """The ids of the first `count` records of the default stream, sorted."""
    return sorted(skewed_ids(count).tolist())


def produce_from(config_path: Path, count: int) -> int:
    config = load_config(config_path)
    return produce(config, config.stream.url, count=count, progress=False)


@dataclass
class RankRun:
    returncode: int
    output: str
    layout: RunLayout

    @property
    def summaries(self) -> dict[int, dict]:
        """Every rank's summary-rank-R.json of this run (a crashed rank has none)."""
        return self.layout.summaries()

    def owned_partitions(self) -> dict[int, list[int]]:
        found = re.findall(r"rank (\d+)/\d+ owns partitions \[([\d, ]*)\]", self.output)
        return {int(r): [int(p) for p in ps.split(",") if p.strip()] for r, ps in found}

    def losses(self) -> list[float]:
        return [float(x) for x in re.findall(r"step +\d+ +samples +[\d,]+ +loss +([\d.]+)",
                                             self.output)]


def train_argv(config_path: Path, overrides: tuple[str, ...], ledger: Path | None,
               labels: bool = False) -> list[str]:
    if ledger is not None:
        overrides = (*overrides, ledger_hook(ledger, labels))
    return ["train", str(config_path), *[a for o in overrides for a in ("--set", o)]]


def run_ranks(config_path: Path, *overrides: str, np: int = 2, timeout: float = 300,
              ledger: Path | None = None, ledger_labels: bool = False) -> RankRun:
    argv = train_argv(config_path, overrides, ledger, ledger_labels)
    cmd = horovodrun_command(np, argv)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=REPO,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"})
    output = proc.stdout + proc.stderr
    sys.stdout.write(output[-6000:])  # shown by pytest when the test fails
    runs = sorted(config_path.parent.glob("ranks-*.log"))
    (config_path.parent / f"ranks-{len(runs)}.log").write_text(output)  # whole log, to debug
    return RankRun(proc.returncode, output, RunLayout.of(load_config(config_path)))


def read_ledger(directory: Path, up_to_step: int | None = None) -> list[int]:
    """Ids trained in one run; with `up_to_step`, only those a later resume kept (the steps
    after the checkpoint it resumed from were rolled back with the model)."""
    return [key for key, _ in read_labelled_ledger(directory, up_to_step)]


@dataclass
class Background:
    """A process started by a test: killed at teardown if still running."""

    process: subprocess.Popen
    log_path: Path

    @property
    def output(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

    def wait(self, timeout: float) -> int:
        return self.process.wait(timeout=timeout)

    def wait_for_ranks_stepping(self, np: int, timeout: float = 120) -> None:
        """Until every rank has run its first step, so its sources are subscribed. A producer
        started after this feeds the ranks live instead of leaving a backlog they drain at once
        (which let a whole run finish before a test could kill a rank)."""
        wait_until(lambda: all(f"rank {r}: first step done" in self.output for r in range(np))
                   or self.process.poll() is not None, timeout, "every rank's first step")
        assert self.process.poll() is None, self.output[-3000:]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def start_ranks(config_path: Path, *overrides: str, np: int = 2, log_path: Path,
                ledger: Path | None = None, ledger_labels: bool = False) -> Background:
    argv = train_argv(config_path, overrides, ledger, ledger_labels)
    with open(log_path, "w") as log:
        process = subprocess.Popen(horovodrun_command(np, argv), cwd=REPO, stdout=log,
                                   stderr=subprocess.STDOUT,
                                   env={**os.environ, "PYTHONUNBUFFERED": "1"})
    return Background(process, log_path)


def start_producer(config_path: Path, count: int, rate: float, log_path: Path) -> Background:
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "hvd_online.cli", "produce", str(config_path),
             "--count", str(count), "--rate", str(rate)],
            cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    return Background(process, log_path)


def rank_pids(launcher: subprocess.Popen) -> dict[int, int]:
    """{rank: pid} of the training processes under a horovodrun launcher."""
    import psutil

    out = {}
    for child in psutil.Process(launcher.pid).children(recursive=True):
        try:
            if "hvd_online.cli" in " ".join(child.cmdline()) and "train" in child.cmdline():
                rank = child.environ().get("HOROVOD_RANK")
                if rank is not None:
                    out[int(rank)] = child.pid
        except psutil.Error:
            continue
    return out


def hot_rank(output: str) -> int:
    """The rank that owns the hot partition (`generators.HOT`), from a run's log."""
    found = re.findall(r"rank (\d+)/\d+ owns partitions \[([\d, ]*)\]", output)
    owners = [int(r) for r, ps in found if str(HOT) in (p.strip() for p in ps.split(","))]
    assert owners, output[-3000:]
    return owners[0]


def kill_a_rank_mid_stream(ranks: Background, producer: Background) -> None:
    """kill -9 of the rank that owns the hot partition while the producer keeps publishing
    (it is never paused: a stream does not pause)."""
    import signal

    assert producer.process.poll() is None, "the kill comes while the stream still flows"
    os.kill(rank_pids(ranks.process)[hot_rank(ranks.output)], signal.SIGKILL)
    assert ranks.wait(60) != 0


def ledger_size(directory: Path) -> int:
    return sum(len(f.read_text().splitlines()) for f in directory.glob("rank-*.ids"))


__all__ = ["wait_until"]  # the tests import it from here too


def predicted_keys(url: str, topic: str) -> set[int]:
    """The keys on `topic`'s predictions topic (a set: redelivered copies count once)."""
    client = pulsar.Client(url)
    reader = client.create_reader(predictions_topic(topic), pulsar.MessageId.earliest)
    keys = set()
    try:
        while reader.has_message_available():
            keys.add(json.loads(reader.read_next(timeout_millis=5000).data())["key"])
    finally:
        client.close()
    return keys


def newest_checkpoint_step(tmp_path: Path) -> int:
    """The step of the newest checkpoint of the run in `tmp_path / "run"`."""
    checkpoint = load_latest_checkpoint(RunLayout(tmp_path / "run").checkpoints)
    assert checkpoint is not None
    return checkpoint.state.step


def write_drift_config(tmp_path: Path, url: str, topic: str, drift_at: int = 4000) -> Path:
    """examples/drift's model and producer (the hyperplane turns at `drift_at`), the
    challenger response, a window long enough that a kill comes before a promotion."""
    path = tmp_path / "config.toml"
    path.write_text(f"""
[model]
template = "{REPO / 'examples/drift/model.py'}:StreamClassifier"
params = {{ inputs = 10, hidden = 32 }}
[stream]
url = "{url}"
topic = "{topic}"
partitions = 4
[window]
batch_size = 32
max_wait_ms = 20
[train]
learning_rate = 0.003
idle_timeout_s = 120
threads = 1
log_every = 1000
[checkpoint]
every_steps = 4
[drift]
detector = "page_hinkley"
action = "challenger"
min_steps = 30
# long enough that the kill always comes before the promotion (an early, clear win needs a
# quarter window: 2,000 samples, over a second at 1,500/s)
challenger_window = 8000
challenger_patience = 100000
[run]
dir = "{tmp_path / 'run'}"
[console]
enabled = false
[produce]
generator = "{REPO / 'examples/drift/producer.py'}:generate"
params = {{ drift_at = {drift_at}, angle_deg = 90.0 }}
""")
    return path


def post(url: str, path: str, body: dict, token: str | None = None) -> int:
    """POST `body` as JSON to the console at `url`; the reply's status."""
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(f"{url}{path.lstrip('/')}", json.dumps(body).encode(),
                                     headers, method="POST")
    with urllib.request.urlopen(request, timeout=10) as reply:
        return reply.status


@contextmanager
def live_run(broker, topic, tmp_path, token: str = "metrics-test"):
    """A 2-rank run on a live stream with the console on (its token `token`): yields (console
    URL, the ranks, the run's layout), then stops the run from the console."""
    config = enable_console(write_config(tmp_path, broker.url, topic,
                                         extra="[checkpoint]\nevery_steps = 20\n"), token)
    layout = RunLayout(tmp_path / "run")
    ranks = start_ranks(config, "train.idle_timeout_s=0", log_path=tmp_path / "ranks.log")
    producer = start_producer(config, 2_000_000, rate=3000, log_path=tmp_path / "producer.log")
    try:
        url = wait_until(lambda: layout.console_url.exists()
                         and layout.console_url.read_text().strip(), 120, "the console")
        yield url.rstrip("/") + "/", ranks, layout
        assert post(url.rstrip("/") + "/", "/api/stop", {}, token) == 202
        assert ranks.wait(120) == 0
    finally:
        ranks.stop()
        producer.stop()
