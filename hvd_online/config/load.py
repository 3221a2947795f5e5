"""Reading a config: TOML text plus CLI overrides -> a checked `Config`, or one `ConfigError`
listing every problem, each naming its key and the fix. Nothing is started before this.

>>> cfg = load_config_text('[stream]\\ntopic = "t"\\npartitions = 4\\n'
...                        '[model]\\ntemplate = "m.py:M"\\n', overrides=["window.batch_size=64"])
>>> cfg.window.batch_size, cfg.stream.partitions, cfg.console.host
(64, 4, '127.0.0.1')
>>> load_config_text('[window]\\nbatch_siz = 3\\n')
Traceback (most recent call last):
...
hvd_online.errors.ConfigError: unknown key 'window.batch_siz': did you mean 'window.batch_size'? (keys in [window]: batch_size, max_wait_ms)
>>> load_config_text('[drift]\\naction = "challanger"\\n')
Traceback (most recent call last):
...
hvd_online.errors.ConfigError: 'drift.action' is 'challanger': did you mean 'challenger'? (one of 'mark', 'boost', 'challenger')
"""

from __future__ import annotations

import dataclasses
import difflib
import operator
import tomllib
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hvd_online.config.rules import broken_rules
from hvd_online.config.sections import Config
from hvd_online.errors import ConfigError

_RANGE = {"ge": (operator.ge, ">="), "gt": (operator.gt, ">"), "le": (operator.le, "<="),
          "lt": (operator.lt, "<")}


def did_you_mean(word: str, choices: Sequence[str], prefix: str = "") -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"did you mean '{prefix}{close[0]}'? " if close else ""


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


def _checked_value(key: str, hint: Any, value: Any) -> tuple[Any, str | None]:
    """(the value as the field holds it, or a problem naming `key` and the fix)."""
    origin = typing.get_origin(hint)
    got = f"got {type(value).__name__} {value!r}"
    if origin is typing.Literal:
        choices = typing.get_args(hint)
        if value not in choices:
            listed = ", ".join(map(repr, choices))
            hint_text = did_you_mean(value, choices) if isinstance(value, str) else ""
            return value, f"'{key}' is {value!r}: {hint_text}(one of {listed})"
        return value, None
    if hint is bool:
        ok = isinstance(value, bool)
    elif hint is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif hint is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif hint is str:
        ok = isinstance(value, str)
    elif origin is dict:
        ok = isinstance(value, dict)
    else:  # a sequence of tables (train.step_hooks)
        ok = isinstance(value, list) and all(isinstance(v, dict) for v in value)
        if ok:
            return tuple(value), None
        return value, f"'{key}' must be an array of tables, {got}"
    name = "table" if origin is dict else getattr(hint, "__name__", str(hint))
    return value, None if ok else f"'{key}' must be {name}, {got}"


def _out_of_range(key: str, field: dataclasses.Field, value: Any) -> str | None:
    for bound, limit in field.metadata.get("range", {}).items():
        holds, sign = _RANGE[bound]
        if not holds(value, limit):
            return f"'{key}' is {value!r}: it must be {sign} {limit:g}"
    return None


def _build_section(cls: type, section: str, values: Any, problems: list[str]) -> Any:
    if not isinstance(values, dict):
        problems.append(f"[{section}] must be a table, got {values!r}")
        return cls()
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    built = {}
    for key, value in values.items():
        if key not in fields:
            problems.append(f"unknown key '{section}.{key}': "
                            f"{did_you_mean(key, list(fields), prefix=f'{section}.')}"
                            f"(keys in [{section}]: {', '.join(fields)})")
            continue
        value, problem = _checked_value(f"{section}.{key}", hints[key], value)
        problem = problem or _out_of_range(f"{section}.{key}", fields[key], value)
        if problem:
            problems.append(problem)
        else:
            built[key] = value
    return cls(**built)


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
    problems: list[str] = []
    built = {}
    for name, values in data.items():
        if name not in sections:
            problems.append(f"unknown section [{name}]: {did_you_mean(name, list(sections))}"
                            f"(sections: {', '.join(sections)})")
            continue
        built[name] = _build_section(sections[name], name, values, problems)
    config = Config(**built)
    if base_dir:
        config = _resolve_paths(config, base_dir)
    problems += broken_rules(config) if not problems else []
    if problems:
        raise ConfigError("\n".join(problems) if len(problems) == 1 else
                          f"{len(problems)} problems:\n  " + "\n  ".join(problems))
    return config


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
