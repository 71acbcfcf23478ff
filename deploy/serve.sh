#!/usr/bin/env bash
# The README's first command: install what forge needs, then run `forge serve` with embedded defaults.
# Extra arguments go to `forge serve` (e.g. --config forge.yaml --grpc-port 50052).
source "$(dirname "${BASH_SOURCE[0]}")/bootstrap.sh"
sync_workspace --no-dev
exec "$FORGE_ROOT/.venv/bin/forge" serve "$@"
