"""`hvd-online check CONFIG`: everything a training run can be refused for, before it starts.

Loading the config already checked every key (type, allowed values, range) and the rules over
several keys. This adds what training needs (a model, a topic, files that exist), then loads
the template and checks its schemas for the configured mode. No broker, no rank, no network:
`train` and `run` call it first, so a typo costs a second, not a failed launch.

>>> from hvd_online.config import load_config_text
>>> print(as_toml(load_config_text('[window]\\nbatch_size = 64\\n')).split("\\n\\n")[2])
[window]
batch_size = 64
max_wait_ms = 50.0
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from hvd_online.config import Config, config_as_dict, missing_for_training
from hvd_online.errors import ConfigError


def check_training_config(config: Config) -> Any:
    """Raises ConfigError or TemplateError naming what to fix; returns the loaded template.
    TensorFlow is imported only once the config itself holds."""
    problems = missing_for_training(config)
    if problems:
        raise ConfigError("\n".join(problems) if len(problems) == 1 else
                          f"{len(problems)} problems:\n  " + "\n  ".join(problems))
    from hvd_online.drift.response import check_boostable
    from hvd_online.inputs.joined import check_schemas
    from hvd_online.model.loading import load_object
    from hvd_online.model.template import load_template

    template = load_template(config.model.template, config.model.params)
    if config.join.events_topic:
        check_schemas(template)
    if config.drift.action != "mark":
        check_boostable(template.make_optimizer(config.train.learning_rate))
    for hook in config.train.step_hooks:
        load_object(hook["use"])
    if config.train.sync_every > 1:
        from hvd_online.model.dynamic_embedding import dynamic_tables

        if dynamic_tables(template.build_model()):
            msg = (f"train.sync_every = {config.train.sync_every} with a DynamicEmbedding in "
                   "the model: its ID -> row map needs every step's IDs on every rank; set "
                   "train.sync_every = 1")
            raise ConfigError(msg)
    return template


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a TOML basic string
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + "}"
    return "[" + ", ".join(_toml_value(v) for v in value) + "]"


def as_toml(config: Config) -> str:
    """The resolved config, every key, as a TOML file that loads back to the same config
    (the console token hidden)."""
    sections = []
    for name, values in config_as_dict(config).items():
        lines = [f"[{name}]", *(f"{k} = {_toml_value(v)}" for k, v in values.items())]
        sections.append("\n".join(lines))
    return "\n\n".join(sections) + "\n"


def check_command(config: Config) -> int:
    check_training_config(config)
    print(as_toml(config), end="")
    fields = len([f for s in dataclasses.fields(config)
                  for f in dataclasses.fields(getattr(config, s.name))])
    print(f"# config OK: {fields} keys checked, template and schemas loaded", flush=True)
    return 0
