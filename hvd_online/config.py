"""Run configuration: frozen dataclasses loaded from one TOML file, overridable from the CLI.

>>> cfg = load_config_text('[stream]\\ntopic = "t"\\npartitions = 4\\n'
...                        '[model]\\ntemplate = "m.py:M"\\n', overrides=["window.batch_size=64"])
>>> cfg.window.batch_size, cfg.stream.partitions, cfg.console.host
(64, 4, '127.0.0.1')
>>> load_config_text('[window]\\nbatch_siz = 3\\n')
Traceback (most recent call last):
...
hvd_online.errors.ConfigError: unknown key 'window.batch_siz'; known keys in [window]: batch_size, max_wait_ms
"""

from __future__ import annotations

import dataclasses
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hvd_online.errors import ConfigError


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
    partitions: int = 0
    subscription: str = "hvd-online"
    #: "record" (fixed-size binary, the template's dtype) or "json"
    codec: str = "record"
    #: passed as-is to pulsar.Client(...), e.g. {operation_timeout_seconds = 30}
    client_options: dict[str, Any] = field(default_factory=dict)
    #: passed as-is to client.create_reader(...) for each partition, e.g.
    #: {receiver_queue_size = 2000}
    consumer_options: dict[str, Any] = field(default_factory=dict)
    #: port of the embedded broker; 0 picks a free one
    embedded_port: int = 0


@dataclass(frozen=True)
class WindowConfig:
    #: count window: samples per rank per step at most
    batch_size: int = 256
    #: time window: a step starts after this long even with fewer samples (or none)
    max_wait_ms: float = 50.0


@dataclass(frozen=True)
class TrainConfig:
    learning_rate: float = 0.001
    #: stop after this many samples trained across all ranks (0 = no limit)
    max_samples: int = 0
    #: stop after this many steps (0 = no limit)
    max_steps: int = 0
    #: 1: ranks allreduce gradients every step (one model). k > 1: local SGD - each rank
    #: updates its own copy every step, and every k steps the ranks average weights and
    #: optimizer state; reports, save/stop and checkpoints then happen every k steps
    sync_every: int = 1
    #: stop when no rank received anything for this long (0 = wait forever)
    idle_timeout_s: float = 0.0
    #: print a progress line every this many steps that trained something
    log_every: int = 50
    #: TensorFlow intra-op threads per rank; 0 = cores / ranks on this host
    threads: int = 0
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


@dataclass(frozen=True)
class ConsoleConfig:
    enabled: bool = True
    #: 127.0.0.1 by default: set 0.0.0.0 to open it to the network
    host: str = "127.0.0.1"
    port: int = 8080
    #: token for save/stop; empty generates one at start and prints it
    token: str = ""
    #: name in the predict route: POST /v1/models/NAME:predict
    model_name: str = "model"


@dataclass(frozen=True)
class ServingConfig:
    """TF-Serving versions: RUN_DIR/serving/<console.model_name>/<step>/ (a SavedModel)."""

    #: write a version every this many seconds (and at every checkpoint); 0 = never
    export_every_s: float = 60.0
    #: how many versions to keep on disk
    keep: int = 5


@dataclass(frozen=True)
class CheckpointConfig:
    #: save every this many steps (0 = off)
    every_steps: int = 0
    #: save every this many seconds (0 = off)
    every_seconds: float = 0.0
    #: how many checkpoints to keep
    keep: int = 3


@dataclass(frozen=True)
class DriftConfig:
    """Concept drift on the prequential loss: a detector, and what to do when it fires
    (hvd_online/drift/response.py; README "Quality" has the measured choice)."""

    #: "" (off), "page_hinkley" or "adwin"
    detector: str = ""
    #: Page-Hinkley: change in mean loss tolerated
    delta: float = 0.005
    #: Page-Hinkley: cumulative evidence that flags a drift
    threshold: float = 1.0
    #: Page-Hinkley: the fraction of `threshold` that raises a warning first
    warning: float = 0.5
    #: ADWIN: confidence of a drift, and the looser one of a warning
    adwin_delta: float = 0.002
    adwin_warning_delta: float = 0.02
    #: steps before the first flag (and after each one)
    min_steps: int = 30
    #: "mark" (log and chart only), "boost" or "challenger"
    action: str = "mark"
    #: boost: the learning rate is multiplied by `boost` at a drift, then decays back linearly
    #: over `boost_steps`; the optimizer's moments restart from zero
    boost: float = 10.0
    boost_steps: int = 100
    #: challenger: a copy of the model, boosted as above, starts at a warning and replaces
    #: the model once its prequential loss over the last `challenger_window` samples is lower;
    #: it is dropped if it has not won after `challenger_patience` samples
    challenger_window: int = 2000
    challenger_patience: int = 30000


