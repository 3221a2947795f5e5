#!/usr/bin/env bash
# Creates the project's virtual environment from scratch (or tops it up): pinned Python
# dependencies, Horovod 0.28.1 built once against TensorFlow with Gloo (cached outside the
# repo, keyed by versions), Debian's Chromium for browser tests, npm assets for the console.
# Idempotent: a second run only checks what is already there.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
venv=${HVD_ONLINE_VENV:-$repo/.venv}
cache=${HVD_ONLINE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/hvd-online}
python=${PYTHON:-python3.11}
horovod_version=0.28.1
tf_version=$(sed -n 's/^tensorflow[-_]cpu==//p' "$repo/requirements.lock")
py_tag=$("$python" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')
wheel_dir=$cache/wheels/horovod-$horovod_version-tf$tf_version-$py_tag-$(uname -m)

log() { printf '[setup] %s\n' "$*" >&2; }

if [ ! -x "$venv/bin/python" ]; then
  log "creating virtual environment $venv"
  "$python" -m venv "$venv"
fi
pip=("$venv/bin/python" -m pip --disable-pip-version-check -q)

stamp=$venv/.requirements.sha
want=$(sha256sum "$repo/requirements.lock" | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  log "installing pinned dependencies (requirements.lock)"
  "${pip[@]}" install -r "$repo/requirements.lock"
  echo "$want" >"$stamp"
fi

build_horovod_wheel() {
  # The sdist does not build against TF >= 2.20: xla_mpi_ops.cc includes XLA headers TF no
  # longer ships. That file only serves GPU jit_compile graphs, so we drop it from the build
  # (see shared/notes/horovod-build.md; upstream horovod PR 4302).
  local work
  work=$(mktemp -d)
  log "building Horovod $horovod_version against TensorFlow $tf_version (takes ~5-8 min, cached in $wheel_dir)"
  "${pip[@]}" download --no-deps --no-binary=:all: "horovod==$horovod_version" -d "$work"
  tar -xzf "$work"/horovod-$horovod_version.tar.gz -C "$work"
  sed -i '/xla_mpi_ops.cc/d' "$work/horovod-$horovod_version/horovod/tensorflow/CMakeLists.txt"
  mkdir -p "$wheel_dir.tmp"
  HOROVOD_WITH_TENSORFLOW=1 HOROVOD_WITH_GLOO=1 HOROVOD_WITHOUT_MPI=1 \
    HOROVOD_WITHOUT_PYTORCH=1 HOROVOD_WITHOUT_MXNET=1 HOROVOD_CPU_OPERATIONS=GLOO \
    MAKEFLAGS=-j"$(nproc)" \
    "$venv/bin/python" -m pip --disable-pip-version-check wheel --no-build-isolation --no-deps \
    -w "$wheel_dir.tmp" "$work/horovod-$horovod_version" >"$work/build.log" 2>&1 \
    || { tail -40 "$work/build.log" >&2; log "Horovod build failed; full log: $work/build.log"; exit 1; }
  rm -rf "$wheel_dir" && mv "$wheel_dir.tmp" "$wheel_dir"  # only a finished build is cached
  rm -rf "$work"
}

if ! "$venv/bin/python" -c "import horovod, horovod.tensorflow" 2>/dev/null \
   || [ "$("$venv/bin/python" -c 'import horovod; print(horovod.__version__)')" != "$horovod_version" ]; then
  ls "$wheel_dir"/horovod-*.whl >/dev/null 2>&1 || build_horovod_wheel
  log "installing cached Horovod wheel"
  "${pip[@]}" install --no-deps "$wheel_dir"/horovod-*.whl
  # Horovod's own small runtime dependencies (the wheel was installed with --no-deps).
  "${pip[@]}" install -r "$repo/requirements.lock"
fi

if [ "$("$venv/bin/python" -m pip --disable-pip-version-check show tensorflow-serving-api 2>/dev/null \
      | sed -n 's/^Version: //p')" != "$(sed -n 's/^tensorflow-serving-api==//p' "$repo/requirements-nodeps.lock")" ]; then
  log "installing tensorflow-serving-api's protos (--no-deps: it would pull a second TensorFlow)"
  "${pip[@]}" install --no-deps -r "$repo/requirements-nodeps.lock"
fi

log "installing hvd-online (editable)"
"${pip[@]}" install --no-deps --no-build-isolation -e "$repo"

# real data, from package registries, cached outside the checkout (never committed):
# MovieLens-100K out of the recbole 1.2.1 wheel (examples/movielens/data.py); for Word2Vec,
# Wikipedia text and word-similarity sets out of the gensim 4.4.0 wheel and the King James
# Bible from Debian's bible-kjv-text (examples/word2vec/corpus.py)
log "MovieLens-100K in $(cd "$repo" && "$venv/bin/python" -m examples.movielens.data)"
if [ ! -f /usr/lib/bible.data ] || ! command -v bible >/dev/null; then
  log "installing Debian bible-kjv-text (real text for examples/word2vec)"
  if [ "$(id -u)" = 0 ]; then sudo=(); else sudo=(sudo); fi
  "${sudo[@]}" apt-get update -qq && DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq bible-kjv-text >/dev/null
fi
log "Word2Vec text in $(cd "$repo" && "$venv/bin/python" -m examples.word2vec.corpus | sed -n 1p)"

if [ "${HVD_ONLINE_BROWSER:-1}" = 1 ] && [ ! -x /usr/bin/chromium ]; then
  log "installing Debian chromium for browser tests"
  if [ "$(id -u)" = 0 ]; then sudo=(); else sudo=(sudo); fi
  "${sudo[@]}" apt-get update -qq && "${sudo[@]}" apt-get install -y -qq chromium >/dev/null
fi

if [ "$(id -u)" = 0 ] && [ ! -x /usr/sbin/sshd ]; then
  # the multi-host tests run an sshd per network-namespace host (tests/integration/netns_hosts.py)
  log "installing Debian openssh-server for the multi-host tests"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssh-server >/dev/null
fi

if [ "$(id -u)" = 0 ] && [ ! -x /usr/bin/prometheus ]; then
  # a real Prometheus server and promtool for the metrics and alert-rule tests
  log "installing Debian prometheus (server and promtool)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
    --no-install-recommends prometheus >/dev/null
fi

npm_stamp=$repo/console/node_modules/.package-lock.sha
npm_want=$(sha256sum "$repo/console/package-lock.json" | cut -d' ' -f1)
if [ "$(cat "$npm_stamp" 2>/dev/null)" != "$npm_want" ]; then
  log "installing console scripts from npm (console/package-lock.json)"
  (cd "$repo/console" && npm ci --silent --no-audit --no-fund)
  echo "$npm_want" >"$npm_stamp"
fi
log "ready: $venv"
