"""The one checkpoint manager (torchtitan's shape): it holds every stateful part of a rank,
decides when to save, saves, restores and commits. The parts never learn about files:

- the model and its optimizer (`model` below): rank 0's arrays, broadcast to every rank at
  start, written by rank 0;
- `shared` operators, equal on every rank (the drift response): snapshot on rank 0, restored
  on every rank; a snapshot may carry arrays (`WithArrays`), kept in the checkpoint's npz files;
- `local` operators and sources, each rank's own (the joins, the partition readers): gathered
  from every rank, restored where their keys are; sources commit once the save is durable;
- the run's progress (step, samples, skipped updates).

A save is collective (every rank calls `save` at the same step); so is `restore`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras

from hvd_online.config import CheckpointConfig
from hvd_online.model.state import optimizer_state, set_optimizer_state, weights_digest
from hvd_online.state.checkpoint import Resume, load_latest_checkpoint, save_checkpoint
from hvd_online.state.run_state import RunState, Stateful, WithArrays
from hvd_online.sync import collectives
from hvd_online.sync.collectives import World
from hvd_online.sync.control import Flag
from streams.source import PartitionSource

log = logging.getLogger(__name__)

#: flags after which a step is checkpointed, whatever the schedule
SAVE_FLAGS = {Flag.SAVE, Flag.STOP, Flag.SIGTERM, Flag.IDLE}


@dataclass
class Progress:
    """The run's counters, advanced by the training loop."""

    #: the last step taken
    step: int = 0
    #: samples trained across all ranks
    samples_total: int = 0
    #: steps whose update was skipped (non-finite loss or gradients)
    skipped_steps: int = 0


def read_resume(checkpoints: Path, world: World) -> Resume | None:
    """Rank 0 reads the newest valid checkpoint; every rank receives its run state (the
    arrays stay on rank 0 until `restore`)."""
    checkpoint = load_latest_checkpoint(checkpoints) if world.is_chief else None
    state = collectives.broadcast_object(checkpoint.state if checkpoint else None)
    if state is None:
        return None
    log.info("rank %d resuming from step %d", world.rank, state.step)
    return Resume(state, checkpoint)


class CheckpointManager:
    def __init__(self, root: Path, config: CheckpointConfig, world: World, model: keras.Model,
                 optimizer: keras.optimizers.Optimizer, sources: Sequence[PartitionSource],
                 shared: Mapping[str, Stateful], local: Mapping[str, Stateful]) -> None:
        self.root = root
        self.config = config
        self.world = world
        self.model, self.optimizer = model, optimizer
        self.sources = list(sources)
        self.shared, self.local = dict(shared), dict(local)
        self.progress = Progress()
        #: saves the disk refused in this process (rank 0 logs why)
        self.failures = 0
        self._last_save = time.monotonic()
        self._last_step_seen = 0

    # -- restore ----------------------------------------------------------------------------

    def restore(self, resume: Resume | None) -> None:
        """Collective: every part back as the checkpoint has it (or rank 0's fresh weights
        everywhere when there is none)."""
        state = resume.state if resume else RunState()
        self.progress = Progress(state.step, state.samples_total, state.skipped_steps)
        self._last_step_seen = state.step
        checkpoint = resume.checkpoint if resume else None
        if checkpoint is not None:  # rank 0 holds the arrays
            self.model.set_weights(checkpoint.weights)
            self.optimizer.build(self.model.trainable_variables)
            set_optimizer_state(self.optimizer, checkpoint.optimizer)
        collectives.broadcast_initial_state(self.model, self.optimizer)
        for key, operator in self.local.items():
            if key in state.operators:
                operator.restore(state.operators[key])
        arrays = collectives.broadcast_object(checkpoint.extra if checkpoint else None) or {}
        for key, operator in self.shared.items():
            if key in state.operators:
                mine = {name.removeprefix(f"{key}."): v for name, v in arrays.items()
                        if name.startswith(f"{key}.")}
                operator.restore(WithArrays(state.operators[key], mine))

    # -- when -------------------------------------------------------------------------------

    def timer_flags(self) -> set[Flag]:
        """Rank 0's clock asks for a save through the step's flags, so every rank saves at
        the same step."""
        every = self.config.every_seconds
        if self.world.is_chief and every > 0 and time.monotonic() - self._last_save >= every:
            return {Flag.SAVE}
        return set()

    def due(self, step_flags: set[Flag], stopping: bool) -> bool:
        """Called at every step that reached every rank: a request, a stop, or a multiple of
        `every_steps` crossed since the last such step."""
        every, step = self.config.every_steps, self.progress.step
        crossed = bool(every) and step // every > self._last_step_seen // every
        self._last_step_seen = step
        return stopping or crossed or bool(step_flags & SAVE_FLAGS)

    # -- save -------------------------------------------------------------------------------

    def save(self) -> str | None:
        """Collective. Each rank's local parts snapshot themselves; rank 0 writes them with
        its shared parts and arrays; then every source commits its snapshot (the broker may
        forget what it covers). None when the disk refused it."""
        sources = {source.key: source.snapshot() for source in self.sources}
        local = {key: operator.snapshot() for key, operator in self.local.items()}
        gathered = collectives.allgather_object((sources, local))
        path = None
        if self.world.is_chief:
            path = self._write(gathered)
        path = collectives.broadcast_object(path)  # also a barrier: written before we commit
        self._last_save = time.monotonic()
        if path is None:  # not durable: the broker must keep everything after the last one
            self.failures += 1
            return None
        for source in self.sources:
            source.commit(sources[source.key])
        return path

    def _write(self, gathered: list[tuple[dict[str, Any], dict[str, Any]]]) -> str | None:
        operators = {k: v for _, part in gathered for k, v in sorted(part.items())}
        arrays = {}
        for key, operator in self.shared.items():
            snapshot = operator.snapshot()
            operators[key] = snapshot.state
            arrays.update({f"{key}.{name}": v for name, v in snapshot.arrays.items()})
        progress = self.progress
        state = RunState(
            step=progress.step, samples_total=progress.samples_total,
            skipped_steps=progress.skipped_steps, world_size=self.world.size,
            digest=weights_digest(self.model),
            sources={k: v for part, _ in gathered for k, v in sorted(part.items())},
            operators=operators)
        try:
            return str(save_checkpoint(self.root, self.model.get_weights(),
                                       optimizer_state(self.optimizer), state,
                                       self.config.keep, arrays))
        except OSError as err:  # full, read-only, gone: training goes on, the next save retries
            log.error("CHECKPOINT FAILED at step %d: %s. Nothing after the last durable "
                      "checkpoint is acknowledged; training goes on and the next save tries "
                      "again.", state.step, err)
            return None
