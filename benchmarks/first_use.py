"""What a prefill shape costs the first time it runs, against the second time.

    python benchmarks/first_use.py --random-shape qwen3-0.6b --rows 1 4 5 22 23 --widths 384 448

The served step trace on the H200 showed group prefills of a few thousand tokens taking
140-500 ms where the forward alone runs ~40k tok/s, in the first bursts of a server: each
group has a new (rows, padded width) shape. This times one prefill forward per (rows, width)
pair twice, the first use and the next, in three variants: MLX's attention as the engine
calls it (``mask="causal"``), with an explicit boolean mask (MLX's unfused path), and the
attention op alone. ``first_ms - again_ms`` is the first-use cost a live request would wait
on; run it on a fresh process (the costs are per process).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import mlxserve  # noqa: E402,F401  (binds MLX to OpenBLAS on Linux CPU before mlx.core)
import mlx.core as mx  # noqa: E402

from benchmarks.engine import RANDOM_SHAPES, build_random_model  # noqa: E402


def _twice(fn) -> tuple[float, float]:
    times = []
    for _ in range(2):
        t = time.perf_counter()
        mx.eval(fn())
        times.append(1000 * (time.perf_counter() - t))
    return round(times[0], 1), round(times[1], 1)


def forward(model, rows: int, width: int, explicit_mask: bool):
    from mlx_lm.models.cache import make_prompt_cache

    tokens = mx.random.randint(0, 1000, (rows, width)).astype(mx.uint32)

    def run():
        cache = make_prompt_cache(model)
        if explicit_mask:  # the same causal pattern as an array: MLX's unfused attention
            for layer in cache:
                layer.make_mask = lambda n, *a, **k: mx.tril(mx.ones((n, n), dtype=mx.bool_))
        return [model.model(tokens, cache=cache)] + [c.state[0] for c in cache]

    return run


def attention(shape: dict, rows: int, width: int, dtype):
    q = mx.random.normal((rows, shape["num_attention_heads"], width, shape["head_dim"]))
    k = mx.random.normal((rows, shape["num_key_value_heads"], width, shape["head_dim"]))
    q, k = q.astype(dtype), k.astype(dtype)
    return lambda: mx.fast.scaled_dot_product_attention(q, k, k, scale=0.1, mask="causal")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--random-shape", default="qwen3-0.6b", choices=sorted(RANDOM_SHAPES))
    ap.add_argument("--dtype", default="bfloat16")
    ap.add_argument("--rows", type=int, nargs="+", default=[1, 4, 5, 22, 23])
    ap.add_argument("--widths", type=int, nargs="+", default=[384, 448])
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    shape, dtype = RANDOM_SHAPES[args.random_shape], getattr(mx, args.dtype)
    model, _ = build_random_model(args.random_shape, args.dtype)
    mx.eval(forward(model, 2, 64, False)())  # the process's own first use, apart
    rows_out = []
    for width in args.widths:
        for rows in args.rows:
            entry = dict(rows=rows, width=width)
            for name, fn in (("causal", forward(model, rows, width, False)),
                             ("array_mask", forward(model, rows, width, True)),
                             ("attention_op", attention(shape, rows, width, dtype))):
                entry[f"{name}_first_ms"], entry[f"{name}_again_ms"] = _twice(fn)
            rows_out.append(entry)
            print(json.dumps(entry))
    if args.out:
        Path(args.out).write_text(json.dumps(dict(device=str(mx.default_device()),
                                                  shape=args.random_shape, dtype=args.dtype,
                                                  runs=rows_out), indent=1) + "\n")


if __name__ == "__main__":
    main()
