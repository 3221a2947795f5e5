"""Where a rank's memory goes: 2 ranks on the MLP demo and on the clicks example, each case
changing one thing, against a bare `import tensorflow` (the floor of any rank).

Each rank's summary says its peak resident memory and, at its end, its own (anonymous) pages
apart from mapped files (mostly TensorFlow's shared libraries, shared by every rank on a host);
see hvd_online/training/health.py.

    .venv/bin/python -m benchmarks.rank_memory [--samples 60000]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from benchmarks.common import ENV, REPO, fill_topic, run_ranks, train_argv, work_dir, write_results
from benchmarks.join_latency import join_latency
from streams.pulsar.broker import EmbeddedBroker

RESULTS = REPO / "benchmarks" / "results" / "rank_memory.json"
#: MLP demo cases: name -> config overrides
MLP_CASES = {
    "MLP demo, console on rank 0 (the default)": ("--set", "console.enabled=true",
                                                  "--set", "console.port=0",
                                                  "--set", "console.grpc_port=0"),
    "MLP demo, no console": (),
    "MLP demo, no console, no TF-Serving export": ("--set", "serving.export_every_s=0"),
}
FLOOR = """
import tensorflow, keras, horovod.tensorflow, pulsar
from hvd_online.training.health import memory_breakdown
print(__import__("json").dumps(memory_breakdown()))
"""


def floor() -> dict[str, float]:
    """A process that imports what a rank imports, and does nothing."""
    out = subprocess.run([sys.executable, "-c", FLOOR], capture_output=True, text=True,
                         env=ENV, check=True, cwd=REPO)
    return json.loads(out.stdout.strip().splitlines()[-1])


def mlp_case(url: str, run_dir: Path, name: str, extra: tuple[str, ...], samples: int) -> dict:
    argv = train_argv(url, "plain", run_dir, samples, 256)
    if "--no-console" in argv and "console.enabled=true" in extra:
        argv.remove("--no-console")
    found = run_ranks(2, [*argv, *extra], run_dir)
    return {"case": name, "ranks": [{"peak_mb": s["peak_rss_mb"], **s["memory_at_end"]}
                                    for s in found]}


def table(result: dict) -> str:
    lines = ["| case | peak RSS per rank (MB) | at the end: own (anonymous) MB | "
             "mapped files MB |", "|---|---|---|---|"]
    f = result["floor"]
    lines.append(f"| `import tensorflow, keras, horovod, pulsar` (the floor) | "
                 f"{f['peak_mb']:.0f} | {f['anonymous_mb']:.0f} | {f['files_mb']:.0f} |")
    for case in result["cases"]:
        ranks = case["ranks"]

        def span(key: str, ranks: list[dict] = ranks) -> str:
            values = sorted(r[key] for r in ranks)
            return f"{values[0]:.0f}-{values[-1]:.0f}"

        lines.append(f"| {case['case']} | {span('peak_mb')} | {span('anonymous_mb')} | "
                     f"{span('files_mb')} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=60000)
    args = parser.parse_args()
    result: dict = {"floor": floor(), "cases": []}
    with work_dir("hvd-online-memory-") as work, EmbeddedBroker(work / "broker") as broker:
        fill_topic(broker.url, "plain", args.samples, 1)  # each case reads it all
        for i, (name, extra) in enumerate(MLP_CASES.items()):
            result["cases"].append(mlp_case(broker.url, work / f"mlp-{i}", name, extra,
                                            args.samples))
        clicks = join_latency(broker.url, work / "clicks", 2000.0, 20)
        result["cases"].append({"case": "clicks example, 2,000 impressions/s for 20 s",
                                "ranks": clicks["memory"]})
    print(table(result))
    write_results(RESULTS, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
