"""The sample ledger the exactly-once tests read: a step hook attached by name from config
(`train.step_hooks = [{use = ".../ledger.py:SampleLedger", dir = "..."}]`).

Each rank appends to `DIR/rank-R.ids` one line "STEP KEY" (with `labels = true`: "STEP KEY
LABEL") per sample of every applied update,
flushed within the step and before any checkpoint of it, so a rank killed with -9 leaves a
ledger complete up to its last applied step. Steps after the checkpoint a run resumes from
were rolled back with the model, so readers drop them (`read_labelled_ledger`,
`tests/integration/harness.read_ledger`). Under
`hvd-online run`, each launch of the supervisor writes to its own `DIR/launch-N/`.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from streams.schema import Schema


class SampleLedger:
    def __init__(self, rank: int, schema: Schema, dir: str, labels: bool = False) -> None:
        if schema.key is None:
            msg = "the sample ledger needs a schema with a key field"
            raise ValueError(msg)
        directory = Path(dir)
        launch = os.environ.get("HVD_ONLINE_LAUNCH")  # `hvd-online run` relaunches: one dir each
        if launch:
            directory = directory / f"launch-{launch}"
        directory.mkdir(parents=True, exist_ok=True)
        self.key_field = schema.key
        self.label_field = schema.label if labels else None
        self._file = open(directory / f"rank-{rank}.ids", "a")  # noqa: SIM115 - lives with run

    def __call__(self, step: int, rows: np.ndarray) -> None:
        keys = rows[self.key_field].tolist()
        if self.label_field is None:
            self._file.write("".join(f"{step} {k}\n" for k in keys))
        else:
            labels = rows[self.label_field].tolist()
            self._file.write("".join(f"{step} {k} {y:g}\n"
                                     for k, y in zip(keys, labels, strict=True)))
        self._file.flush()


def ledger_hook(directory: Path, labels: bool = False) -> str:
    """The override that attaches this sample ledger to a run."""
    flag = "true" if labels else "false"
    hook = Path(__file__).resolve()
    return (f'train.step_hooks=[{{use = "{hook}:SampleLedger", dir = "{directory}", '
            f'labels = {flag}}}]')


def read_labelled_ledger(directory: Path, up_to_step: int | None = None
                         ) -> list[tuple[int, float | None]]:
    """(id, label or None) of every trained sample, as `read_ledger`."""
    out: list[tuple[int, float | None]] = []
    for file in sorted(directory.glob("rank-*.ids")):
        for line in file.read_text().split("\n")[:-1]:  # not a line cut by kill -9
            parts = line.split()
            if up_to_step is None or int(parts[0]) <= up_to_step:
                out.append((int(parts[1]), float(parts[2]) if len(parts) == 3 else None))
    return out
