"""Accuracy before the drift, the dip, and samples needed to recover — for the online model
(read from the run's metrics.jsonl) next to a frozen model that stopped learning at the drift
(the same template trained offline on the pre-drift part of the same stream, then evaluated on
the post-drift part without updates).

    python -m examples.drift.report examples/drift/config.toml
"""

import json

import keras
import numpy as np

from examples.drift.producer import samples
from hvd_online.commands.finished_run import open_run
from hvd_online.state.run_dir import RunLayout


def online_curve(layout: RunLayout) -> tuple[np.ndarray, np.ndarray, list[int]]:
    rows = [json.loads(line) for line in layout.metrics.read_text().splitlines()]
    rows = [r for r in rows if r["count"] and r["metric"] is not None]
    seen = np.array([r["samples_total"] for r in rows])
    accuracy = np.array([r["metric"] for r in rows])
    return seen, accuracy, [r["samples_total"] for r in rows if r.get("drift")]


def frozen_accuracy(config, template, drift_at: int, angle: float, after: int) -> float:
    schema = template.schema
    keras.utils.set_random_seed(0)
    model = template.build_model()
    model.compile(template.make_optimizer(config.train.learning_rate),
                  keras.losses.BinaryCrossentropy(from_logits=True))
    before = samples(schema, 0, drift_at, drift_at, angle, seed=0)
    model.fit(before["x"], before["y"], batch_size=2 * config.window.batch_size, epochs=1,
              verbose=0)
    post = samples(schema, drift_at, after, drift_at, angle, seed=0)
    predicted = (model.predict(post["x"], verbose=0)[:, 0] > 0).astype("f4")
    return float(np.mean(predicted == post["y"]))


def main() -> None:
    config, template, _ = open_run("drift report: online vs frozen", need_checkpoint=False)
    drift_at = int(config.produce.params.get("drift_at", 60000))
    angle = float(config.produce.params.get("angle_deg", 90.0))
    seen, accuracy, flagged = online_curve(RunLayout.of(config))
    window = 10
    smooth = np.convolve(accuracy, np.ones(window) / window, mode="same")
    pre = accuracy[(seen <= drift_at) & (seen > drift_at * 0.75)]
    before = float(np.mean(pre))
    post = seen > drift_at
    dip = float(np.min(smooth[post][: 3 * window])) if post.any() else float("nan")
    recovered = np.flatnonzero(post & (smooth >= before - 0.02) & (seen > drift_at + 1000))
    to_recover = int(seen[recovered[0]] - drift_at) if len(recovered) else None
    after = int(seen[-1] - drift_at)
    tail = float(np.mean(accuracy[post][-window:])) if post.any() else float("nan")
    result = {
        "drift_at_samples": drift_at,
        "detected_at_samples": flagged,
        "online_accuracy_before_drift": round(before, 4),
        "online_accuracy_dip": round(dip, 4),
        "online_samples_to_recover": to_recover,
        "online_accuracy_at_end": round(tail, 4),
        "frozen_accuracy_after_drift": round(frozen_accuracy(config, template, drift_at, angle,
                                                             max(after, 1000)), 4),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
