"""Load check of the predict route while 2 ranks train (a benchmark, not a test).

Starts a pulsar-lite broker, a producer at a steady rate and `horovodrun -np 2` training with
the console on a free port, then, for each number of clients and batch size, sends predict
requests for a fixed time (each client one keep-alive connection, one request at a time) and
prints p50/p99 latency, requests/s and the samples/s training kept up meanwhile (and writes
them as JSON).

    .venv/bin/python -m benchmarks.predict_load [--seconds 20] [--clients 1,4,16]
        [--batch 1,64] [--rate 5000] [--samples-per-message 1] [--protocols rest,grpc]

(`python -m benchmarks.run` runs it too, next to the other cases.)
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from benchmarks.common import ENV, REPO, work_dir, write_results
from hvd_online.commands.run import horovodrun_command
from hvd_online.state.run_dir import RunLayout
from streams.pulsar.broker import EmbeddedBroker

MLP = REPO / "examples" / "mlp"


def write_config(run_dir: Path, url: str) -> Path:
    text = (MLP / "config.toml").read_text()
    text = text.replace('template = "model.py:', f'template = "{MLP}/model.py:')
    text = text.replace('generator = "producer.py:', f'generator = "{MLP}/producer.py:')
    path = run_dir / "config.toml"
    path.write_text(text)
    return path


def request(url: str, body: bytes) -> float:
    start = time.perf_counter()
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as response:
        response.read()
        if response.status != 200:
            raise RuntimeError(f"status {response.status}")
    return time.perf_counter() - start


def rest_client(url: str, batch: int,
                inputs: int) -> tuple[Callable[[], None], Callable[[], None]]:
    """(send one predict, close): one keep-alive connection, JSON as TF-Serving's REST."""
    body = json.dumps({"instances": [[0.1] * inputs] * batch}).encode()
    address = urlsplit(url)
    connection = http.client.HTTPConnection(address.hostname, address.port, timeout=10)

    def send() -> None:
        try:
            connection.request("POST", address.path, body, {"Content-Type": "application/json"})
            response = connection.getresponse()
            response.read()
        except Exception:
            connection.close()  # reconnects at the next request
            raise
        if response.status != 200:
            raise RuntimeError(f"status {response.status}")

    return send, connection.close


def grpc_client(address: str, batch: int,
                inputs: int) -> tuple[Callable[[], None], Callable[[], None]]:
    """(send one predict, close): one channel, a stock TF-Serving PredictRequest."""
    import grpc
    import numpy as np
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    channel = grpc.insecure_channel(address)
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "model"
    request.inputs["x"].CopyFrom(tf.make_tensor_proto(np.full((batch, inputs), 0.1,
                                                              np.float32)))

    def send() -> None:
        stub.Predict(request, timeout=10)

    return send, channel.close


def load(make_client: Callable[[], tuple[Callable[[], None], Callable[[], None]]],
         seconds: float, clients: int) -> dict[str, float]:
    """`clients` threads, each with its own client sending one request at a time."""
    latencies: list[float] = []
    errors = []
    stop_at = time.monotonic() + seconds

    def client() -> None:
        send, close = make_client()
        while time.monotonic() < stop_at:
            start = time.perf_counter()
            try:
                send()
                latencies.append(time.perf_counter() - start)
            except Exception as err:  # noqa: BLE001 - counted and reported
                errors.append(str(err))
        close()

    threads = [threading.Thread(target=client) for _ in range(clients)]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - start
    if not latencies:
        raise RuntimeError(f"no predict request succeeded: {errors[:3]}")
    ordered = sorted(latencies)
    return {
        "requests": len(latencies), "errors": len(errors), "clients": clients,
        "requests_per_s": len(latencies) / elapsed,
        "p50_ms": 1000 * statistics.median(ordered),
        "p99_ms": 1000 * ordered[int(0.99 * (len(ordered) - 1))],
    }


