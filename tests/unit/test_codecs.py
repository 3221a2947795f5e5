import json

import numpy as np
import pytest

from streams.codecs import JsonCodec, RecordCodec, make_codec
from streams.errors import CodecError
from streams.schema import Schema

SCHEMA = Schema.from_fields([("id", "<i8"), ("x", "<f4", (3,)), ("y", "<i4")],
                            features="x", label="y", key="id")


def rows(n: int) -> np.ndarray:
    out = np.zeros(n, dtype=SCHEMA.dtype)
    out["id"] = np.arange(n)
    out["x"] = np.arange(3 * n, dtype="f4").reshape(n, 3) / 7
    out["y"] = np.arange(n) % 3
    return out


@pytest.mark.parametrize("codec_cls", [RecordCodec, JsonCodec])
def test_round_trip_is_exact(codec_cls):
    codec = codec_cls(SCHEMA)
    original = rows(50)
    decoded, rejected = codec.decode(codec.encode_many(original))
    assert rejected == []
    assert decoded.dtype == SCHEMA.dtype
    np.testing.assert_array_equal(decoded, original)


def test_record_codec_rejects_wrong_sizes_with_reason_and_keeps_the_rest():
    codec = RecordCodec(SCHEMA)
    good = codec.encode_many(rows(3))
    payloads = [good[0], good[1][:-1], b"", good[2] + b"x", good[2]]
    decoded, rejected = codec.decode(payloads)
    assert decoded["id"].tolist() == [0, 2]
    assert [r.index for r in rejected] == [1, 2, 3]
    assert rejected[0].reason.startswith("wrong size: 23 bytes, a record is 24 bytes")
    assert rejected[2].reason.startswith("wrong size: 25 bytes, a record is 24 bytes")


def test_packed_payloads_round_trip_and_count_their_samples():
    codec = RecordCodec(SCHEMA)
    original = rows(10)
    packed = codec.encode_many(original, per_message=4)
    assert codec.sample_counts(packed).tolist() == [4, 4, 2]
    decoded, rejected = codec.decode(packed)
    assert rejected == []
    np.testing.assert_array_equal(decoded, original)


def test_a_packed_payload_with_one_bad_row_is_rejected_whole():
    codec = RecordCodec(SCHEMA)
    data = rows(9)
    data["x"][4, 1] = np.nan  # second payload of three
    decoded, rejected = codec.decode(codec.encode_many(data, per_message=3) + [b"\0" * 30])
    assert decoded["id"].tolist() == [0, 1, 2, 6, 7, 8]
    assert [r.index for r in rejected] == [3, 1]  # size checks first, then values
    assert "non-finite" in rejected[1].reason and "wrong size: 30 bytes" in rejected[0].reason


def test_json_codec_does_not_pack():
    with pytest.raises(CodecError, match="one record per message"):
        JsonCodec(SCHEMA).encode_many(rows(4), per_message=2)


def test_non_finite_floats_are_rejected():
    codec = RecordCodec(SCHEMA)
    bad = rows(3)
    bad["x"][1, 2] = np.nan
    bad["x"][2, 0] = np.inf
    decoded, rejected = codec.decode(codec.encode_many(bad))
    assert decoded["id"].tolist() == [0]
    assert [r.index for r in rejected] == [1, 2]
    assert all("non-finite" in r.reason for r in rejected)


@pytest.mark.parametrize(
    ("payload", "fragment"),
    [
        (b"{not json", "bad JSON record"),
        (b"[1, 2]", "expected a JSON object"),
        (json.dumps({"id": 1, "x": [1, 2, 3]}).encode(), "missing field(s) ['y']"),
        (json.dumps({"id": 1, "x": [1, 2], "y": 0}).encode(), "shape (2,), expected (3,)"),
        (json.dumps({"id": 1, "x": ["a", "b", "c"], "y": 0}).encode(), "not numeric"),
        (json.dumps({"id": 1.5, "x": [1, 2, 3], "y": 0}).encode(), "must be an integer"),
        (b"\xff\xfe", "bad JSON record"),
    ],
)
def test_json_codec_rejects_malformed_records(payload, fragment):
    codec = JsonCodec(SCHEMA)
    good = codec.encode_many(rows(1))[0]
    decoded, rejected = codec.decode([payload, good])
    assert len(decoded) == 1
    assert len(rejected) == 1 and rejected[0].index == 0
    assert fragment in rejected[0].reason


def test_empty_window_decodes_to_empty_array_of_schema_dtype():
    for codec in (RecordCodec(SCHEMA), JsonCodec(SCHEMA)):
        decoded, rejected = codec.decode([])
        assert decoded.shape == (0,) and decoded.dtype == SCHEMA.dtype and rejected == []
        assert decoded["x"].shape == (0, 3)


def test_schema_errors_name_the_problem():
    with pytest.raises(CodecError, match="features field 'z' is not one of"):
        Schema.from_fields([("x", "<f4")], features="z", label="x")
    with pytest.raises(CodecError, match="key field 'x' must be an integer"):
        Schema.from_fields([("x", "<f4")], features="x", label="x", key="x")
    with pytest.raises(CodecError, match="unknown codec 'avro'"):
        make_codec("avro", SCHEMA)


def test_implausible_event_and_label_times_are_rejected_with_a_reason():
    """A label record of the right size with its fields swapped, or times in seconds, is not
    trained: each goes to the dead-letter topic with the reason."""
    import time

    from streams.schema import LabelSchema

    labels = LabelSchema.from_fields([("id", "<i8"), ("t", "<i8"), ("y", "<f4")], key="id",
                                     time="t", label="y")
    swapped = LabelSchema.from_fields([("id", "<i8"), ("y", "<f8"), ("t", "<i4")], key="id",
                                      time="t", label="y")
    now_ms = int(time.time() * 1000)
    good = np.array([(1, now_ms, 1.0), (2, now_ms - 5000, 0.0)], labels.dtype)
    in_seconds = np.array([(3, now_ms // 1000, 1.0)], labels.dtype)
    wrong = np.zeros(1, swapped.dtype)
    wrong["id"], wrong["y"], wrong["t"] = 4, 1.0, 0
    codec = RecordCodec(labels)
    payloads = [*codec.encode_many(good), *codec.encode_many(in_seconds),
                wrong.tobytes()[:labels.dtype.itemsize]]
    rows, rejected = codec.decode(payloads)
    assert rows["id"].tolist() == [1, 2]
    assert [r.index for r in rejected] == [2, 3]
    assert all(r.reason.startswith("implausible time: t = ") for r in rejected), rejected
