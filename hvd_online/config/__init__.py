"""Run configuration: frozen dataclasses (sections.py) loaded from one TOML file, overridable
from the CLI, and checked whole at load (load.py, rules.py) before anything starts."""

from hvd_online.config.load import config_as_dict, did_you_mean, load_config, load_config_text
from hvd_online.config.rules import missing_for_training
from hvd_online.config.sections import (
    CheckpointConfig,
    Config,
    ConsoleConfig,
    DriftConfig,
    JoinConfig,
    ModelConfig,
    ProduceConfig,
    RunConfig,
    ServingConfig,
    StreamConfig,
    TrainConfig,
    WindowConfig,
)

__all__ = ["CheckpointConfig", "Config", "ConsoleConfig", "DriftConfig", "JoinConfig",
           "ModelConfig", "ProduceConfig", "RunConfig", "ServingConfig", "StreamConfig",
           "TrainConfig", "WindowConfig", "config_as_dict", "did_you_mean", "load_config",
           "load_config_text", "missing_for_training"]
