"""The command-line arguments that name a config: the file and its `--set` overrides (every
command that reads a config takes them, also the examples' evaluation scripts)."""

from __future__ import annotations

import argparse


def add_config_arguments(parser: argparse.ArgumentParser, help_set: str = "override any "
                         "config value, e.g. --set train.max_steps=500") -> None:
    parser.add_argument("config", help="TOML config file (see README: Configuration)")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="SECTION.KEY=VALUE", help=help_set)
