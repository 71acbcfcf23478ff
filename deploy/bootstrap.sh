# Sourced by deploy/serve.sh and tests/run.sh: makes sure `uv` exists and the workspace is installed.
# Works on a fresh Debian machine with Python 3.11 and nothing else installed by hand.
set -euo pipefail
FORGE_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PATH="$FORGE_ROOT/.tools/bin:$HOME/.local/bin:$PATH"
# litellm would otherwise fetch its price map from the network at import.
export LITELLM_LOCAL_MODEL_COST_MAP=True

ensure_uv() {
  command -v uv >/dev/null 2>&1 && return 0
  echo "forge: installing uv (one time)…" >&2
  mkdir -p "$FORGE_ROOT/.tools"
  # pip into a private venv: works where the system Python is "externally managed" (PEP 668).
  if python3 -m venv "$FORGE_ROOT/.tools/uv-venv" >/dev/null 2>&1; then
    "$FORGE_ROOT/.tools/uv-venv/bin/pip" install --quiet uv
    mkdir -p "$FORGE_ROOT/.tools/bin"
    ln -sf "$FORGE_ROOT/.tools/uv-venv/bin/uv" "$FORGE_ROOT/.tools/bin/uv"
  else
    python3 -m pip install --quiet --user uv || python3 -m pip install --quiet --user --break-system-packages uv
  fi
}

# Always with the `local` extra (llama.cpp and a small model: forge's zero-config default). llama-cpp-python is an
# sdist, compiled at install (~5 min on 2 cores). uv keeps the built wheel but, online, reuses it only while the
# sdist's cached HTTP response is fresh; the registry mirror here sends no cache headers, so every fresh .venv
# would compile again. Offline, uv installs from its cache alone (0.5 s) and fails fast when something is
# missing: then fetch what is new without touching llama.cpp, and compile it only if the cache still lacks it.
sync_workspace() {
  ensure_uv
  (
    cd "$FORGE_ROOT"
    local sync=(uv sync --all-packages --frozen --extra local --quiet)
    "${sync[@]}" --offline "$@" 2>/dev/null && exit 0
    echo "forge: installing dependencies (the first time compiles llama.cpp: about 5 minutes)…" >&2
    "${sync[@]}" --no-install-package llama-cpp-python "$@"
    "${sync[@]}" --offline "$@" 2>/dev/null || CMAKE_ARGS="-DGGML_NATIVE=OFF" "${sync[@]}" "$@"
  )
}
