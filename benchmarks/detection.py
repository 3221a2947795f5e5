"""Drift detection on any loss scale: Page-Hinkley in loss units (hvd-online 0.1) beside
Page-Hinkley in units of the loss' own spread (0.2's default), on the same per-step losses.

Each stream of the quality benchmark (benchmarks/quality_streams.py), plus River's
FriedmanDrift regression streams (abrupt and gradual; once with targets as they come, once
divided by 12, where the MSE sits near 0.01 as in the report that a regression template never
flagged), is learnt once in this process, prequentially, 64 samples a step (2 ranks of
`examples/drift`'s 32): each step's mean loss is taken before the step learns from it, as the
trainer's detector sees it. The detectors then replay that series, and the series scaled by
0.01 and by 100, and report where each first flagged a drift relative to the true drift
point, and how many flags came before it (false alarms; on a stream without a drift point,
every flag is counted).

This measures detection only (no response acts on the flags, so the loss after a flag is the
"mark only" loss); benchmarks.quality measures recovery through the real trainer.

    python -m benchmarks.detection            # all streams, ~2 min on 2 cores
    python -m benchmarks.detection --quick    # 4 streams
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from collections.abc import Callable, Iterator

import keras
import numpy as np
import tensorflow as tf

from benchmarks.common import REPO, write_results
from benchmarks.quality_streams import STREAMS, stream_rows
from benchmarks.throughput import plain_train_step
from examples.drift.model import StreamClassifier
from hvd_online.drift.detectors import PageHinkley, Signal
from hvd_online.model.template import ModelTemplate
from streams.schema import Schema

RESULTS = REPO / "benchmarks" / "results" / "detection.json"
#: samples a step: examples/drift's batch_size on 2 ranks
STEP = 64
LEARNING_RATE = 0.003
SCALES = (1.0, 0.01, 100.0)
#: a flag this many samples before the drift point still counts as its detection (a step's
#: window and the detector's noise)
EARLY = 1000
DETECTORS: dict[str, Callable[[], PageHinkley]] = {
    # 0.1's defaults: delta 0.005, threshold 1, in loss units, against the mean since the start
    "0.1 absolute": lambda: PageHinkley(0.005, 1.0, 30, scale="absolute"),
    # 0.2's defaults: delta 0.5, threshold 20, in spread units, against the recent level
    "0.2 spread": lambda: PageHinkley(scale="spread"),
}
#: regression streams: name -> (FriedmanDrift drift_type, target divisor, kind)
REGRESSION = {"friedman": ("gra", 1.0, "abrupt"), "friedman_small": ("gra", 12.0, "abrupt"),
              "friedman_gradual": ("gsg", 1.0, "gradual"),
              "friedman_gradual_small": ("gsg", 12.0, "gradual")}
REGRESSION_TOTAL, REGRESSION_DRIFT = 60000, 30000
QUICK = ("drift", "stationary", "sea", "friedman_small")


class Regressor(ModelTemplate):
    """examples/drift's classifier with one linear output and the MSE."""

    loss, metric = "mse", "mae"

    def __init__(self, inputs: int = 10, hidden: int = 32) -> None:
        self.inputs, self.hidden = inputs, hidden
        self.schema = Schema.from_fields([("id", "<i8"), ("x", "<f4", (inputs,)), ("y", "<f4")],
                                         features="x", label="y", key="id")

    def build_model(self) -> keras.Model:
        return keras.Sequential([keras.Input((self.inputs,)),
                                 keras.layers.Dense(self.hidden, activation="relu"),
                                 keras.layers.Dense(1)])


def friedman_rows(drift_type: str, divisor: float, seed: int = 7) -> np.ndarray:
    from river.datasets import synth

    schema = Regressor().schema
    rows = np.zeros(REGRESSION_TOTAL, dtype=schema.dtype)
    rows["id"] = np.arange(REGRESSION_TOTAL)
    # the second position (a recurrence for 'gra', the end of the slow change for 'gsg') lies
    # past the stream for 'gra'; 'gsg' changes from the first to the second
    position = ((REGRESSION_DRIFT, 10 * REGRESSION_TOTAL) if drift_type == "gra"
                else (REGRESSION_DRIFT, REGRESSION_DRIFT + 10000))
    source = synth.FriedmanDrift(drift_type=drift_type, position=position, seed=seed)
    for i, (x, y) in enumerate(itertools.islice(source, REGRESSION_TOTAL)):
        rows["x"][i] = [2 * v - 1 for v in x.values()]  # features are uniform in [0, 1]
        rows["y"][i] = y / divisor
    return rows


