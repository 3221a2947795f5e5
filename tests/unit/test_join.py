"""The event/label join with in-memory inputs and a controllable clock."""

import random

import pytest

from streams.errors import StreamsError
from streams.join import REMEMBER_WINDOWS, EventLabelJoin, samples_to_train
from streams.testing import FakeClock

WINDOW = 1000


def make(clock=None, **options):
    options = {"window_ms": WINDOW, "lateness_ms": 0, "idle_ms": 60_000, **options}
    return EventLabelJoin(clock=clock or FakeClock(0), **options)


def ev(key, when):
    return (key, when, f"e{key}".encode())


def lab(key, when, value=b"1"):
    return (key, when, value)


def test_in_order_events_join_their_labels_and_expire_without_one():
    join = make()
    out = join.push(events=[ev(1, 0), ev(2, 10), ev(3, 20)])
    assert out.joined == [] and out.expired == [] and join.pending_events == 3
    out = join.push(labels=[lab(1, 300), lab(3, 900)])
    assert [(j.key, j.event, j.delay_ms) for j in out.joined] == [(1, b"e1", 300), (3, b"e3", 880)]
    assert join.pending_events == 1
    # both inputs move past 10 + WINDOW: event 2 expires, once
    out = join.push(events=[ev(4, 1500)], labels=[lab(4, 1600)])
    assert [e.key for e in out.expired] == [2] and not out.expired[0].early
    assert join.push(events=[ev(5, 3000)], labels=[lab(5, 3000)]).expired == []
    assert join.counts["joined"] == 4 and join.counts["expired"] == 1


def test_a_label_before_its_event_waits_for_it():
    join = make()
    assert join.push(labels=[lab(7, 500)]).joined == []
    assert join.pending_labels == 1
    out = join.push(events=[ev(7, 200)])
    assert [(j.key, j.delay_ms) for j in out.joined] == [(7, 300)]
    assert join.pending_labels == join.pending_events == 0


def test_duplicate_events_and_labels_are_dropped_and_counted():
    join = make()
    join.push(events=[ev(1, 0), ev(1, 0)], labels=[lab(2, 50), lab(2, 50)])
    out = join.push(events=[ev(2, 10)], labels=[lab(1, 100), lab(1, 100)])
    assert sorted(j.key for j in out.joined) == [1, 2]
    out = join.push(events=[ev(1, 0), ev(2, 10)], labels=[lab(2, 60)])  # after joining
    assert out.joined == []
    assert join.counts["duplicate_events"] == 3 and join.counts["duplicate_labels"] == 3
    assert join.counts["joined"] == 2


def test_expiry_trains_with_the_expiry_label_or_drops():
    join = make()
    join.push(events=[ev(1, 0), ev(2, 0)], labels=[lab(2, 100, b"1")])
    out = join.push(events=[ev(3, 2000)], labels=[lab(3, 2000)])
    assert [e.key for e in out.expired] == [1]
    assert samples_to_train(out, "label", b"0") == [(3, b"e3", b"1"), (1, b"e1", b"0")]
    assert samples_to_train(out, "drop") == [(3, b"e3", b"1")]
    with pytest.raises(StreamsError, match="needs an expiry_label"):
        samples_to_train(out, "label")
    with pytest.raises(StreamsError, match='"drop" or "label"'):
        samples_to_train(out, "keep")


def test_a_label_after_the_window_or_after_expiry_is_late_not_an_orphan():
    join = make()
    join.push(events=[ev(1, 0), ev(2, 0)])
    join.push(labels=[lab(1, WINDOW + 1)])  # the outcome came too late: event 1 keeps waiting
    out = join.push(events=[ev(9, 5000)], labels=[lab(9, 5000)])
    assert sorted(e.key for e in out.expired) == [1, 2]
    assert join.push(labels=[lab(2, 900)]).joined == []  # its event expired already
    assert join.counts["late_labels"] == 2 and join.counts["orphan_labels"] == 0
    assert join.counts["joined"] == 1


