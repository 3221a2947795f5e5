"""Test-only ledger hook: records the key of every sample in every applied update.

Enabled by the environment variable HVD_ONLINE_LEDGER_DIR; each rank appends to
`rank-R.ids` one line "STEP ID" per sample and flushes after every step, so a rank killed
with -9 leaves a ledger complete up to its last applied step. Steps after the checkpoint a
run resumes from were rolled back with the model, so readers drop them (see the tests).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from hvd_online.reports import StepReport

ENV = "HVD_ONLINE_LEDGER_DIR"


class LedgerHook:
    def __init__(self, directory: Path, rank: int, key_field: str) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.key_field = key_field
        self._file = open(directory / f"rank-{rank}.ids", "a")  # noqa: SIM115 - lives with run

    def on_applied(self, step: int, rows: np.ndarray) -> None:
        ids = rows[self.key_field].tolist()
        self._file.write("".join(f"{step} {i}\n" for i in ids))
        self._file.flush()

    def on_report(self, report: StepReport, model: Any) -> None:
        pass


def ledger_from_env(rank: int, key_field: str | None) -> LedgerHook | None:
    directory = os.environ.get(ENV)
    if not directory or key_field is None:
        return None
    return LedgerHook(Path(directory), rank, key_field)
