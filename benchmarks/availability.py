"""Availability the way a client sees it: predict clients at a steady rate, and a job started
with `hvd-online run` whose parts can be found and killed. Used by benchmarks/failover.py and
by the integration tests of serving (tests/integration/test_serving_replica.py).

    job = Job.start(config, run_dir)            # hvd-online run -np 2, in its own session
    rest = Probe.rest(job.replica()["rest"])    # 50 predicts/s, each answer recorded
    ... os.kill(job.rank_pids()[1], SIGKILL) ...
    rest.stop(); rest.failed(), rest.longest_outage_s(), rest.versions_never_back()
"""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import psutil

from hvd_online.commands.supervisor import STANDBY_ENV
from hvd_online.state.run_dir import RunLayout

REPO = Path(__file__).resolve().parents[1]


@dataclass
class Answer:
    at: float  # monotonic
    ok: bool
    version: int = 0
    error: str = ""


@dataclass
class Probe:
    """One client thread sending a predict every 1/rate s (one keep-alive connection or
    channel, reconnecting after an error), until stopped."""

    name: str
    send: Callable[[], int]
    rate: float = 50.0
    answers: list[Answer] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"probe-{self.name}",
                                        daemon=True)
        self._thread.start()

    def _run(self) -> None:
        period = 1.0 / self.rate
        next_at = time.monotonic()
        while not self._stop.is_set():
            try:
                self.answers.append(Answer(time.monotonic(), True, self.send()))
            except Exception as err:  # noqa: BLE001 - every failure is a figure
                self.answers.append(Answer(time.monotonic(), False,
                                           error=f"{type(err).__name__}: {err}"[:200]))
            next_at += period
            self._stop.wait(max(0.0, next_at - time.monotonic()))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=15)

    def window(self, start: float = 0.0, end: float = float("inf")) -> list[Answer]:
        return [a for a in self.answers if start <= a.at <= end]

    def failed(self, start: float = 0.0, end: float = float("inf")) -> int:
        return sum(not a.ok for a in self.window(start, end))

    def longest_outage_s(self, start: float = 0.0, end: float = float("inf")) -> float:
        """The longest time from a failed request to the next answered one."""
        longest, since = 0.0, None
        for answer in self.window(start, end):
            if not answer.ok and since is None:
                since = answer.at
            elif answer.ok and since is not None:
                longest, since = max(longest, answer.at - since), None
        if since is not None:
            longest = max(longest, self.window(start, end)[-1].at - since)
        return longest

    def versions_never_back(self) -> bool:
        versions = [a.version for a in self.answers if a.ok]
        return all(b >= a for a, b in zip(versions, versions[1:], strict=False))

    def errors(self) -> list[str]:
        return sorted({a.error for a in self.answers if not a.ok})

    @classmethod
    def rest(cls, url: str, inputs: int = 16, rate: float = 50.0,
             model: str = "model") -> Probe:
        address = urlsplit(url)
        body = json.dumps({"instances": [[0.1] * inputs]}).encode()
        connection: list[http.client.HTTPConnection] = []

        def send() -> int:
            if not connection:
                connection.append(http.client.HTTPConnection(address.hostname, address.port,
                                                              timeout=2))
            try:
                connection[0].request("POST", f"/v1/models/{model}:predict", body,
                                      {"Content-Type": "application/json"})
                response = connection[0].getresponse()
                reply = response.read()
            except Exception:
                connection.pop().close()
                raise
            if response.status != 200:
                raise RuntimeError(f"HTTP {response.status}: {reply[:100]!r}")
            return int(json.loads(reply)["model_version"])

        return cls("rest", send, rate)

    @classmethod
    def grpc(cls, address: str, inputs: int = 16, rate: float = 50.0,
             model: str = "model") -> Probe:
        import grpc
        import numpy as np
        import tensorflow as tf
        from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

        channel = grpc.insecure_channel(address)
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        request = predict_pb2.PredictRequest()
        request.model_spec.name = model
        request.inputs["x"].CopyFrom(tf.make_tensor_proto(np.full((1, inputs), 0.1,
                                                                  np.float32)))

        def send() -> int:
            return int(stub.Predict(request, timeout=2).model_spec.version.value)

        return cls("grpc", send, rate)


class ServingWatch:
    """Polls a replica's GET /api/serving every 50 ms: which version it serves, trained when.
    Training's outage is the longest time between two versions' training (created_ms)."""

    def __init__(self, url: str) -> None:
        self.url = url + "api/serving"
        self.seen: dict[int, tuple[int, int]] = {}  # version -> (created_ms, step)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="serving-watch", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            try:
                with urllib.request.urlopen(self.url, timeout=1) as reply:
                    status = json.loads(reply.read())
            except OSError:
                continue
            self.seen.setdefault(status["version"], (status["created_ms"], status["step"]))

    def longest_gap_s(self, after_ms: int, until_ms: int | None = None) -> float:
        """The longest time without a newly trained version, from `after_ms` (a fault) on, to
        `until_ms` (now by default: a stall not over yet counts too)."""
        until_ms = int(time.time() * 1000) if until_ms is None else until_ms
        created = sorted({c for c, _ in self.seen.values() if c} | {until_ms})
        gaps = [(b - max(a, after_ms)) / 1000
                for a, b in zip(created, created[1:], strict=False) if b > after_ms]
        return max(gaps, default=0.0)

    def step_went_back(self) -> bool:
        steps = [step for _, (_, step) in sorted(self.seen.items())]
        return any(b < a for a, b in zip(steps, steps[1:], strict=False))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def mlp_config(run_dir: Path) -> Path:
    """The MLP demo's config with absolute paths (runs from any folder) and free ports."""
    return example_config("mlp", run_dir)