def test_late_events_late_labels_and_orphan_labels_are_dropped_and_counted():
    join = make()
    join.push(events=[ev(1, 10_000)], labels=[lab(1, 10_000)])  # watermark 10,000
    out = join.push(events=[ev(2, 8000)], labels=[lab(3, 9000)])
    assert out.joined == [] and out.expired == []
    assert join.counts["late_events"] == 1 and join.counts["late_labels"] == 1
    join.push(labels=[lab(4, 10_500)])  # waits: its event may still come
    assert join.pending_labels == 1
    join.push(events=[ev(5, 11_000)], labels=[lab(5, 11_000)])  # watermark passes 10,500
    assert join.pending_labels == 0 and join.counts["orphan_labels"] == 1


def test_too_late_labels_of_a_stream_with_every_event_are_never_orphans():
    """Every label has its event; many come after the window (up to REMEMBER_WINDOWS): each
    is late, none an orphan, and late + joined + duplicates account for every label."""
    rng = random.Random(5)
    join = make(lateness_ms=200)
    labels = []
    for key in range(2000):
        join.push(events=[ev(key, key * 10)])
        if rng.random() < 0.5:
            labels.append(lab(key, key * 10 + int(rng.uniform(0, 2.9 * WINDOW))))
        due = [x for x in labels if x[1] <= key * 10]
        labels = [x for x in labels if x[1] > key * 10]
        join.push(labels=due)
    join.push(labels=labels)
    counts = join.counts
    assert counts["orphan_labels"] == 0
    assert counts["late_labels"] > 500
    assert counts["joined"] + counts["late_labels"] + counts["duplicate_labels"] == \
        counts["labels"]


def test_a_label_beyond_the_memory_of_finished_keys_is_an_orphan():
    join = make()
    join.push(events=[ev(1, 0)])
    join.push(events=[ev(2, (REMEMBER_WINDOWS + 1) * WINDOW)],
              labels=[lab(2, (REMEMBER_WINDOWS + 1) * WINDOW)])  # event 1 expired, forgotten
    late = (REMEMBER_WINDOWS + 1) * WINDOW + 100
    join.push(labels=[lab(1, late)])  # waits: its event may still come
    join.push(events=[ev(3, late + 500)], labels=[lab(3, late + 500)])
    assert join.counts["orphan_labels"] == 1 and join.counts["late_labels"] == 0


def test_max_pending_expires_the_oldest_events_early():
    join = make(max_pending=3)
    out = join.push(events=[ev(k, 100 * k) for k in range(1, 6)])
    assert [(e.key, e.early) for e in out.expired] == [(1, True), (2, True)]
    assert join.pending_events == 3 and join.counts["expired_early"] == 2
    assert join.push(labels=[lab(1, 150)]).joined == []  # too late for the expired one
    assert join.counts["late_labels"] == 1


def test_a_quiet_input_stops_holding_the_watermark_back():
    clock = FakeClock(1_000_000)
    join = make(clock, idle_ms=5000)
    join.push(events=[ev(1, 1_000_000)])
    clock.advance(4000)
    assert join.push().expired == []  # labels quiet for 4 s < 5 s: still waiting
    clock.advance(2000 + WINDOW)
    assert [e.key for e in join.push().expired] == [1]  # the tail of a finished stream


def test_a_restart_slower_than_idle_ms_does_not_expire_what_the_replay_brings():
    """A rank restarts from a checkpoint 20 s after the stream was there: its start-up is not
    silence, and the replayed backlog (published long ago) is decided by the data alone."""
    clock = FakeClock(1_000_000)
    join = make(clock, idle_ms=1500, lateness_ms=500)
    join.push(events=[ev(1, 1_000_000), ev(2, 1_000_100)], published_ms=1_000_100)
    restored = make(clock, idle_ms=1500, lateness_ms=500)
    restored.restore(join.snapshot())
    clock.advance(20_000)  # the relaunch starts, builds its model, subscribes
    out = restored.push(events=[ev(3, 1_000_300)], published_ms=1_000_300)
    assert out.expired == [] and restored.counts["late_events"] == 0
    clock.advance(2000)  # the labels' reader delivers later than the events' one
    assert restored.push(events=[ev(4, 1_000_400)], published_ms=1_000_400).expired == []
    out = restored.push(labels=[lab(1, 1_000_200), lab(3, 1_000_900)], published_ms=1_000_900)
    assert [j.key for j in out.joined] == [1, 3], "the replayed clicks join their events"
    clock.advance(1500)  # drained: everyone quiet, the tail expires
    assert sorted(e.key for e in restored.push().expired) == [2, 4]


