#!/usr/bin/env bash
# The main job on a fresh machine: set everything up, then train the MLP demo with 2 Horovod
# ranks from the embedded pulsar-lite broker. Extra arguments go to `hvd-online run`.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
HVD_ONLINE_BROWSER=${HVD_ONLINE_BROWSER:-0} bash "$repo/scripts/setup.sh"
cd "$repo"
exec "${HVD_ONLINE_VENV:-$repo/.venv}/bin/hvd-online" run examples/mlp/config.toml -np 2 "$@"
