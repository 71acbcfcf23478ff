#!/usr/bin/env bash
# The README's second command, and what CI runs (.ci/run): install everything, run every check, run the suite.
# Extra arguments go to pytest (e.g. `bash tests/run.sh tests/rpc -k stream`).
source "$(dirname "${BASH_SOURCE[0]}")/../deploy/bootstrap.sh"
cd "$FORGE_ROOT"
sync_workspace

step() { printf '\n== %s\n' "$*" >&2; }

ensure_buf() {
  [ -x .tools/node_modules/.bin/buf ] && return 0
  command -v npm >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq nodejs npm >/dev/null; }
  npm install --silent --no-audit --no-fund --prefix .tools "@bufbuild/buf@1.75.0" >/dev/null
}

# Redis: what replicas share (rate limits, cache, breakers); the tests start their own redis-server from it.
if ! command -v redis-server >/dev/null 2>&1 && [ ! -x /usr/sbin/redis-server ] && [ ! -x /usr/bin/redis-server ]; then
  step "installing redis-server"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq redis-server >/dev/null
  # The Debian package starts a system-wide server; the tests do not use it.
  $SUDO systemctl disable --now redis-server >/dev/null 2>&1 || true
fi

# The optional runtimes the real-trainer and Ray-runner tests drive (forge never imports either).
source deploy/optional.sh
step "trainer and Ray runtimes"
ensure_train_env
ensure_ray
export FORGE_TEST_TRAIN_PYTHON="${FORGE_TEST_TRAIN_PYTHON:-$FORGE_ROOT/.tools/train/bin/python}"
export FORGE_TEST_RAY="${FORGE_TEST_RAY:-$FORGE_ROOT/.tools/ray/bin/ray}"

mkdir -p .tools
step "generated code is up to date"
uv run --frozen python clients/python/generate.py --check --descriptor-set .tools/forge.binpb

step "buf lint + format"
ensure_buf
# Lint the descriptor set protoc built with the wheels' Google protos: the buf registry is unreachable here,
# so buf cannot resolve google/api imports from source. The rules are buf.yaml's.
.tools/node_modules/.bin/buf lint .tools/forge.binpb --path forge --config buf.yaml
.tools/node_modules/.bin/buf format -d --exit-code protos

step "ruff"
uv run --frozen ruff check .
uv run --frozen ruff format --check .

step "mypy"
uv run --frozen mypy forge_rpc gateway tests clients/python/generate.py

step "import layers"
uv run --frozen lint-imports

step "pytest"
set +e
uv run --frozen pytest "$@"
rc=$?
set -e
# pytest exits 5 when nothing was collected: that is a broken suite, not a pass.
exit $rc
