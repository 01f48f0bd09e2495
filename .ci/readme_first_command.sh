#!/usr/bin/env bash
# The README's first command, run the way a newcomer runs it: a fresh clone of the commit
# this checkout is at (committed files only) in a temporary folder, `scripts/serve.sh` there
# (its own .venv; pip's cache makes the install fast), then the README's curl example,
# which must answer "Paris". Bounded in time; the server and the folder (the converted
# model's cache included: CI's disk is shared) go away even on failure.
# Usage: .ci/readme_first_command.sh [timeout-seconds, default 1800]
set -euo pipefail
cd "$(dirname "$0")/.."
limit=${1:-1800}
repo=$(pwd)
commit=$(git rev-parse HEAD)
work=$(mktemp -d "${TMPDIR:-/tmp}/mlxserve-newcomer.XXXXXX")
server=""

cleanup() {
  if [ -n "$server" ] && kill -0 "$server" 2>/dev/null; then
    kill -TERM -- "-$server" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$server" 2>/dev/null || break; sleep 0.2; done
    kill -KILL -- "-$server" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "newcomer check: FAILED: $*" >&2; tail -n 40 "$work/serve.log" >&2 || true; exit 1; }

echo "newcomer check: fresh clone of $commit" >&2
git clone --quiet --no-hardlinks "$repo" "$work/mlxserve"
git -C "$work/mlxserve" checkout --quiet --detach "$commit"
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')

# The README's "Try it" block, pointed at our port.
example=$(sed -n '/^Try it/,/^```$/p' "$work/mlxserve/README.md" | sed '1,/^```bash$/d; /^```$/d')
[ -n "$example" ] || fail "no curl example after 'Try it' in the README"
example=${example//127.0.0.1:8000/127.0.0.1:$port}

deadline=$((SECONDS + limit))
(cd "$work/mlxserve" && unset MLXSERVE_VENV VIRTUAL_ENV && export MLXSERVE_CACHE="$work/cache" &&
  exec setsid scripts/serve.sh --port "$port") >"$work/serve.log" 2>&1 &
server=$!
echo "newcomer check: scripts/serve.sh --port $port (log in $work/serve.log)" >&2
# /health is liveness (200 while the model still loads); /ready is 200 once requests are taken.
until curl -sf "http://127.0.0.1:$port/ready" >/dev/null 2>&1; do
  kill -0 "$server" 2>/dev/null || fail "scripts/serve.sh exited before /ready answered"
  [ "$SECONDS" -lt "$deadline" ] || fail "no ready server within ${limit}s"
  sleep 2
done
answer=$(timeout 300 bash -c "$example") || fail "the README's curl example failed"
echo "newcomer check: the README's curl example answered: $answer" >&2
grep -q "Paris" <<<"$answer" || fail "the answer does not say Paris"
echo "newcomer check: passed in ${SECONDS}s" >&2
