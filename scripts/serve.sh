#!/usr/bin/env bash
# Set up (first time only) and serve the default model on http://127.0.0.1:8000.
# Extra arguments go to `mlxserve serve`, e.g. scripts/serve.sh --port 9000
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/mlxserve serve "$@"
