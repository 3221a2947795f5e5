"""A serving replica under load while 2 ranks train, beside the console's in-job predict, and
update -> served (a benchmark, not a test).

`hvd-online run` on the MLP demo with its replica and the producer live at --rate samples/s;
for each protocol and number of clients, predict requests for --seconds (each client one
keep-alive connection or channel, one request at a time, batch 1) at the replica and at the
console; then the replica's update -> served quantiles: from the oldest training step a
version was the first to hold to the replica serving it (GET /api/serving, last 1,000
versions).

    .venv/bin/python -m benchmarks.serving [--seconds 20] [--clients 1,4] [--rate 5000]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from benchmarks.availability import Job, mlp_config, wait_until
from benchmarks.common import REPO, metrics_rows, work_dir, write_results
from benchmarks.failover import first_version
from benchmarks.predict_load import grpc_client, load, rest_client

RESULTS = REPO / "benchmarks" / "results" / "serving.json"


def trained_per_s(run_dir: Path, since: float) -> float:
    rows = [r for r in metrics_rows(run_dir) if r["time_s"] >= since]
    if len(rows) < 2:
        return 0.0
    return (rows[-1]["samples_total"] - rows[0]["samples_total"]) / (
        rows[-1]["time_s"] - rows[0]["time_s"])


def measure(seconds: float, clients: list[int], rate: float) -> dict:
    rows = []
    with work_dir("hvd-serving-") as tmp:
        run_dir = tmp / "run"
        job = Job.start(mlp_config(run_dir), run_dir, "--set", "train.max_samples=0",
                        "--set", "produce.count=1000000000", "--set", f"produce.rate={rate}",
                        "--set", "train.idle_timeout_s=0")
        try:
            replica = job.replica()
            wait_until(lambda: first_version(job), 240, "the replica's first version")
            time.sleep(10)  # training up to speed
            console_grpc = job.layout.console_grpc.read_text().strip()
            targets = {
                ("replica", "rest"): replica["rest"] + "v1/models/model:predict",
                ("replica", "grpc"): replica["grpc"],
                ("console", "rest"): job.console_url() + "v1/models/model:predict",
                ("console", "grpc"): console_grpc,
            }
            for (server, protocol), address in targets.items():
                for n in clients:
                    def make(protocol: str = protocol, address: str = address):  # noqa: ANN202
                        return (rest_client(address, 1, 16) if protocol == "rest"
                                else grpc_client(address, 1, 16))

                    started = time.time()
                    result = load(make, seconds, n)
                    rows.append({"server": server, "protocol": protocol, **result,
                                 "trained_samples_per_s": round(trained_per_s(run_dir,
                                                                              started))})
                    print(rows[-1], flush=True)
            status = job.serving()
        finally:
            job.stop()
    return {"command": f"python -m benchmarks.serving --seconds {seconds:g} --clients "
                       f"{','.join(map(str, clients))} --rate {rate:g}",
            "stream_rate": rate, "load": rows,
            "update_to_served_s": status["update_delay_recent_s"],
            "updates_every_s": 0.2}


def table(results: dict) -> str:
    lines = ["| server | protocol | clients | requests/s | p50 ms | p99 ms | errors | "
             "trained samples/s |", "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['server']} | {r['protocol']} | {r['clients']} | "
              f"{r['requests_per_s']:,.0f} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | "
              f"{r['errors']} | {r['trained_samples_per_s']:,} |" for r in results["load"]]
    delay = results["update_to_served_s"]
    lines.append(f"\nupdate -> served at the replica over the last {delay['versions']} "
                 f"versions: p50 {delay['p50']} s, p99 {delay['p99']} s")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--clients", default="1,4")
    parser.add_argument("--rate", type=float, default=5000)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    results = measure(args.seconds, [int(c) for c in args.clients.split(",")], args.rate)
    results["table"] = table(results)
    write_results(args.out, results)
    print(results["table"])
    print(json.dumps(results["update_to_served_s"]))


if __name__ == "__main__":
    main()
