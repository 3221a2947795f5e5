"""Model versions as messages: what the trainer publishes to the model-updates topic and a
serving replica applies, in order (the broker I/O is in streams/pulsar/model_updates.py).

A version is the model's weights as a list of numpy arrays (dense layers, and every variable
of a dynamic embedding table: its rows, the ID of each row, the sorted ID index...). It goes
out either **full** or as a **delta** against the version before it: per array, the rows
(first axis) whose values changed, or the whole array when most of it changed or its shape
did. A row reused by an eviction changes (its ID, its fresh weights), so deltas carry
evictions too: a replica forgets an evicted ID at the next version, as the trainer did.

    header (JSON)  version, base (the version a delta applies to, -1 for a full one), step,
                   created_ms (when training took the weights), kind, snapshot (where the
                   newest full version starts on the topic, so a late replica begins there)
    arrays         npz, no pickles: f<i> a whole array, or i<i> row indices + r<i> those rows

>>> import numpy as np
>>> v1 = [np.zeros((4, 2), np.float32), np.array([1.0], np.float32)]
>>> full = encode(Header(1, -1, 10, 0), v1)
>>> v2 = [v1[0].copy(), v1[1]]; v2[0][2] = 5.0
>>> delta = encode(Header(2, 1, 11, 0), v2, previous=v1)
>>> len(delta) < len(full) + 200, decode(delta)[0].kind
(True, 'delta')
>>> state = Replica()
>>> state.apply(*decode(full)), state.apply(*decode(delta))
(True, True)
>>> state.version, state.arrays[0][2].tolist(), state.arrays[0][1].tolist()
(2, [5.0, 5.0], [0.0, 0.0])
>>> state.apply(*decode(encode(Header(4, 3, 13, 0), v2, previous=v2)))  # 3 was missed
False
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace

import numpy as np

from streams.errors import StreamsError

#: a delta sends a whole array once more than this share of its rows changed
DENSE_SHARE = 0.5


class UpdateError(StreamsError):
    """A message on the model-updates topic is not a model version (or not a whole one)."""


@dataclass(frozen=True)
class Header:
    version: int
    #: the version a delta applies to; -1 for a full version
    base: int
    #: the training step whose weights these are (goes back after a resume; version never)
    step: int
    #: wall-clock ms when training took the weights
    created_ms: int
    #: the serialized broker position of the newest full version ("" before the first)
    snapshot: str = ""
    #: wall-clock ms of the oldest training step first held by this version (a version
    #: folds the steps since the one before): update -> served is measured from here
    trained_ms: int = 0

    @property
    def kind(self) -> str:
        return "full" if self.base < 0 else "delta"

    def with_snapshot(self, snapshot: str) -> Header:
        return replace(self, snapshot=snapshot)


def changed_rows(current: np.ndarray, previous: np.ndarray) -> np.ndarray | None:
    """Indices of the rows (first axis) that differ, or None if the whole array should go.

    >>> changed_rows(np.array([[1, 2], [3, 4]]), np.array([[1, 2], [3, 0]])).tolist()
    [1]
    >>> changed_rows(np.ones(3), np.zeros(3)) is None  # all of it changed
    True
    """
    if current.shape != previous.shape or current.ndim == 0 or current.shape[0] == 0:
        return None
    rows = current.shape[0]
    differs = np.not_equal(current.reshape(rows, -1), previous.reshape(rows, -1)).any(axis=1)
    changed = np.flatnonzero(differs)
    return None if len(changed) > DENSE_SHARE * rows else changed


def encode(header: Header, arrays: Sequence[np.ndarray],
           previous: Sequence[np.ndarray] | None = None) -> bytes:
    """One version as bytes: full when `previous` is None, else a delta against it."""
    if (previous is None) != (header.base < 0):
        raise ValueError("a delta needs the previous arrays, a full version none")
    parts: dict[str, np.ndarray] = {}
    if previous is not None and len(previous) != len(arrays):
        raise ValueError("a delta needs as many previous arrays as arrays")
    for n, array in enumerate(arrays):
        rows = None if previous is None else changed_rows(array, previous[n])
        if rows is None:
            parts[f"f{n}"] = array
        elif len(rows):
            parts[f"i{n}"] = rows.astype(np.int64)
            parts[f"r{n}"] = array[rows]
    meta = {**asdict(header), "count": len(arrays)}
    parts["header"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    out = io.BytesIO()
    np.savez(out, allow_pickle=False, **parts)
    return out.getvalue()


Parts = dict[str, np.ndarray]


def decode(payload: bytes) -> tuple[Header, int, Parts]:
    """(header, number of arrays, the arrays' parts) of one version."""
    try:
        with np.load(io.BytesIO(payload), allow_pickle=False) as npz:
            parts = {name: npz[name] for name in npz.files}
        meta = json.loads(parts.pop("header").tobytes())
        count = int(meta.pop("count"))
        return Header(**meta), count, parts
    except (ValueError, KeyError, TypeError, OSError, EOFError) as err:
        raise UpdateError(f"not a model version: {type(err).__name__}: {err}") from None


class Replica:
    """The arrays of the newest version applied; versions must come in order (a delta whose
    base is not the version held is refused, and the replica waits for a full version)."""

    def __init__(self) -> None:
        self.version = 0
        self.header: Header | None = None
        self.arrays: list[np.ndarray] = []

    def apply(self, header: Header, count: int, parts: Parts) -> bool:
        if header.version <= self.version:
            return False  # seen already (a redelivery, or a replay from a snapshot)
        if header.base >= 0 and (header.base != self.version or len(self.arrays) != count):
            return False
        arrays = []
        for n in range(count):
            if f"f{n}" in parts:
                arrays.append(parts[f"f{n}"])
            elif header.base < 0:
                raise UpdateError(f"a full version without array {n}")
            elif f"i{n}" in parts:
                array = self.arrays[n].copy()
                array[parts[f"i{n}"]] = parts[f"r{n}"]
                arrays.append(array)
            else:
                arrays.append(self.arrays[n])  # unchanged: shared, never written in place
        self.version, self.header, self.arrays = header.version, header, arrays
        return True