def test_a_broker_outage_is_not_silence():
    """While the sources are disconnected nothing expires by the clock; the clicks published
    during the outage join their events when it ends."""
    clock = FakeClock(1_000_000)
    join = make(clock, idle_ms=1500, lateness_ms=500)
    join.push(events=[ev(1, 1_000_000)], labels=[lab(7, 1_000_000)], published_ms=1_000_000)
    for _ in range(20):  # 10 s without the broker: empty windows
        clock.advance(500)
        assert join.push(connected=False).expired == []
    assert join.push().expired == []
    clock.advance(1000)  # the sources are back; the producer's queue not yet
    assert join.push().expired == [], "silence counts from the reconnection"
    out = join.push(labels=[lab(1, 1_000_800)], published_ms=1_000_800)
    assert [j.key for j in out.joined] == [1]


def test_while_a_backlog_replays_a_silent_input_holds_the_watermark():
    clock = FakeClock(1_000_000)
    join = make(clock, idle_ms=1000)
    join.push(events=[ev(1, 0)], published_ms=0)  # old data: a replay
    for t in range(1, 30):  # events keep coming from the backlog; labels not yet
        clock.advance(200)
        assert join.push(events=[ev(100 + t, t * 100)], published_ms=t * 100).expired == []
    assert [j.key for j in join.push(labels=[lab(1, 50)], published_ms=50).joined] == [1]


def test_decisions_do_not_depend_on_how_the_inputs_interleave():
    rng = random.Random(5)
    events = [ev(k, 10 * k) for k in range(300)]
    labels = [lab(k, 10 * k + rng.choice([5, 400, 900, 1500])) for k in range(0, 300, 2)]

    def outcome(seed: int) -> tuple[set[int], set[int]]:
        order = random.Random(seed)
        join, joined, expired = make(lateness_ms=2000), set(), set()
        e, lb = list(events), list(labels)
        while e or lb:  # random batches from each input, each input in its own order
            take_e = [e.pop(0) for _ in range(min(len(e), order.randint(0, 7)))]
            take_l = [lb.pop(0) for _ in range(min(len(lb), order.randint(0, 7)))]
            out = join.push(events=take_e, labels=take_l)
            joined |= {j.key for j in out.joined}
            expired |= {x.key for x in out.expired}
        out = join.push(events=[ev(10_000, 100_000)], labels=[lab(10_000, 100_000)])
        joined |= {j.key for j in out.joined} - {10_000}
        expired |= {x.key for x in out.expired}
        return joined, expired

    first = outcome(0)
    assert first[0] == {k for k, t, _ in labels if t - 10 * k <= WINDOW}
    assert first[0] | first[1] == set(range(300)) and not first[0] & first[1]
    for seed in range(1, 6):
        assert outcome(seed) == first


def test_snapshot_and_restore_in_the_middle_of_a_join():
    clock = FakeClock(0)
    join = make(clock)
    join.push(events=[ev(1, 0), ev(2, 100)], labels=[lab(3, 400), lab(2, 300)])
    state = join.snapshot()
    resumed = make(clock)
    resumed.restore(state)
    assert resumed.pending_events == 1 and resumed.pending_labels == 1
    for j in (join, resumed):  # the same inputs after the snapshot give the same outputs
        out = j.push(events=[ev(3, 200), ev(2, 100)], labels=[lab(1, 500)])
        assert [(x.key, x.delay_ms) for x in out.joined] == [(3, 200), (1, 500)]
        assert j.counts["duplicate_events"] == 1
    assert resumed.snapshot() == join.snapshot()


def test_bad_options_are_a_clear_error():
    with pytest.raises(StreamsError, match="window_ms > 0"):
        EventLabelJoin(window_ms=0)
