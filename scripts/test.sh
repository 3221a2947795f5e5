#!/usr/bin/env bash
# All tests on a fresh machine: set-up, lint, type check, the docs site built strictly, then
# unit, integration (real pulsar-lite broker, horovodrun -np 2) and browser (headless
# Chromium) tests.
# Extra arguments go to pytest (e.g. -m "not browser", -k codec).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
bash "$repo/scripts/setup.sh"
cd "$repo"
venv=${HVD_ONLINE_VENV:-$repo/.venv}
"$venv/bin/ruff" check streams hvd_online console examples tests benchmarks
"$venv/bin/mypy"
# the docs site: a broken link, a missing page or a figure without its results file fails
NO_MKDOCS_2_WARNING=1 "$venv/bin/mkdocs" build --strict --quiet --site-dir "$(mktemp -d)"
exec "$venv/bin/python" -m pytest "$@"
