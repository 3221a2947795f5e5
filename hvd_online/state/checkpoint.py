"""Checkpoints: one directory per cut, written so a crash never leaves a half one behind.

Layout: `CKPT_ROOT/ckpt-0000000123/{weights.npz, optimizer.npz, state.json, manifest.json}`;
`state.json` is the typed `RunState`. Operators that own arrays (a drift challenger's model)
add `NAME.npz` files, listed in the manifest like the others.
Files go into a temporary directory, are fsynced, the manifest (with each file's sha256) is
written last, and the directory is renamed into place: a checkpoint either has a valid
manifest or is ignored, and the previous one stays usable.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hvd_online.state.run_state import RunState

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"


@dataclass(frozen=True)
class Checkpoint:
    path: Path
    weights: list[np.ndarray]
    optimizer: list[np.ndarray]
    state: RunState
    #: operators' arrays by name (e.g. "challenger-weights")
    extra: dict[str, list[np.ndarray]] = dataclasses.field(default_factory=dict)
    #: newer checkpoints that were unusable (the durable cursor may be acknowledged past this
    #: one; sources read from its snapshots all the same)
    skipped_newer: int = 0


@dataclass(frozen=True)
class Resume:
    """Where a run continues from, as every rank sees it."""

    state: RunState
    #: rank 0 only (the arrays reach the other ranks with the initial broadcast)
    checkpoint: Checkpoint | None = None


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _write_arrays(path: Path, arrays: list[np.ndarray]) -> None:
    with open(path, "wb") as f:
        np.savez(f, *arrays)


def save_checkpoint(root: Path, weights: list[np.ndarray], optimizer: list[np.ndarray],
                    state: RunState, keep: int = 3,
                    extra: Mapping[str, list[np.ndarray]] | None = None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    step = state.step
    final = root / f"ckpt-{step:010d}"
    tmp = root / f".{final.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        _write_complete(tmp, weights, optimizer, state, extra)
    except BaseException:  # e.g. the disk is full: leave no half-written directory behind
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if final.exists():  # the same step saved twice (e.g. save then stop): replace it
        shutil.rmtree(final)
    os.rename(tmp, final)
    _fsync(root)
    _prune(root, keep)
    return final


def _write_complete(tmp: Path, weights: list[np.ndarray], optimizer: list[np.ndarray],
                    state: RunState, extra: Mapping[str, list[np.ndarray]] | None) -> None:
    """Every file of a checkpoint, fsynced, with the manifest last."""
    step = state.step
    tmp.mkdir()
    _write_arrays(tmp / "weights.npz", weights)
    _write_arrays(tmp / "optimizer.npz", optimizer)
    (tmp / "state.json").write_text(json.dumps(state.to_json(), indent=1))
    files = ["weights.npz", "optimizer.npz", "state.json"]
    for name, arrays in (extra or {}).items():
        _write_arrays(tmp / f"{name}.npz", arrays)
        files.append(f"{name}.npz")
    for name in files:
        _fsync(tmp / name)
    manifest = {"step": step, "files": {name: _sha256(tmp / name) for name in files}}
    (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1))
    _fsync(tmp / MANIFEST)
    _fsync(tmp)


def _prune(root: Path, keep: int) -> None:
    for old in list_checkpoints(root)[: -max(keep, 1)]:
        shutil.rmtree(old, ignore_errors=True)


def list_checkpoints(root: Path) -> list[Path]:
    """Complete-looking checkpoint directories, oldest first."""
    if not root.is_dir():
        return []
    return sorted(p for p in root.glob("ckpt-*") if p.is_dir())


def _load_arrays(path: Path) -> list[np.ndarray]:
    with np.load(path) as data:
        return [data[f"arr_{i}"] for i in range(len(data.files))]


def load_checkpoint(path: Path) -> Checkpoint:
    manifest = json.loads((path / MANIFEST).read_text())
    for name, digest in manifest["files"].items():
        if _sha256(path / name) != digest:
            msg = f"{path / name} does not match its manifest checksum"
            raise ValueError(msg)
    standard = {"weights.npz", "optimizer.npz", "state.json"}
    extra = {name.removesuffix(".npz"): _load_arrays(path / name)
             for name in manifest["files"] if name not in standard}
    return Checkpoint(path, _load_arrays(path / "weights.npz"),
                      _load_arrays(path / "optimizer.npz"),
                      RunState.from_json(json.loads((path / "state.json").read_text())), extra)


def load_latest_checkpoint(root: Path) -> Checkpoint | None:
    """The newest checkpoint that verifies; a corrupt one is reported and skipped."""
    for skipped, path in enumerate(reversed(list_checkpoints(root))):
        try:
            checkpoint = load_checkpoint(path)
        except (OSError, ValueError, KeyError, TypeError) as err:
            log.warning("checkpoint %s is unusable (%s); trying the previous one", path, err)
            continue
        return dataclasses.replace(checkpoint, skipped_newer=skipped)
    return None