def example_config(example: str, run_dir: Path, url: str = "") -> Path:
    """An example's config with absolute paths (runs from any folder), free ports, and the
    broker at `url` (empty: the embedded one)."""
    folder = REPO / "examples" / example
    text = (folder / "config.toml").read_text()
    text = text.replace('template = "model.py:', f'template = "{folder}/model.py:')
    text = text.replace('generator = "producer.py:', f'generator = "{folder}/producer.py:')
    text = re.sub(r"(?m)^port = \d+\n", "", text)
    text = text.replace("[console]\n", "[console]\nport = 0\ngrpc_port = 0\n")
    if url:
        text = re.sub(r'(?m)^url = ""', f'url = "{url}"', text)
    text += "\n[serving]\nrest_port = 0\ngrpc_port = 0\nexport_every_s = 0\n"
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / "config.toml"
    path.write_text(text)
    return path


@dataclass
class Job:
    """`hvd-online run` in the background, in its own session (killed whole at the end)."""

    process: subprocess.Popen[bytes]
    layout: RunLayout
    log_path: Path

    @classmethod
    def start(cls, config: Path, run_dir: Path, *args: str, np: int = 2) -> Job:
        log_path = run_dir / "job.log"
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "hvd_online.cli", "run", str(config), "-np", str(np),
                 "--run-dir", str(run_dir), *args], stdout=log, stderr=subprocess.STDOUT,
                cwd=REPO, env={**os.environ, "PYTHONUNBUFFERED": "1"}, start_new_session=True)
        return cls(process, RunLayout(run_dir), log_path)

    @property
    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def replica(self, index: int = 0, timeout: float = 180) -> dict[str, str]:
        path = self.layout.replica(index)
        wait_until(lambda: path.is_file() or self.process.poll() is not None, timeout,
                   f"replica {index}'s address")
        assert self.process.poll() is None, self.output[-3000:]
        return json.loads(path.read_text())

    def serving(self, index: int = 0) -> dict:
        """The replica's GET /api/serving."""
        with urllib.request.urlopen(self.replica(index)["rest"] + "api/serving",
                                    timeout=2) as reply:
            return json.loads(reply.read())

    def _children(self) -> list[psutil.Process]:
        try:
            return psutil.Process(self.process.pid).children(recursive=True)
        except psutil.Error:
            return []

    def rank_pids(self) -> dict[int, int]:
        """The training launch's ranks, by rank (not a standby launch's, still waiting)."""
        out = {}
        for child in self._children():
            try:
                env = child.environ()
                rank, go = env.get("HOROVOD_RANK"), env.get(STANDBY_ENV)
                if go and not Path(go).exists():
                    continue  # a standby launch's rank: its go file is not there yet
                if rank is not None and "train" in child.cmdline():
                    out[int(rank)] = child.pid
            except psutil.Error:
                continue
        return out

    def pid_listening(self, port: int) -> int | None:
        for child in self._children():
            try:
                if any(c.status == psutil.CONN_LISTEN and c.laddr.port == port
                       for c in child.net_connections("tcp")):
                    return child.pid
            except psutil.Error:
                continue
        return None

    def launches(self) -> int:
        """Launches so far (the supervisor logs each)."""
        return len(re.findall(r"supervisor launch \d+ on", self.output))

    def standby_ready(self, np: int = 2) -> bool:
        """The next launch's ranks are started and waiting (`run.standby`)."""
        go = f"standby-{self.launches() + 1}.go"
        return sum(go in line and "standby: waiting" in line
                   for line in self.output.splitlines()) >= np

    def console_standby_loaded(self) -> bool:
        """The serving console's standby is loaded (`console.standby`): said after the
        newest console started or took over."""
        output = self.output
        since = max(output.rfind("console at "), output.rfind("the standby takes over"))
        return since >= 0 and "console standby: loaded" in output[since:]

    def console_url(self) -> str:
        return self.layout.console_url.read_text().strip()

    def broker_pid(self) -> int | None:
        for child in self._children():
            try:
                if "pulsar-lite" in " ".join(child.cmdline()):
                    return child.pid
            except psutil.Error:
                continue
        return None

    def stop(self, timeout: float = 90) -> int:
        """kill -15 to the launcher, as a user would; kill -9 of the session if it hangs."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                return self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        self.kill()
        return self.process.wait()

    def kill(self) -> None:
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as reply:
            return reply.status == 200
    except OSError:
        return False


def wait_until(predicate: Callable[[], object], timeout: float,
               what: str | Callable[[], str]) -> object:
    """Poll `predicate` until it gives something true, which is returned. `what`: a
    description, or a function giving one (called once, on the timeout)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for "
                         f"{what() if callable(what) else what}")
