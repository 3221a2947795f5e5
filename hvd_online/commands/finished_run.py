"""For evaluation scripts: the config, template and newest checkpoint of a finished run.

    config, template, checkpoint = open_run("evaluate the digits CNN")
"""

from __future__ import annotations

import argparse

from hvd_online.config import Config, load_config
from hvd_online.config.arguments import add_config_arguments
from hvd_online.model.template import ModelTemplate, load_template
from hvd_online.state.checkpoint import Checkpoint, load_latest_checkpoint
from hvd_online.state.run_dir import RunLayout


def open_run(description: str, argv: list[str] | None = None,
             need_checkpoint: bool = True) -> tuple[Config, ModelTemplate, Checkpoint | None]:
    parser = argparse.ArgumentParser(description=description)
    add_config_arguments(parser, help_set="the same overrides as the run")
    args = parser.parse_args(argv)
    config = load_config(args.config, args.overrides)
    template = load_template(config.model.template, config.model.params)
    checkpoint = load_latest_checkpoint(RunLayout.of(config).checkpoints)
    if need_checkpoint and checkpoint is None:
        raise SystemExit(f"no checkpoint in {config.run.dir}: run the example first")
    return config, template, checkpoint
