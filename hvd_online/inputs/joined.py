"""Raw event streams (`[join]`): predict every event as it arrives, learn when its label comes.

On this rank's partitions (the same partition numbers of both topics):

    events -> decode -> predict with a copy of the weights -> publish the predictions
        (as they arrive, on a thread of its own: predict_ahead.py)
    each step: the predicted events that came -> per-partition join with the labels that
        came (streams/join.py) -> joined pairs and expired events become training samples

A pending event keeps the model's output made at its arrival, so when its label comes the
step also scores that old prediction: the delayed-label prequential loss and metric (River's
`progressive_val_score(..., delay=...)`), next to the usual on-train figures.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np

from hvd_online.config import JoinConfig
from hvd_online.errors import ConfigError
from hvd_online.inputs.batch import Batch, Decoded, decode_or_dead_letter
from hvd_online.inputs.predict_ahead import PredictAhead, Predicted
from hvd_online.model.prediction_copy import PredictionCopy
from hvd_online.model.template import ModelTemplate
from hvd_online.state.run_state import Stateful
from hvd_online.sync.stats_vector import mean_or_nan
from streams.codecs import Codec, DeadLetters
from streams.join import EventLabelJoin, Item, samples_to_train
from streams.pulsar.predictions import prediction_messages
from streams.schema import EventSchema, LabelSchema
from streams.source import Messages, PartitionSource

#: label delay histogram buckets for the console, upper edges in seconds (last: beyond)
DELAY_EDGES_S = (0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0)
DELAY_BUCKETS = tuple(f"le_{edge:g}s" for edge in DELAY_EDGES_S) + ("more",)
#: the join's figures in the step report, by kind (consumers read the kind, never a name):
#: this step's counts, gauges of what waits now, and running totals since the run began
STEP_COUNTS = ("joined", "expired", "predictions")
PENDING = ("events", "labels")
TOTALS = ("expired_early", "late_events", "late_labels", "orphan_labels", "duplicate_events",
          "duplicate_labels")
DELAYED = ("delayed_loss_sum", "delayed_metric_sum", "delayed_count")
#: every sum this input adds to the step's stats vector (summed over ranks each step)
COUNTERS = (*STEP_COUNTS, *DELAYED, *(f"pending.{n}" for n in PENDING),
            *(f"totals.{n}" for n in TOTALS), *(f"label_delays.{n}" for n in DELAY_BUCKETS))


class PredictionPublisher(Protocol):
    """`streams.pulsar.predictions.PredictionSink`, or `streams.testing.ListSink` in unit tests."""

    def publish(self, keys: Sequence[int], payloads: Sequence[bytes]) -> None: ...


def check_schemas(template: ModelTemplate) -> tuple[EventSchema, LabelSchema]:
    """The template's event and label schemas, checked: events must carry the training
    schema's key and features, labels its key and label."""
    schema, events, labels = template.schema, template.event_schema, template.label_schema
    if events is None or labels is None or schema.key is None:
        msg = (f"{type(template).__name__} needs event_schema, label_schema and a schema key "
               "for [join] (see README: raw event streams)")
        raise ConfigError(msg)
    pairs = [(events, events.key, schema.key), (events, events.features, schema.features),
             (labels, labels.key, schema.key), (labels, labels.label, schema.label)]
    for side, name, target in pairs:
        if side.dtype[name] != schema.dtype[target]:
            msg = (f"{name!r} is {side.dtype[name]} in the {type(side).__name__} but "
                   f"{target!r} is {schema.dtype[target]} in the training schema")
            raise ConfigError(msg)
    return events, labels


def newest_published(*taken: list[Messages]) -> dict[int, int]:
    """Per partition, the publish time of the newest message taken (what tells each join a
    replayed backlog from live data); 0 is an unknown time.

    >>> newest_published([Messages(0, [b""], [5]), Messages(1, [b""], [0])],
    ...                  [Messages(0, [b"", b""], [9, 7])])
    {0: 9}
    """
    newest: dict[int, int] = {}
    for batches in taken:
        for messages in batches:
            latest = max(messages.publish_ms, default=0)
            if latest:
                newest[messages.partition] = max(newest.get(messages.partition, 0), latest)
    return newest


