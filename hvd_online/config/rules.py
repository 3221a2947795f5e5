"""Rules over several keys, checked at load after each key's own type, values and range.
Each rule returns a problem that names the keys and the fix, or None.

`broken_rules` holds for every config (also a partial one a test or `produce` reads);
`missing_for_training` adds what a training run needs: a model, a topic, files that exist.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from hvd_online.config.sections import Config

Rule = Callable[[Config], str | None]


def _sync_every_with_drift(config: Config) -> str | None:
    if config.train.sync_every > 1 and config.drift.detector:
        return (f"train.sync_every = {config.train.sync_every} with drift.detector = "
                f"{config.drift.detector!r}: drift responses act on one shared model each "
                "step; set train.sync_every = 1, or drift.detector = \"\"")
    return None


def _join_topics(config: Config) -> str | None:
    join = config.join
    if join.events_topic and not join.labels_topic:
        return "join.events_topic is set but join.labels_topic is empty: name the labels topic"
    if join.labels_topic and not join.events_topic:
        return "join.labels_topic is set but join.events_topic is empty: name the events topic"
    if join.events_topic and join.events_topic == join.labels_topic:
        return (f"join.events_topic and join.labels_topic are both {join.events_topic!r}: "
                "events and labels need topics of their own")
    return None


def _expiry_label_with_drop(config: Config) -> str | None:
    join = config.join
    if join.on_expiry == "drop" and join.expiry_label != 0.0:
        return (f"join.expiry_label = {join.expiry_label:g} is never used with join.on_expiry "
                "= \"drop\": remove it, or set join.on_expiry = \"label\"")
    return None


def _challenger_can_win(config: Config) -> str | None:
    drift = config.drift
    if drift.action == "challenger" and drift.challenger_patience < drift.challenger_window:
        return (f"drift.challenger_patience ({drift.challenger_patience}) is shorter than "
                f"drift.challenger_window ({drift.challenger_window}): a challenger would be "
                "dropped before it could win; raise the patience")
    return None


def _action_needs_detector(config: Config) -> str | None:
    if config.drift.action != "mark" and not config.drift.detector:
        return (f"drift.action = {config.drift.action!r} needs a drift.detector "
                "('page_hinkley' or 'adwin')")
    return None


def _adwin_warning_looser(config: Config) -> str | None:
    drift = config.drift
    if drift.detector == "adwin" and drift.adwin_warning_delta <= drift.adwin_delta:
        return (f"drift.adwin_warning_delta ({drift.adwin_warning_delta:g}) must be larger "
                f"than drift.adwin_delta ({drift.adwin_delta:g}): the warning is the looser test")
    return None


def _spread_threshold(config: Config) -> str | None:
    """An 0.1 config's absolute threshold (1.0) read in spread units would flag noise."""
    drift = config.drift
    if drift.detector == "page_hinkley" and drift.scale == "spread" and drift.threshold < 3:
        return (f"drift.threshold = {drift.threshold:g} is in units of the loss' spread "
                "(drift.scale = 'spread', the default since 0.2): below 3 it flags noise. "
                "Leave it out for the default (20), or set drift.scale = 'absolute' to keep "
                "a threshold in loss units")
    return None


def _pulsar_url(config: Config) -> str | None:
    url = config.stream.url
    if url and not url.startswith(("pulsar://", "pulsar+ssl://")):
        return (f"stream.url {url!r} is not a Pulsar URL: use pulsar://HOST:6650 "
                "(or leave it empty for the embedded broker)")
    return None


def _model_name(config: Config) -> str | None:
    name = config.console.model_name
    if not name or not all(c.isalnum() or c in "-_." for c in name):
        return (f"console.model_name {name!r} must be letters, digits, '-', '_' or '.' "
                "(it is a path segment of the predict route)")
    return None


def _step_hooks(config: Config) -> str | None:
    for hook in config.train.step_hooks:
        if not isinstance(hook.get("use"), str) or ":" not in hook["use"]:
            return f"train.step_hooks entry {dict(hook)!r} needs use = 'file.py:Factory'"
    return None


RULES: tuple[Rule, ...] = (_sync_every_with_drift, _join_topics, _expiry_label_with_drop,
                           _challenger_can_win, _action_needs_detector, _adwin_warning_looser,
                           _spread_threshold, _pulsar_url, _model_name, _step_hooks)


def broken_rules(config: Config) -> list[str]:
    return [problem for rule in RULES if (problem := rule(config))]


def _file_of(spec: str) -> Path | None:
    """The file of a "path/to/file.py:Name" spec (None for "package.module:Name")."""
    path, sep, _ = spec.rpartition(":")
    return Path(path) if sep and path.endswith(".py") else None


def missing_for_training(config: Config) -> list[str]:
    problems = []
    if not config.model.template:
        problems.append("model.template is empty: set it to 'file.py:ClassName'")
    if not config.stream.topic and not config.join.events_topic:
        problems.append("stream.topic is empty: name the topic to train on (or set "
                        "join.events_topic and join.labels_topic for raw event streams)")
    specs = [("model.template", config.model.template), ("produce.generator",
                                                         config.produce.generator)]
    specs += [("train.step_hooks", str(h["use"])) for h in config.train.step_hooks]
    for key, spec in specs:
        path = _file_of(spec)
        if path is not None and not path.is_file():
            problems.append(f"{key}: file {path} does not exist")
    if config.model.pretrained and not Path(config.model.pretrained).is_file():
        problems.append(f"model.pretrained: file {config.model.pretrained} does not exist")
    if not config.run.dir:
        problems.append("run.dir is empty: name the run directory")
    return problems
