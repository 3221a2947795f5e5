"""The record schema a model template declares: one fixed numpy dtype per sample.

>>> s = Schema.from_fields([("id", "<i8"), ("x", "<f4", (3,)), ("y", "<f4")],
...                        features="x", label="y", key="id")
>>> s.dtype.itemsize
24
>>> s.feature_shape, s.label_shape
((3,), ())
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from streams.errors import CodecError


@dataclass(frozen=True)
class Schema:
    """A structured dtype plus which of its fields are the model input, label and key.

    `key` (optional) names an integer field that routes a record to a partition and
    identifies it in ledgers; fields that are neither features nor label are carried along.
    """

    dtype: np.dtype
    features: str
    label: str
    key: str | None = None

    def __post_init__(self) -> None:
        names = self.dtype.names or ()
        for role, name in (("features", self.features), ("label", self.label), ("key", self.key)):
            if name is not None and name not in names:
                msg = f"schema {role} field {name!r} is not one of the record fields {names}"
                raise CodecError(msg)
        if self.key is not None and self.dtype[self.key].kind not in "iu":
            msg = f"schema key field {self.key!r} must be an integer, got {self.dtype[self.key]}"
            raise CodecError(msg)

    @classmethod
    def from_fields(cls, fields: Sequence[tuple[Any, ...]], **roles: Any) -> Schema:
        """Build from numpy field tuples; the dtype is packed little-endian, no padding."""
        return cls(np.dtype(list(fields)), **roles)

    @property
    def feature_shape(self) -> tuple[int, ...]:
        return self.dtype[self.features].shape

    @property
    def label_shape(self) -> tuple[int, ...]:
        return self.dtype[self.label].shape

    def float_fields(self) -> list[str]:
        """Fields whose values must be finite (NaN/inf in them is bad input)."""
        names = self.dtype.names or ()
        return [n for n in names if self.dtype[n].base.kind == "f"]