class JoinedInput:
    def __init__(self, config: JoinConfig, template: ModelTemplate,
                 events: Sequence[PartitionSource], labels: Sequence[PartitionSource],
                 codecs: tuple[Codec, Codec], dead_letters: tuple[DeadLetters, DeadLetters],
                 predictions: PredictionPublisher, batch_size: int, max_wait_s: float) -> None:
        self.event_schema, self.label_schema = check_schemas(template)
        self.template = template
        self.config = config
        self.event_codec, self.label_codec = codecs
        self.ahead = PredictAhead(events, self.event_codec, self.event_schema,
                                  self._publish, batch_size)
        self.max_wait_s = max_wait_s
        self.events, self.labels = self.ahead.sources, list(labels)
        self.sources = [*self.events, *self.labels]
        self.dead_letters = list(dead_letters)
        self.predictions = predictions
        self.counters = COUNTERS
        self.joins = {s.partition: EventLabelJoin(
            int(config.window_s * 1000), int(config.lateness_s * 1000),
            int(config.idle_s * 1000), config.max_pending) for s in self.events}
        self.operators: dict[str, Stateful] = {f"join:{s.key}": self.joins[s.partition]
                                               for s in self.events}
        expiry = np.zeros(1, self.label_schema.dtype)
        expiry[self.label_schema.label] = config.expiry_label
        self._expiry_label = expiry.tobytes()
        self._label_batch = 4 * batch_size

    def start(self, make_copy: Callable[[], PredictionCopy]) -> None:
        self.ahead.start(make_copy())

    def drain(self) -> bool:
        self.ahead.stop()  # its pass under way ends and is handed over; no more reads
        return True

    def stop(self) -> None:
        self.ahead.stop()

    def _labels(self) -> tuple[Decoded, np.ndarray, np.ndarray, list[Messages]]:
        """The labels that came, decoded; each row's partition and time (ms); every batch
        read."""
        batches = [b for b in (s.next_batch(self._label_batch) for s in self.labels) if b]
        decoded = decode_or_dead_letter(self.label_codec, batches, self.dead_letters[1])
        return (decoded, decoded.row_partitions(), decoded.row_times(self.label_schema.time),
                batches)

    def _events(self, step: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray,
                                          list[Messages]]:
        """The events predicted since the last step: rows, partitions, times, outputs, and
        every batch read (dead letters sent now, when a step takes them)."""
        self.ahead.refresh(step)
        taken: list[Predicted] = self.ahead.take(self.max_wait_s)
        for item in taken:
            for record, rejected in item.rejected:
                self.dead_letters[0].send(record, rejected)
        if not taken:
            empty = np.zeros(0, self.event_schema.dtype)
            return (empty, np.zeros(0, np.int64), np.zeros(0, np.int64),
                    np.zeros((0, 1), np.float32), [])
        rows = np.concatenate([t.rows for t in taken])
        partitions = np.concatenate([np.full(t.samples, t.partition) for t in taken])
        times = np.concatenate([t.times for t in taken])
        outputs = np.concatenate([t.outputs for t in taken])
        return rows, partitions, times, outputs, [t.messages for t in taken]

    def _publish(self, keys: np.ndarray, outputs: np.ndarray, step: int,
                 times: np.ndarray) -> None:
        """On the predictions stage's thread."""
        self.predictions.publish(keys.tolist(), prediction_messages(
            keys.tolist(), self.template.prediction(outputs), step, times.tolist(),
            int(time.time() * 1000)))

    def take(self, step: int) -> Batch:
        decoded_labels, label_parts, label_times, label_batches = self._labels()
        labels = decoded_labels.rows
        events, event_parts, event_times, outputs, event_batches = self._events(step)
        keys = events[self.event_schema.key]
        # a pending event keeps its row and the output made at its arrival (delayed metric)
        event_values = [e.tobytes() + o.tobytes() for e, o in zip(events, outputs, strict=True)]
        label_values = [lab.tobytes() for lab in labels]
        label_keys = labels[self.label_schema.key]
        samples: list[tuple[int, bytes, bytes]] = []
        delays: list[int] = []
        expired = 0
        newest = newest_published(event_batches, label_batches)
        offline = {s.partition for s in self.sources if not s.connected()}
        if self.ahead.busy_s() >= self.config.idle_s / 2:
            offline = set(self.joins)  # the events are held up, not quiet (`busy_s`)
        for partition, join in self.joins.items():
            out = join.push(
                events=self._items(keys, event_times, event_values, event_parts == partition),
                labels=self._items(label_keys, label_times, label_values,
                                   label_parts == partition),
                published_ms=newest.get(partition), connected=partition not in offline)
            samples += samples_to_train(out, self.config.on_expiry, self._expiry_label)
            delays += [j.delay_ms for j in out.joined]
            expired += len(out.expired)
        rows, sums = self._training_rows(samples)
        sums.update(self._gauges(len(events), delays))
        sums.update(joined=float(len(delays)), expired=float(expired))
        # freshness here: a label's publish time -> the update of the step that took it in
        published = decoded_labels.publish_ms.astype(np.float64)
        return Batch(rows, published, np.ones(len(published), np.int64), sums)

    @staticmethod
    def _items(keys: np.ndarray, times: np.ndarray, values: list[bytes],
               mask: np.ndarray) -> list[Item]:
        return [(int(keys[i]), int(times[i]), values[i]) for i in np.flatnonzero(mask)]

    def _training_rows(self, samples: list[tuple[int, bytes, bytes]]
                       ) -> tuple[np.ndarray, dict[str, float]]:
        """Samples of the training schema from (key, event + its output, label) triples,
        and the delayed-label loss and metric of the outputs made at the events' arrival."""
        schema, events, labels = self.template.schema, self.event_schema, self.label_schema
        rows = np.zeros(len(samples), schema.dtype)
        sums = {"delayed_count": float(len(samples)), "delayed_loss_sum": 0.0,
                "delayed_metric_sum": 0.0}
        if not samples:
            return rows, sums
        size = events.dtype.itemsize
        event_rows = np.frombuffer(b"".join(e[:size] for _, e, _ in samples), events.dtype)
        outputs = np.frombuffer(b"".join(e[size:] for _, e, _ in samples), np.float32)
        label_rows = np.frombuffer(b"".join(lab for _, _, lab in samples), labels.dtype)
        assert schema.key is not None
        rows[schema.key] = event_rows[events.key]
        rows[schema.features] = event_rows[events.features]
        rows[schema.label] = label_rows[labels.label]
        outputs = outputs.reshape(len(samples), -1)
        y = rows[schema.label]
        sums["delayed_loss_sum"] = float(np.sum(self.template.per_sample_loss(y, outputs)))
        sums["delayed_metric_sum"] = float(np.sum(self.template.per_sample_metric(y, outputs)))
        return rows, sums

    def _gauges(self, predicted: int, delays: list[int]) -> dict[str, float]:
        sums = {"predictions": float(predicted)}
        joins = self.joins.values()
        sums["pending.events"] = float(sum(j.pending_events for j in joins))
        sums["pending.labels"] = float(sum(j.pending_labels for j in joins))
        for name in TOTALS:
            sums[f"totals.{name}"] = float(sum(j.counts[name] for j in joins))
        buckets = np.searchsorted(np.array(DELAY_EDGES_S) * 1000, delays, side="left")
        counts = np.bincount(buckets, minlength=len(DELAY_BUCKETS)) if delays else np.zeros(
            len(DELAY_BUCKETS))
        for name, count in zip(DELAY_BUCKETS, counts, strict=True):
            sums[f"label_delays.{name}"] = float(count)
        return sums

    def report_fields(self, sums: dict[str, float]) -> dict[str, Any]:
        def group(kind: str, names: tuple[str, ...]) -> dict[str, float]:
            return {name: sums[f"{kind}.{name}"] for name in names}

        return {"delayed_loss": mean_or_nan(sums["delayed_loss_sum"], sums["delayed_count"]),
                "delayed_metric": mean_or_nan(sums["delayed_metric_sum"],
                                              sums["delayed_count"]),
                "join": {"step": {name: sums[name] for name in STEP_COUNTS},
                         "pending": group("pending", PENDING),
                         "totals": group("totals", TOTALS),
                         "label_delays": group("label_delays", DELAY_BUCKETS)}}