def step_losses(template: ModelTemplate, rows: np.ndarray) -> np.ndarray:
    """Each step's mean loss before the step learns from it, learning as the trainer does."""
    keras.utils.set_random_seed(0)
    step = plain_train_step(template, LEARNING_RATE)
    losses = []
    for start in range(0, len(rows) - STEP + 1, STEP):
        batch = rows[start:start + STEP]
        losses.append(float(step(tf.constant(batch["x"]), tf.constant(batch["y"]))))
    return np.array(losses)


def flags(make: Callable[[], PageHinkley], losses: np.ndarray) -> list[int]:
    """The samples seen when each drift flag came."""
    detector = make()
    return [(i + 1) * STEP for i, loss in enumerate(losses)
            if detector.update(float(loss)) is Signal.DRIFT]


def judged(found: list[int], drift_at: int | None) -> dict:
    if drift_at is None:
        return {"first": None, "false_alarms": len(found)}
    true = [f - drift_at for f in found if f >= drift_at - EARLY]
    return {"first": true[0] if true else None,
            "false_alarms": sum(f < drift_at - EARLY for f in found)}


def streams(names: list[str]) -> Iterator[tuple[str, str, int | None, Callable[[], tuple]]]:
    """(name, kind, drift point, a function giving (template, rows))."""
    for name in names:
        if name in REGRESSION:
            drift_type, divisor, kind = REGRESSION[name]
            yield name, kind, REGRESSION_DRIFT, (
                lambda d=drift_type, v=divisor: (Regressor(), friedman_rows(d, v)))
            continue
        stream = STREAMS[name]
        template = StreamClassifier(stream.features, 32, stream.classes)
        yield name, stream.kind, stream.drift_at, (
            lambda n=name, t=template, s=stream: (t, stream_rows(t.schema, n, s.total)))


def measure(names: list[str]) -> list[dict]:
    results = []
    for name, kind, drift_at, make in streams(names):
        started = time.monotonic()
        template, rows = make()
        losses = step_losses(template, rows)
        found = {detector: {f"x{scale:g}": judged(flags(build, losses * scale), drift_at)
                            for scale in SCALES}
                 for detector, build in DETECTORS.items()}
        results.append({"stream": name, "kind": kind, "drift_at": drift_at,
                        "loss": template.loss, "mean_loss": float(np.mean(losses)),
                        "detectors": found, "seconds": round(time.monotonic() - started, 1)})
        print(f"{name}: {found}", file=sys.stderr, flush=True)
    return results


def verdict(cell: dict, drift_at: int | None) -> str:
    if drift_at is None:
        flagged = cell["false_alarms"]
        return "no flag" if not flagged else f"{flagged} flag" + ("s" if flagged > 1 else "")
    first = "never" if cell["first"] is None else f"{cell['first']:+,}"
    return first + (f" ({cell['false_alarms']} false)" if cell["false_alarms"] else "")


def table(results: list[dict]) -> str:
    names = list(DETECTORS)
    head = ["stream", "kind", "mean loss"] + [f"{d}, x{s:g}" for d in names for s in SCALES]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        cells = [verdict(r["detectors"][d][f"x{s:g}"], r["drift_at"])
                 for d in names for s in SCALES]
        lines.append(f"| {r['stream']} | {r['kind']} | {r['mean_loss']:.4g} | "
                     + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help=f"only {', '.join(QUICK)}")
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args(argv)
    names = list(QUICK) if args.quick else [*STREAMS, *REGRESSION]
    results = measure(names)
    print("Where Page-Hinkley first flagged, in samples from the drift point; stationary and "
          "gradual-everywhere streams count every flag")
    rendered = table(results)
    print(rendered)
    write_results(args.out, {"command": "python -m benchmarks.detection"
                             + (" --quick" if args.quick else ""),
                             "quick": args.quick, "step": STEP, "table": rendered,
                             "results": results})


if __name__ == "__main__":
    main()
