"""What a checkpoint records besides the arrays: one typed `RunState`, broadcast to every rank.

Its owners fill it: the trainer its counters, each source its own snapshot (by source key),
each stateful operator its own (by operator key). Nobody decodes a neighbour's snapshot.

>>> state = RunState(step=3, samples_total=96, sources={"p-0": "0a1b"},
...                  operators={"drift": {"steps": 2}})
>>> RunState.from_json(state.to_json()) == state
True
>>> RunState.from_json({"step": 1, "samples_totl": 0})
Traceback (most recent call last):
...
ValueError: unknown run state key(s): samples_totl
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np


class Stateful(Protocol):
    """An operator whose state a checkpoint carries (torchtitan's `Stateful`)."""

    def snapshot(self) -> Any:
        """JSON-serialisable state (or `WithArrays`); restoring it into a fresh instance
        continues exactly."""

    def restore(self, state: Any) -> None: ...


@dataclass(frozen=True)
class WithArrays:
    """A snapshot with arrays beside its JSON state: the state goes into `state.json`, the
    arrays into the checkpoint's npz files (a drift challenger's weights)."""

    state: Any
    arrays: dict[str, list[np.ndarray]] = field(default_factory=dict)


@dataclass(frozen=True)
class RunState:
    #: the step this state was taken after
    step: int = 0
    #: samples trained across all ranks
    samples_total: int = 0
    #: steps whose update was skipped (non-finite loss or gradients)
    skipped_steps: int = 0
    #: ranks of the run that wrote it (a resume may use another count: partitions move)
    world_size: int = 1
    #: sha256 of the weights (equal on every rank)
    digest: str = ""
    #: every source's snapshot, by source key (one per topic partition)
    sources: dict[str, str | None] = field(default_factory=dict)
    #: every stateful operator's snapshot, by operator key
    operators: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RunState:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            msg = f"unknown run state key(s): {', '.join(unknown)}"
            raise ValueError(msg)
        return cls(**data)
