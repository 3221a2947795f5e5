"""Model versions on the model-updates topic: full versions and deltas rebuild exactly the
trainer's weights, in order only; an evicted table row leaves serving at the next version;
a serving replica's app says what it serves."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from console.replica import ServingStatus, create_replica_app
from hvd_online.model.dynamic_embedding import DynamicEmbedding
from streams.model_updates import Header, Replica, UpdateError, decode, encode


def publish(versions: list[list[np.ndarray]], snapshot_every: int) -> list[bytes]:
    """What the publisher sends for these versions: full first and every `snapshot_every`."""
    out, previous = [], None
    for n, arrays in enumerate(versions, start=1):
        full = previous is None or (n - 1) % snapshot_every == 0
        header = Header(n, -1 if full else n - 1, step=10 * n, created_ms=n)
        out.append(encode(header, arrays, None if full else previous))
        previous = arrays
    return out


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 6), st.lists(st.lists(st.tuples(st.integers(0, 19), st.floats(-3, 3)),
                                            max_size=30), min_size=1, max_size=12),
       st.integers(0, 11))
def test_a_replica_rebuilds_every_version_from_fulls_and_deltas(snapshot_every, edits, start):
    """Any sequence of row edits: applied from the first message, or from the newest full
    version at or before `start` (a replica started late), the replica holds the trainer's
    arrays exactly."""
    table, bias = np.zeros((20, 3), np.float32), np.zeros(1, np.float32)
    versions = []
    for changes in edits:
        table, bias = table.copy(), bias + 1
        for row, value in changes:
            table[row] = value
        versions.append([table, bias])
    messages = publish(versions, snapshot_every)
    start = min(start, len(messages) - 1)
    first = max(n for n in range(start + 1) if n % snapshot_every == 0)
    replica = Replica()
    for message in messages[first:]:
        assert replica.apply(*decode(message))
        assert replica.header.version == replica.version
    assert replica.version == len(versions)
    for held, sent in zip(replica.arrays, versions[-1], strict=True):
        np.testing.assert_array_equal(held, sent)


def test_deltas_carry_only_changed_rows_and_need_their_base():
    big = [np.zeros((10_000, 8), np.float32)]
    changed = [big[0].copy()]
    changed[0][[3, 77]] = 1.0
    full = encode(Header(1, -1, 1, 0), big)
    delta = encode(Header(2, 1, 2, 0), changed, previous=big)
    assert len(delta) < len(full) / 50  # two rows of 10,000
    replica = Replica()
    assert not replica.apply(*decode(delta))  # no base yet: waits for a full version
    assert replica.apply(*decode(full)) and replica.apply(*decode(delta))
    assert not replica.apply(*decode(delta))  # a redelivery changes nothing
    assert replica.arrays[0][77].tolist() == [1.0] * 8


def test_a_message_that_is_no_version_is_refused_clearly():
    with pytest.raises(UpdateError, match="not a model version"):
        decode(b"junk")
    with pytest.raises(ValueError, match="previous"):
        encode(Header(2, 1, 2, 0), [np.zeros(1)])


def test_an_evicted_row_leaves_serving_at_the_next_version():
    """The table's own state (row IDs, the sorted index) travels in the deltas: once the
    trainer evicts an ID, a replica's copy maps it to the default row too."""
    trained = DynamicEmbedding(dim=2, capacity=2, column=0, ttl_steps=1)
    served = DynamicEmbedding(dim=2, capacity=2, column=0, ttl_steps=1)
    for layer in (trained, served):
        layer(np.zeros((1, 1), np.int64))
    trained.admit(np.array([7, 8]), step=1)
    before = [w.copy() for w in trained.get_weights()]
    replica = Replica()
    replica.apply(*decode(encode(Header(1, -1, 1, 0), before)))
    served.set_weights(replica.arrays)
    assert served.rows_of(np.array([7])).numpy().tolist() == [1]
    trained.admit(np.array([9, 8]), step=3)  # 7 went quiet: its row goes to 9
    after = trained.get_weights()
    assert replica.apply(*decode(encode(Header(2, 1, 3, 0), after, previous=before)))
    served.set_weights(replica.arrays)
    assert served.rows_of(np.array([7, 9, 8])).numpy().tolist() == [0, 1, 2]
    np.testing.assert_array_equal(served(np.array([[7]])), trained(np.array([[7]])))


def test_the_replica_app_says_which_version_it_serves_and_how_old():
    status = ServingStatus(following=lambda: True)
    client = create_replica_app(None, "model", status).test_client()
    assert client.get("/api/serving").get_json()["age_s"] == -1.0
    status.applied(version=4, step=90, created_ms=1_000, now_ms=1_400)
    reply = client.get("/api/serving").get_json()
    assert (reply["version"], reply["step"], reply["update_delay_s"]) == (4, 90, 0.4)
    assert reply["following"] is True
    metrics = client.get("/metrics").get_data(as_text=True)
    assert "hvd_online_serving_version 4.0" in metrics
    assert "hvd_online_serving_updates_total 1.0" in metrics
    assert client.post("/v1/models/model:predict", json={"instances": [[1.0]]}).status_code \
        == 404  # no predictor: no model of that name is served
