"""Publishing a raw event stream in real time: events on one topic, their labels on another,
each record when its own time comes (labels come seconds after their events, or never).

The generator gives chunks of (events, labels) whose time fields are ms offsets from the
start of the stream; they are shifted to the wall clock here, so the trainer sees real event
times. Labels wait in a heap until they are due.

>>> from streams.schema import EventSchema, LabelSchema
>>> ev = EventSchema.from_fields([("id", "<i8"), ("t", "<i8"), ("x", "<f4")], key="id",
...                              features="x", time="t")
>>> lab = LabelSchema.from_fields([("id", "<i8"), ("t", "<i8"), ("y", "<f4")], key="id",
...                               label="y", time="t")
>>> events = np.array([(0, 0, 1.0), (1, 5, 2.0)], ev.dtype)
>>> labels = np.array([(1, 30, 1.0), (0, 10, 0.0)], lab.dtype)
>>> sent = []
>>> counts = publish_timeline([(events, labels)], ev, lab, lambda side, row: sent.append(
...     (side, int(row["id"]), int(row["t"]))), start_ms=1000, sleep=lambda s: None)
>>> counts, sent
((2, 2), [('events', 0, 1000), ('events', 1, 1005), ('labels', 0, 1010), ('labels', 1, 1030)])
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable, Iterable

import numpy as np

from streams.schema import EventSchema, LabelSchema

#: called with ("events" | "labels", one record of that side's dtype)
Send = Callable[[str, np.void], None]


def publish_timeline(chunks: Iterable[tuple[np.ndarray, np.ndarray]], events: EventSchema,
                     labels: LabelSchema, send: Send, start_ms: int | None = None,
                     limit: int | None = None,
                     sleep: Callable[[float], None] = time.sleep) -> tuple[int, int]:
    """Send every event (at most `limit`, with only their labels), each record when its time
    comes; returns how many events and labels were sent."""
    if events.time is None or labels.time is None:
        msg = "publishing in real time needs a time field in both event and label schemas"
        raise ValueError(msg)
    start = int(time.time() * 1000) if start_ms is None else start_ms
    due: list[tuple[int, int, bytes]] = []  # (label time, tie-break, the shifted record)
    sent = [0, 0]

    def send_labels_until(when: int) -> None:
        while due and due[0][0] <= when:
            raw = heapq.heappop(due)[2]
            send("labels", np.frombuffer(raw, labels.dtype)[0])
            sent[1] += 1

    def wait_until(when: int) -> None:
        ahead = (when - time.time() * 1000) / 1000
        if ahead > 0:
            sleep(ahead)

    for chunk_events, chunk_labels in chunks:
        if limit is not None and sent[0] + len(chunk_events) > limit:
            chunk_events = chunk_events[: limit - sent[0]]
            chunk_labels = chunk_labels[np.isin(chunk_labels[labels.key],
                                                chunk_events[events.key])]
        for row in _shifted(chunk_labels, labels.time, start):
            heapq.heappush(due, (int(row[labels.time]), len(due) + sent[1], row.tobytes()))
        for row in _shifted(chunk_events, events.time, start):
            when = int(row[events.time])
            send_labels_until(when)
            wait_until(when)
            send("events", row)
            sent[0] += 1
        if limit is not None and sent[0] >= limit:
            break
    while due:  # the last labels, each when it is due
        wait_until(due[0][0])
        send_labels_until(due[0][0])
    return sent[0], sent[1]


def _shifted(rows: np.ndarray, field: str, start: int) -> np.ndarray:
    """A copy with `field` moved from an offset to the wall clock."""
    out = rows.copy()
    out[field] += start
    return out
