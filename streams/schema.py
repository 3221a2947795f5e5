"""The record schema a model template declares: one fixed numpy dtype per sample.

>>> s = Schema.from_fields([("id", "<i8"), ("x", "<f4", (3,)), ("y", "<f4")],
...                        features="x", label="y", key="id")
>>> s.dtype.itemsize
24
>>> s.feature_shape, s.label_shape
((3,), ())

Raw event streams carry events and labels on two topics (see `streams/join.py`):

>>> events = EventSchema.from_fields([("id", "<i8"), ("t", "<i8"), ("x", "<f4", (3,))],
...                                  key="id", time="t", features="x")
>>> labels = LabelSchema.from_fields([("id", "<i8"), ("y", "<f4")], key="id", label="y")
>>> events.dtype.itemsize, labels.time is None
(28, True)

A join matches events to labels by key, so both need one:

>>> EventSchema.from_fields([("t", "<i8"), ("x", "<f4", (3,))], key=None, features="x")
Traceback (most recent call last):
streams.errors.CodecError: EventSchema needs a key field, got None (fields: t, x)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Self

import numpy as np

from streams.errors import CodecError


@dataclass(frozen=True)
class Fields:
    """A record layout: one structured numpy dtype (what a codec needs), and the roles some
    of its fields play, checked at construction."""

    dtype: np.dtype

    def _check_roles(self, roles: dict[str, str | None], integer: Sequence[str] = (),
                     required: Sequence[str] = ()) -> None:
        names = self.dtype.names or ()
        for role in required:
            if not roles[role]:
                msg = (f"{type(self).__name__} needs a {role} field, got {roles[role]!r} "
                       f"(fields: {', '.join(names)})")
                raise CodecError(msg)
        for role, name in roles.items():
            if name is not None and name not in names:
                msg = f"schema {role} field {name!r} is not one of the record fields {names}"
                raise CodecError(msg)
        for role in integer:
            name = roles[role]
            if name is not None and self.dtype[name].kind not in "iu":
                msg = f"schema {role} field {name!r} must be an integer, got {self.dtype[name]}"
                raise CodecError(msg)

    @classmethod
    def from_fields(cls, fields: Sequence[tuple[Any, ...]], **roles: Any) -> Self:
        """Build from numpy field tuples; the dtype is packed little-endian, no padding."""
        return cls(np.dtype(list(fields)), **roles)

    def time_fields(self) -> list[str]:
        """Fields holding times in ms since the epoch (checked for plausibility)."""
        time = getattr(self, "time", None)
        return [time] if time else []

    def float_fields(self) -> list[str]:
        """Fields whose values must be finite (NaN/inf in them is bad input)."""
        names = self.dtype.names or ()
        return [n for n in names if self.dtype[n].base.kind == "f"]


@dataclass(frozen=True)
class Schema(Fields):
    """A training sample: which fields are the model input, label and key.

    `key` (optional) names an integer field that routes a record to a partition and
    identifies it in ledgers; fields that are neither features nor label are carried along.
    """

    features: str
    label: str
    key: str | None = None

    def __post_init__(self) -> None:
        self._check_roles({"features": self.features, "label": self.label, "key": self.key},
                          integer=["key"], required=["features", "label"])

    @property
    def feature_shape(self) -> tuple[int, ...]:
        return self.dtype[self.features].shape

    @property
    def label_shape(self) -> tuple[int, ...]:
        return self.dtype[self.label].shape


@dataclass(frozen=True)
class EventSchema(Fields):
    """An event on the events topic: its key, features and (optional) event time in ms (the
    message's publish time when absent)."""

    key: str
    features: str
    time: str | None = None

    def __post_init__(self) -> None:
        self._check_roles({"key": self.key, "features": self.features, "time": self.time},
                          integer=["key", "time"], required=["key", "features"])


@dataclass(frozen=True)
class LabelSchema(Fields):
    """A label on the labels topic: the key of its event, the label and (optional) label time
    in ms (the message's publish time when absent)."""

    key: str
    label: str
    time: str | None = None

    def __post_init__(self) -> None:
        self._check_roles({"key": self.key, "label": self.label, "time": self.time},
                          integer=["key", "time"], required=["key", "label"])
