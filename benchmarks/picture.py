"""benchmarks/results/benchmarks.png: throughput per case against the in-memory limit, and
freshness p99 against the offered rate (matplotlib, a benchmark-only extra)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def draw(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # no display
    import matplotlib.pyplot as plt

    throughput = report["throughput"]
    names = [n for n in throughput if not n.startswith("in-memory")]
    fig, (bars, fresh) = plt.subplots(1, 2, figsize=(15, 7),
                                      gridspec_kw={"width_ratios": [3, 2]})
    rates = [throughput[n]["samples_per_s"] for n in names]
    colours = ["tab:blue" if n.startswith("hvd-online") else "tab:gray" for n in names]
    spread = [[r - throughput[n]["slowest_per_s"] for n, r in zip(names, rates, strict=True)],
              [throughput[n]["fastest_per_s"] - r for n, r in zip(names, rates, strict=True)]]
    bars.barh(names, rates, color=colours, xerr=spread)
    for batch, style in (("256", "--"), ("2048", ":")):
        limit = throughput.get(f"in-memory, batch {batch}")
        if limit:
            bars.axvline(limit["samples_per_s"], color="tab:red", linestyle=style,
                         label=f"in-memory limit, batch {batch}")
    bars.invert_yaxis()
    bars.set_xlabel("samples/s (median; bars: slowest-fastest repeat)")
    bars.set_title("Throughput, MLP demo, pre-filled stream")
    bars.legend(loc="lower right")
    bars.tick_params(axis="y", labelsize=8)
    for per_message in sorted({r["samples_per_message"] for r in report["freshness"]}):
        rows = sorted((r for r in report["freshness"] if r["samples_per_message"] == per_message),
                      key=lambda r: r["rate"])
        fresh.plot([r["rate"] for r in rows], [r["p99_ms"] for r in rows], marker="o",
                   label=f"{per_message} sample(s)/message")
    fresh.axhline(1000, color="tab:red", linestyle="--", label="target p99 1 s")
    fresh.set_xscale("log")
    fresh.set_yscale("log")
    fresh.set_xlabel("offered samples/s")
    fresh.set_ylabel("publish -> weights updated, p99 ms")
    fresh.set_title("Freshness, 2 ranks")
    fresh.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