def samples_total(base: str) -> int:
    with urllib.request.urlopen(f"{base}api/status", timeout=10) as reply:
        latest = json.loads(reply.read()).get("latest") or {}
    return int(latest.get("samples_total", 0))


def predict_under_load(clients: list[int], batches: list[int], rate: float,
                       samples_per_message: int, seconds: float,
                       protocols: tuple[str, ...] = ("rest", "grpc")) -> list[dict]:
    with work_dir("hvd-online-predict-") as work, EmbeddedBroker(work / "broker") as broker:
        config = write_config(work, broker.url)
        common = [str(config), "--url", broker.url, "--run-dir", str(work / "run"),
                  "--set", "console.port=0", "--set", "console.grpc_port=0",
                  "--set", "train.max_samples=0",
                  "--set", "train.idle_timeout_s=0",
                  "--set", f"produce.samples_per_message={samples_per_message}"]
        producer = subprocess.Popen([sys.executable, "-m", "hvd_online.cli", "produce", *common,
                                     "--count", "100000000", "--rate", str(rate)],
                                    env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        ranks = subprocess.Popen(horovodrun_command(2, ["train", *common]), env=ENV,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            url_file = RunLayout(work / "run").console_url
            deadline = time.monotonic() + 120
            while not url_file.exists() and time.monotonic() < deadline:
                time.sleep(0.2)
            base = url_file.read_text().strip()
            predict = f"{base}v1/models/model:predict"
            while time.monotonic() < deadline:  # wait for the first published weights
                try:
                    request(predict, b'{"instances": [[' + b",".join([b"0"] * 16) + b"]]}")
                    break
                except Exception:  # noqa: BLE001 - 503 until training has started
                    time.sleep(0.5)
            time.sleep(5)  # training up to speed
            grpc_address = RunLayout(work / "run").console_grpc.read_text().strip()
            makers = {"rest": lambda batch: lambda: rest_client(predict, batch, 16),
                      "grpc": lambda batch: lambda: grpc_client(grpc_address, batch, 16)}
            results = []
            for protocol in protocols:
                for batch in batches:
                    for n in clients:
                        before, started = samples_total(base), time.monotonic()
                        result = load(makers[protocol](batch), seconds, n)
                        trained = (samples_total(base) - before) / (time.monotonic() - started)
                        results.append({**result, "protocol": protocol, "batch": batch,
                                        "trained_samples_per_s": trained,
                                        "stream_rate": rate,
                                        "samples_per_message": samples_per_message})
                        print(table(results[-1:]), flush=True)
        finally:
            for process in (ranks, producer):
                process.terminate()
                process.wait(30)
    return results


def table(results: list[dict]) -> str:
    lines = ["| protocol | samples/message | clients | batch | requests/s | p50 ms | p99 ms | "
             "errors | trained samples/s |", "|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r.get('protocol', 'rest')} | {r['samples_per_message']} | {r['clients']} | "
              f"{r['batch']} | "
              f"{r['requests_per_s']:.0f} | "
              f"{r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['errors']} | "
              f"{r['trained_samples_per_s']:,.0f} |" for r in results]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--clients", default="1,4,16", help="comma-separated")
    parser.add_argument("--batch", default="1,64", help="instances per request, comma-separated")
    parser.add_argument("--rate", type=float, default=5000, help="stream samples/s")
    parser.add_argument("--samples-per-message", type=int, default=1,
                        help="records packed into one Pulsar message")
    parser.add_argument("--protocols", default="rest,grpc",
                        help="rest (TF-Serving's JSON), grpc (its PredictionService)")
    parser.add_argument("--json", default="benchmarks/results/predict_load.json")
    args = parser.parse_args()
    results = predict_under_load([int(c) for c in args.clients.split(",")],
                                 [int(b) for b in args.batch.split(",")], args.rate,
                                 args.samples_per_message, args.seconds,
                                 tuple(args.protocols.split(",")))
    print(table(results))
    write_results(args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