@dataclass(frozen=True)
class JoinConfig:
    """Raw event streams: events on one topic need a prediction now; their labels come later
    on another (see streams/join.py). Off while `events_topic` is empty."""

    #: events (key, features, optional event time): predicted on arrival, then joined
    events_topic: str = ""
    #: labels (key, label, optional label time), keyed and partitioned like the events
    labels_topic: str = ""
    #: "record" or "json", per topic
    events_codec: str = "record"
    labels_codec: str = "record"
    #: how long an event waits for its label (event time)
    window_s: float = 10.0
    #: how far out of order an input may be; the watermark trails the slower input by this
    lateness_s: float = 1.0
    #: an input quiet for this long no longer holds the watermark back
    idle_s: float = 5.0
    #: "label": an expired event trains with `expiry_label`; "drop": it is not trained
    on_expiry: str = "label"
    expiry_label: float = 0.0
    #: events waiting at most, per partition; beyond it the oldest expire early (counted)
    max_pending: int = 100_000


@dataclass(frozen=True)
class ProduceConfig:
    """What `hvd-online produce` / `hvd-online run` publish (examples use this)."""

    #: "path/to/file.py:function" yielding structured numpy arrays of the template's dtype
    generator: str = ""
    #: keyword arguments of the generator
    params: dict[str, Any] = field(default_factory=dict)
    count: int = 0
    #: records per second; 0 = as fast as possible
    rate: float = 0.0
    #: records packed into one message (record codec): the broker's per-message cost is
    #: shared by that many samples; 1 = one record per message
    samples_per_message: int = 1


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


def _parse_value(text: str) -> Any:
    """CLI override values are TOML values; bare words are strings."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _apply_override(data: dict[str, Any], override: str) -> None:
    key, sep, value = override.partition("=")
    if not sep or "." not in key:
        msg = f"override {override!r} must look like section.key=value (e.g. train.max_steps=100)"
        raise ConfigError(msg)
    section, name = key.strip().split(".", 1)
    data.setdefault(section, {})[name] = _parse_value(value.strip())


def _build_section(cls: type, section: str, values: Any) -> Any:
    if not isinstance(values, dict):
        msg = f"[{section}] must be a table, got {values!r}"
        raise ConfigError(msg)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key, value in values.items():
        if key not in fields:
            msg = f"unknown key '{section}.{key}'; known keys in [{section}]: {', '.join(fields)}"
            raise ConfigError(msg)
        default = fields[key].default
        if isinstance(default, tuple):  # a TOML array
            if not isinstance(value, list):
                msg = f"'{section}.{key}' must be an array, got {type(value).__name__} {value!r}"
                raise ConfigError(msg)
            values[key] = tuple(value)
        elif default is not dataclasses.MISSING and default is not None:
            expected = float if isinstance(default, float) else type(default)
            if expected is float and isinstance(value, int) and not isinstance(value, bool):
                values[key] = float(value)
            elif not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
                msg = (f"'{section}.{key}' must be {expected.__name__}, "
                       f"got {type(value).__name__} {value!r}")
                raise ConfigError(msg)
    return cls(**values)


def load_config_text(text: str, overrides: Sequence[str] = (),
                     base_dir: Path | None = None) -> Config:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        msg = f"config is not valid TOML: {err}"
        raise ConfigError(msg) from err
    for override in overrides:
        _apply_override(data, override)
    sections: dict[str, Any] = {f.name: f.default_factory for f in dataclasses.fields(Config)}
    built = {}
    for name, values in data.items():
        if name not in sections:
            msg = f"unknown section [{name}]; known sections: {', '.join(sections)}"
            raise ConfigError(msg)
        built[name] = _build_section(sections[name], name, values)
    config = Config(**built)
    return _resolve_paths(config, base_dir) if base_dir else config


def _resolve_paths(config: Config, base_dir: Path) -> Config:
    """Template and generator paths in a config file are relative to that file."""

    def resolve(spec: str) -> str:
        path, sep, attr = spec.rpartition(":")
        if sep and path.endswith(".py") and not Path(path).is_absolute():
            return f"{(base_dir / path).resolve()}:{attr}"
        return spec

    model = dataclasses.replace(config.model, template=resolve(config.model.template))
    if config.model.pretrained and not Path(config.model.pretrained).is_absolute():
        model = dataclasses.replace(model, pretrained=str(base_dir / config.model.pretrained))
    produce = dataclasses.replace(config.produce, generator=resolve(config.produce.generator))
    return dataclasses.replace(config, model=model, produce=produce)


def load_config(path: str | Path, overrides: Sequence[str] = ()) -> Config:
    path = Path(path)
    if not path.is_file():
        msg = f"config file {path} does not exist"
        raise ConfigError(msg)
    return load_config_text(path.read_text(), overrides, base_dir=path.parent.resolve())


def config_as_dict(config: Config) -> dict[str, Any]:
    """For the console's run-config panel and checkpoint metadata (token hidden)."""
    data = dataclasses.asdict(config)
    if data["console"]["token"]:
        data["console"]["token"] = "***"
    return data
