"""The run directory's paths, named once. Ranks, launchers, tests, benchmarks and evaluation
scripts all find a run's files through this.

>>> layout = RunLayout(Path("runs/mlp"))
>>> layout.checkpoints, layout.summary(1)
(PosixPath('runs/mlp/checkpoints'), PosixPath('runs/mlp/summary-rank-1.json'))
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hvd_online.config import Config


@dataclass(frozen=True)
class RunLayout:
    root: Path

    @classmethod
    def of(cls, config: Config) -> RunLayout:
        return cls(Path(config.run.dir))

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def broker_data(self) -> Path:
        """The embedded broker's data (when no stream.url is set)."""
        return self.root / "broker"

    @property
    def metrics(self) -> Path:
        """Rank 0's step reports, one JSON object a line."""
        return self.root / "metrics.jsonl"

    def serving(self, model_name: str) -> Path:
        """TF-Serving's model base path: one numbered SavedModel directory per version."""
        return self.root / "serving" / model_name

    @property
    def tensorboard(self) -> Path:
        """Rank 0's TensorBoard event files (`tensorboard --logdir runs`)."""
        return self.root / "tensorboard"

    @property
    def console_url(self) -> Path:
        """The console's address, written by rank 0 once it listens."""
        return self.root / "console.url"

    @property
    def console_grpc(self) -> Path:
        """host:port of the console's gRPC API (TF-Serving's), written with `console_url`."""
        return self.root / "console-grpc.txt"

    def replica(self, index: int) -> Path:
        """Serving replica `index`'s addresses (JSON: rest, grpc, pid), written once it
        listens."""
        return self.root / "replicas" / f"replica-{index}.json"

    def standby_go(self, launch: int) -> Path:
        """Created by the supervisor when standby launch `launch` is to start training."""
        return self.root / f"standby-{launch}.go"

    def summary(self, rank: int) -> Path:
        """One rank's machine-readable result, written when it ends."""
        return self.root / f"summary-rank-{rank}.json"

    @property
    def config_error(self) -> Path:
        """Written by a rank that found its config wrong only once running (e.g. fewer
        partitions than ranks): the supervisor does not relaunch such a launch."""
        return self.root / "config-error.txt"

    def record_config_error(self, message: str) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            self.config_error.write_text(message + "\n")
        except OSError:
            pass  # the error itself still ends the rank with its exit code

    def clear_summaries(self) -> None:
        for path in self.root.glob("summary-rank-*.json"):
            path.unlink(missing_ok=True)

    def summaries(self) -> dict[int, dict[str, Any]]:
        """Every rank's summary of the last run, by rank."""
        found = {}
        for path in sorted(self.root.glob("summary-rank-*.json")):
            data = json.loads(path.read_text())
            found[int(data["rank"])] = data
        return found
