"""The config's shape: one frozen dataclass per TOML section. Each key's type, allowed values
(`Literal`) and range (`bounded`) are declared here, next to its meaning; hvd_online/config/
load.py checks them all when the file is read.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

#: a topic's codec: fixed-size binary records of the template's dtype, or JSON objects
Codec = Literal["record", "json"]
#: the largest TCP port
PORT_MAX = 65535


def bounded(default: float, *, ge: float | None = None, gt: float | None = None,
            le: float | None = None, lt: float | None = None) -> Any:
    """A field whose value must lie in a range (checked at load)."""
    limits = {k: v for k, v in (("ge", ge), ("gt", gt), ("le", le), ("lt", lt)) if v is not None}
    return field(default=default, metadata={"range": limits})


@dataclass(frozen=True)
class ModelConfig:
    #: "path/to/file.py:ClassName" or "package.module:ClassName"
    template: str = ""
    #: constructor arguments of the template class (its hyperparameters)
    params: dict[str, Any] = field(default_factory=dict)
    #: optional .keras file to start from instead of fresh weights
    pretrained: str = ""


@dataclass(frozen=True)
class StreamConfig:
    #: "pulsar://host:6650"; empty starts the embedded pulsar-lite broker
    url: str = ""
    topic: str = ""
    #: partition count; 0 asks the broker (real Pulsar only: pulsar-lite cannot tell)
    partitions: int = bounded(0, ge=0)
    subscription: str = "hvd-online"
    #: "record" (fixed-size binary, the template's dtype) or "json"
    codec: Codec = "record"
    #: passed as-is to pulsar.Client(...), e.g. {operation_timeout_seconds = 30}
    client_options: dict[str, Any] = field(default_factory=dict)
    #: passed as-is to client.create_reader(...) for each partition, e.g.
    #: {receiver_queue_size = 2000}
    consumer_options: dict[str, Any] = field(default_factory=dict)
    #: port of the embedded broker; 0 picks a free one
    embedded_port: int = bounded(0, ge=0, le=PORT_MAX)


@dataclass(frozen=True)
class WindowConfig:
    #: count window: samples per rank per step at most
    batch_size: int = bounded(256, ge=1)
    #: time window: a step starts after this long even with fewer samples (or none)
    max_wait_ms: float = bounded(50.0, ge=0)


@dataclass(frozen=True)
class TrainConfig:
    learning_rate: float = bounded(0.001, gt=0)
    #: stop after this many samples trained across all ranks (0 = no limit)
    max_samples: int = bounded(0, ge=0)
    #: stop after this many steps (0 = no limit)
    max_steps: int = bounded(0, ge=0)
    #: 1: ranks allreduce gradients every step (one model). k > 1: local SGD - each rank
    #: updates its own copy every step, and every k steps the ranks average weights and
    #: optimizer state; reports, save/stop and checkpoints then happen every k steps
    sync_every: int = bounded(1, ge=1)
    #: stop when no rank received anything for this long (0 = wait forever)
    idle_timeout_s: float = bounded(0.0, ge=0)
    #: print a progress line every this many steps that trained something
    log_every: int = bounded(50, ge=1)
    #: TensorFlow intra-op threads per rank; 0 = cores / ranks on this host
    threads: int = bounded(0, ge=0)
    #: when several ranks share a host, keep each to its own share of the cores
    pin_cores: bool = True
    seed: int = 0
    #: code run inside every applied step, before its checkpoint, e.g. an audit of trained
    #: keys: [{use = "file.py:Factory", ...params}]; Factory(rank=, schema=, **params)
    step_hooks: Sequence[Mapping[str, Any]] = ()


@dataclass(frozen=True)
class RunConfig:
    #: where checkpoints, logs and the embedded broker's data live
    dir: str = "runs/default"
    #: `hvd-online run` on one machine: keep the next launch's ranks started (TensorFlow
    #: imported, model built, step traced) and waiting, so a failed launch is replaced without
    #: a cold start (ranks' memory twice; not across --hosts yet). Off by default: on a
    #: machine as busy as the soak's, the standby is still loading when it is needed
    standby: bool = False


@dataclass(frozen=True)
class ConsoleConfig:
    enabled: bool = True
    #: 127.0.0.1 by default: set 0.0.0.0 to open it to the network
    host: str = "127.0.0.1"
    port: int = bounded(8080, ge=0, le=PORT_MAX)
    #: TF-Serving's gRPC API (PredictionService, ModelService, health) on the same host;
    #: 0 picks a free port (written to RUN_DIR/console-grpc.txt)
    grpc_port: int = bounded(8500, ge=0, le=PORT_MAX)
    #: token for save/stop; empty generates one at start and prints it
    token: str = ""
    #: name in the predict route: POST /v1/models/NAME:predict
    model_name: str = "model"
    #: keep a second console process loaded and waiting, which takes over within a second
    #: if the console dies (~400 MB more on rank 0's host); false: a new one is started,
    #: which takes as long as a first start (TensorFlow's import, the model's build)
    standby: bool = True


@dataclass(frozen=True)
class ServingConfig:
    """TF-Serving versions: RUN_DIR/serving/<console.model_name>/<step>/ (a SavedModel);
    the model-updates topic; the serving replicas of `hvd-online run`."""

    #: write a version every this many seconds (and at every checkpoint); 0 = never
    export_every_s: float = bounded(60.0, ge=0)
    #: how many versions to keep on disk
    keep: int = bounded(5, ge=1)
    #: publish every new model version to the model-updates topic, which serving replicas
    #: (`hvd-online serve`) follow: TOPIC-model-updates (TOPIC: join.events_topic, else
    #: stream.topic)
    updates: bool = True
    #: a new version at most every this many seconds (and at every checkpoint and the end)
    updates_every_s: float = bounded(0.2, gt=0)
    #: a full version every this many versions, deltas (changed rows) between; a replica
    #: starting late begins at the newest full one
    snapshot_every: int = bounded(20, ge=1)
    #: serving replicas `hvd-online run` starts and keeps running beside the job (0: none)
    replicas: int = bounded(1, ge=0)
    #: where a replica listens: 127.0.0.1 by default (set 0.0.0.0 to open it)
    host: str = "127.0.0.1"
    #: a replica's TF-Serving REST port (replica i listens on rest_port + i); 0 picks one
    rest_port: int = bounded(8501, ge=0, le=PORT_MAX)
    #: a replica's TF-Serving gRPC port (replica i: grpc_port + i); 0 picks one
    grpc_port: int = bounded(8502, ge=0, le=PORT_MAX)


@dataclass(frozen=True)
class CheckpointConfig:
    #: save every this many steps (0 = off)
    every_steps: int = bounded(0, ge=0)
    #: save every this many seconds (0 = off)
    every_seconds: float = bounded(0.0, ge=0)
    #: how many checkpoints to keep
    keep: int = bounded(3, ge=1)


@dataclass(frozen=True)
class DriftConfig:
    """Concept drift on the prequential loss: a detector, and what to do when it fires
    (hvd_online/drift/response.py; README "Quality" has the measured choice)."""

    #: "" (off), "page_hinkley" or "adwin"
    detector: Literal["", "page_hinkley", "adwin"] = ""
    #: Page-Hinkley: the unit of `delta` and `threshold`: "spread" (the loss' own step-to-step
    #: noise, estimated as it goes: the same figures fit any loss scale and task) or
    #: "absolute" (units of the loss, hvd-online 0.1's only meaning)
    scale: Literal["spread", "absolute"] = "spread"
    #: Page-Hinkley: change in mean loss tolerated per step (in `scale` units)
    delta: float = bounded(0.5, ge=0)
    #: Page-Hinkley: cumulative evidence that flags a drift (in `scale` units)
    threshold: float = bounded(20.0, gt=0)
    #: Page-Hinkley, "spread" scale: a loss is compared with the median of this many losses
    #: before it ("absolute" uses the mean since the last flag)
    memory: int = bounded(50, ge=2)
    #: Page-Hinkley: the fraction of `threshold` that raises a warning first
    warning: float = bounded(0.5, gt=0, le=1)
    #: ADWIN: confidence of a drift, and the looser one of a warning
    adwin_delta: float = bounded(0.002, gt=0, lt=1)
    adwin_warning_delta: float = bounded(0.02, gt=0, lt=1)
    #: steps before the first flag (and after each one)
    min_steps: int = bounded(30, ge=1)
    #: "mark" (log and chart only), "boost" or "challenger"
    action: Literal["mark", "boost", "challenger"] = "mark"
    #: boost: the learning rate is multiplied by `boost` at a drift, then decays back linearly
    #: over `boost_steps`; the optimizer's moments restart from zero
    boost: float = bounded(10.0, gt=0)
    boost_steps: int = bounded(100, ge=1)
    #: challenger: a copy of the model, boosted as above, starts at a warning and replaces
    #: the model once its prequential loss over the last `challenger_window` samples is lower
    #: (or sooner, from a quarter window on, on a clear win step after step); it is dropped if
    #: it has not won after `challenger_patience` samples
    challenger_window: int = bounded(2000, ge=1)
    challenger_patience: int = bounded(30000, ge=1)
    #: challenger: at most one new challenger per this many samples (false alarms cost little);
    #: a drift flag still restarts one that a warning started long before it
    challenger_every: int = bounded(10000, ge=1)


@dataclass(frozen=True)
class JoinConfig:
    """Raw event streams: events on one topic need a prediction now; their labels come later
    on another (see streams/join.py). Off while `events_topic` is empty."""

    #: events (key, features, optional event time): predicted on arrival, then joined
    events_topic: str = ""
    #: labels (key, label, optional label time), keyed and partitioned like the events
    labels_topic: str = ""
    #: "record" or "json", per topic
    events_codec: Codec = "record"
    labels_codec: Codec = "record"
    #: how long an event waits for its label (event time)
    window_s: float = bounded(10.0, gt=0)
    #: how far out of order an input may be; the watermark trails the slower input by this
    lateness_s: float = bounded(1.0, ge=0)
    #: an input quiet for this long no longer holds the watermark back
    idle_s: float = bounded(5.0, gt=0)
    #: "label": an expired event trains with `expiry_label`; "drop": it is not trained
    on_expiry: Literal["label", "drop"] = "label"
    expiry_label: float = 0.0
    #: events waiting at most, per partition; beyond it the oldest expire early (counted)
    max_pending: int = bounded(100_000, ge=1)


@dataclass(frozen=True)
class ProduceConfig:
    """What `hvd-online produce` / `hvd-online run` publish (examples use this)."""

    #: "path/to/file.py:function" yielding structured numpy arrays of the template's dtype
    generator: str = ""
    #: keyword arguments of the generator
    params: dict[str, Any] = field(default_factory=dict)
    count: int = bounded(0, ge=0)
    #: records per second; 0 = as fast as possible
    rate: float = bounded(0.0, ge=0)
    #: records packed into one message (record codec): the broker's per-message cost is
    #: shared by that many samples; 1 = one record per message
    samples_per_message: int = bounded(1, ge=1)


@dataclass(frozen=True)
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    stream: StreamConfig = field(default_factory=StreamConfig)
    window: WindowConfig = field(default_factory=WindowConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    run: RunConfig = field(default_factory=RunConfig)
    console: ConsoleConfig = field(default_factory=ConsoleConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    serving: ServingConfig = field(default_factory=ServingConfig)
    drift: DriftConfig = field(default_factory=DriftConfig)
    join: JoinConfig = field(default_factory=JoinConfig)
    produce: ProduceConfig = field(default_factory=ProduceConfig)

