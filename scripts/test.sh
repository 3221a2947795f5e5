#!/usr/bin/env bash
# All tests on a fresh machine: set-up, lint, type check, then unit, integration (real
# pulsar-lite broker, horovodrun -np 2) and browser (headless Chromium) tests.
# Extra arguments go to pytest (e.g. -m "not browser", -k codec).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
bash "$repo/scripts/setup.sh"
cd "$repo"
venv=${HVD_ONLINE_VENV:-$repo/.venv}
"$venv/bin/ruff" check streams hvd_online console examples tests benchmarks
"$venv/bin/mypy"
exec "$venv/bin/python" -m pytest "$@"
