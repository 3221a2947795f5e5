"""Codecs turn message payloads into one structured numpy array per window.

Bad payloads never raise: they come back as `Rejected(index, reason)` so the caller can send
them to the dead-letter topic and keep training.

>>> from streams.schema import Schema
>>> schema = Schema.from_fields([("x", "<f4", (2,)), ("y", "<f4")], features="x", label="y")
>>> codec = RecordCodec(schema)
>>> rows = np.array([([1, 2], 3), ([4, 5], 6)], dtype=schema.dtype)
>>> good, rejected = codec.decode(codec.encode_many(rows) + [b"short"])
>>> good["y"].tolist(), [r.reason.split(" (")[0] for r in rejected]
([3.0, 6.0], ['wrong size: 5 bytes, a record is 12 bytes'])
>>> JsonCodec(schema).decode([b'{"x": [1, 2], "y": 3}'])[0]["x"].tolist()
[[1.0, 2.0]]

A record payload may carry several records back to back (`per_message`): the per-message cost
of a broker (a callback, an id, an acknowledgement) is then shared by that many samples.

>>> packed = codec.encode_many(rows, per_message=2)
>>> len(packed), codec.sample_counts(packed).tolist(), codec.decode(packed)[0]["y"].tolist()
(1, [2], [3.0, 6.0])
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from streams.errors import CodecError
from streams.schema import Fields
from streams.source import Record


@dataclass(frozen=True)
class Rejected:
    """A payload that could not become a sample, and why (goes to the dead-letter topic)."""

    index: int
    reason: str


class Codec(Protocol):
    schema: Fields

    def encode_many(self, rows: np.ndarray, per_message: int = 1) -> list[bytes]: ...

    def sample_counts(self, payloads: Sequence[bytes]) -> np.ndarray:
        """Samples each payload carries (at least 1), cheaply: the window counts samples,
        not messages. An int64 array."""
        ...

    def decode(self, payloads: Sequence[bytes]) -> tuple[np.ndarray, list[Rejected]]: ...


#: event and label times a stream can carry, in ms since the epoch: from 1990-01-01 to a day
#: ahead of this machine's clock (seconds instead of ms, or two fields swapped, land outside)
EARLIEST_MS = 631_152_000_000
AHEAD_MS = 86_400_000


def _invalid_reasons(schema: Fields, rows: np.ndarray) -> dict[int, str]:
    """Why each bad row cannot be trained, by row index (fine rows are absent); vectorised,
    no Python loop per row unless a row is bad."""
    reasons: dict[int, str] = {}
    if not len(rows):
        return reasons
    ok = np.ones(len(rows), dtype=bool)
    for name in schema.float_fields():
        ok &= np.isfinite(rows[name].reshape(len(rows), -1)).all(axis=1)
    for i in np.flatnonzero(~ok):
        reasons[int(i)] = "non-finite value (NaN or inf) in a float field"
    latest = time.time() * 1000 + AHEAD_MS
    for name in schema.time_fields():
        times = rows[name].astype(np.float64)
        for i in np.flatnonzero(ok & ((times < EARLIEST_MS) | (times > latest))):
            reasons[int(i)] = (f"implausible time: {name} = {int(rows[name][i])} is not a time "
                               f"in ms since the epoch between 1990-01-01 and a day from now")
    return reasons


def _split_invalid(schema: Fields, rows: np.ndarray, owner: np.ndarray,
                   rejected: list[Rejected]) -> np.ndarray:
    """Drop every row of a payload that has an invalid row (`owner[i]` is row i's payload):
    the payload goes to the dead-letter topic whole, so none of its samples is lost."""
    bad: dict[int, str] = {}
    for i, reason in sorted(_invalid_reasons(schema, rows).items()):
        bad.setdefault(int(owner[i]), reason)
    if not bad:
        return rows
    rejected.extend(Rejected(i, reason) for i, reason in sorted(bad.items()))
    return rows[~np.isin(owner, list(bad))]


class RecordCodec:
    """Fixed-size binary records: a payload is one or more `schema.dtype` items back to back.

    A window is decoded with one `np.frombuffer` over the joined payloads, so the cost per
    message is a length check, not per-field Python work.
    """

    def __init__(self, schema: Fields) -> None:
        if schema.dtype.itemsize == 0:
            msg = "record schema has no fields"
            raise CodecError(msg)
        self.schema = schema
        self.itemsize = schema.dtype.itemsize

    def encode_many(self, rows: np.ndarray, per_message: int = 1) -> list[bytes]:
        if per_message < 1:
            msg = f"per_message must be >= 1, got {per_message}"
            raise CodecError(msg)
        rows = np.ascontiguousarray(rows, dtype=self.schema.dtype)
        blob = rows.tobytes()
        n = self.itemsize * per_message
        return [blob[i : i + n] for i in range(0, len(blob), n)]

    def _lengths(self, payloads: Sequence[bytes]) -> np.ndarray:
        return np.fromiter(map(len, payloads), np.int64, len(payloads))

    def sample_counts(self, payloads: Sequence[bytes]) -> np.ndarray:
        return np.maximum(self._lengths(payloads) // self.itemsize, 1)

    def decode(self, payloads: Sequence[bytes]) -> tuple[np.ndarray, list[Rejected]]:
        lengths = self._lengths(payloads)
        counts, rests = np.divmod(lengths, self.itemsize)
        whole = (counts > 0) & (rests == 0)
        rejected = [
            Rejected(int(i), f"wrong size: {lengths[i]} bytes, a record is {self.itemsize} "
                             "bytes (a payload holds one or more whole records)")
            for i in np.flatnonzero(~whole)]
        good = payloads if not rejected else [payloads[int(i)] for i in np.flatnonzero(whole)]
        rows = np.frombuffer(b"".join(good), dtype=self.schema.dtype)
        owner = np.repeat(np.flatnonzero(whole), counts[whole])
        return _split_invalid(self.schema, rows, owner, rejected), rejected


class JsonCodec:
    """One JSON object per payload, with a key per schema field (arrays as nested lists)."""

    def __init__(self, schema: Fields) -> None:
        self.schema = schema
        self.names = schema.dtype.names or ()

    def encode_many(self, rows: np.ndarray, per_message: int = 1) -> list[bytes]:
        if per_message != 1:
            msg = "the json codec carries one record per message (use codec = 'record' to pack)"
            raise CodecError(msg)
        return [
            json.dumps({n: row[n].tolist() for n in self.names}).encode() for row in rows
        ]

    def _parse(self, payload: bytes) -> tuple:
        obj = json.loads(payload)
        if not isinstance(obj, dict):
            msg = f"expected a JSON object, got {type(obj).__name__}"
            raise ValueError(msg)
        missing = [n for n in self.names if n not in obj]
        if missing:
            msg = f"missing field(s) {missing}"
            raise ValueError(msg)
        values = []
        for n in self.names:
            field = self.schema.dtype[n]
            value = np.asarray(obj[n])
            if value.shape != field.shape:
                msg = f"field {n!r} has shape {value.shape}, expected {field.shape}"
                raise ValueError(msg)
            if value.dtype.kind not in "iufb":
                msg = f"field {n!r} is not numeric"
                raise ValueError(msg)
            if field.base.kind in "iu" and value.dtype.kind == "f":
                msg = f"field {n!r} must be an integer"
                raise ValueError(msg)
            values.append(value)
        return tuple(values)

    def sample_counts(self, payloads: Sequence[bytes]) -> np.ndarray:
        return np.ones(len(payloads), np.int64)

    def decode(self, payloads: Sequence[bytes]) -> tuple[np.ndarray, list[Rejected]]:
        rejected: list[Rejected] = []
        parsed: list[tuple] = []
        indices: list[int] = []
        for i, payload in enumerate(payloads):
            try:
                parsed.append(self._parse(payload))
                indices.append(i)
            except (ValueError, UnicodeDecodeError) as err:  # JSONDecodeError is a ValueError
                rejected.append(Rejected(i, f"bad JSON record: {err}"))
        rows = np.array(parsed, dtype=self.schema.dtype)
        owner = np.asarray(indices, dtype=np.int64)
        return _split_invalid(self.schema, rows, owner, rejected), rejected


def make_codec(name: str, schema: Fields) -> Codec:
    codecs: dict[str, type] = {"record": RecordCodec, "json": JsonCodec}
    if name not in codecs:
        msg = f"unknown codec {name!r}: use one of {sorted(codecs)}"
        raise CodecError(msg)
    return codecs[name](schema)


#: the kinds the codecs reject for (`streams/codecs.py`); anything else counts as "other"
REASON_KINDS = ("wrong size", "non-finite value (NaN or inf) in a float field",
                "bad JSON record", "other")


def reason_kind(reason: str) -> str:
    """The part of a rejection reason before its details: what dead letters are counted by.

    >>> reason_kind("wrong size: 7 bytes, expected 8")
    'wrong size'
    """
    return reason.split(":", 1)[0]


class DeadLetters(Protocol):
    """Where the trainer sends what its codec rejected (`DeadLetterSink`, or
    `streams.testing.CountingSink` in unit tests)."""

    counts: Counter[str]

    @property
    def total(self) -> int: ...

    def send(self, record: Record, rejected: Rejected) -> None: ...

    def close(self) -> None: ...
