"""`mlxserve serve` on a real model whose forward raises for a marked prompt.

    python tests/robustness/fault_server.py serve MODEL [serve options]

The model is the real one (loaded by mlxserve's loader); only its forward is wrapped: a
prefill chunk that holds the token ids of ``FAIL_MARKER`` raises, so exactly the request
whose prompt carries the marker fails inside the engine's forward. Decode steps (one token
per row) never match, so generated text cannot trigger it.
"""

from __future__ import annotations

import asyncio
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__)))))  # the repository root, so this worktree's mlxserve is the one imported

import mlxserve  # noqa: E402,F401  (binds MLX to OpenBLAS first)

FAIL_MARKER = "\x7f\x7f\x7f<fail-this-forward>\x7f\x7f\x7f"


def _holds(ids: list[int], marker: list[int]) -> bool:
    n = len(marker)
    return any(ids[i:i + n] == marker for i in range(len(ids) - n + 1))


def failing_loader(config):
    from mlxserve.models import load_model

    loaded = load_model(config)
    marker = list(loaded.tokenizer.encode(FAIL_MARKER, add_special_tokens=False))
    base = type(loaded.model)

    class ForwardFailsOnMarker(base):
        def __call__(self, inputs, *args, **kwargs):
            if inputs.ndim == 2 and inputs.shape[1] >= len(marker) and any(
                    _holds(row, marker) for row in inputs.tolist()):
                raise RuntimeError("deliberate forward failure (fault test)")
            return super().__call__(inputs, *args, **kwargs)

    loaded.model.__class__ = ForwardFailsOnMarker
    return loaded


def main() -> int:
    from mlxserve.cli.args import CliError, serve_configs
    from mlxserve.cli.main import build_parser
    from mlxserve.cli.serve import serve

    args = build_parser().parse_args(sys.argv[1:])
    try:
        asyncio.run(serve(serve_configs(args), loader=failing_loader))
    except CliError as e:
        print(f"fault_server: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    from mlxserve.cli.main import exit_process

    exit_process(main())
