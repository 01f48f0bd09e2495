"""What a decode step's attention costs when rows sit at different lengths (MLX, any device).

    python benchmarks/decode_attention.py --rows 64 128 --length 350 --stagger 64

The engine's batch KV keeps rows left-aligned in one (slots, kv heads, columns, dim)
buffer per layer (cache/rows.py). Rows at one length write one slice and attend without a
mask (the fused path); rows at different lengths write one scatter (``put_along_axis``)
and attend through a (B, 1, 1, T) mask. On the H200 with the 8B shape the staggered step
was 1.5-1.8x the aligned one at 64-128 rows (host_overhead.py --stagger) while mlx-lm's
BatchGenerator (left padding: one slice write, a mask) lost ~5%. This times one decode
step of ``--layers`` attention layers (GQA, bf16), with one step in flight as the engine
runs, for each way of writing (slice / scatter) and masking (none / bool / additive), so
the slow part shows, and the engine's kernel on CUDA (cache/row_attention.py; skipped
elsewhere): "scatter+kernel" through the row mask, "slice+kernel" unmasked (rows at one
length), "scatter+kernel1" masked with one key per warp at a time (the first version's
loop). Printed: ms per step per variant and rows, and each over "slice".
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import mlxserve  # noqa: E402,F401  (binds MLX to OpenBLAS on Linux CPU before mlx.core)

import mlx.core as mx  # noqa: E402

from mlxserve.cache import row_attention  # noqa: E402

VARIANTS = ("slice", "slice+bool", "scatter", "scatter+bool", "scatter+additive",
            "slice+kernel", "scatter+kernel", "scatter+kernel1")


def _masks(lengths: mx.array, total: int, dtype) -> dict:
    visible = (mx.arange(total)[None, :] <= lengths[:, None])[:, None, None, :]
    additive = mx.where(visible, mx.array(0, dtype), mx.array(-mx.inf, dtype))
    return {"none": None, "bool": visible, "additive": additive}


def _attend(q, keys, values, mask, kernel: str) -> mx.array:
    scale = q.shape[-1] ** -0.5
    if kernel:  # the engine's kernel on CUDA (cache/row_attention.py); "kernel1": one key
        unroll = 1 if kernel == "kernel1" else None  # per warp at a time (the first version)
        return row_attention.decode_attention(q, keys, values, scale, mask, unroll)
    return mx.fast.scaled_dot_product_attention(q, keys, values, scale=scale, mask=mask)


def _step(buffers, q, new_k, new_v, at: int, columns, mask, scatter: bool,
          kernel: str) -> mx.array:
    outs = []
    for i, (keys, values) in enumerate(buffers):
        if scatter:
            keys = mx.put_along_axis(keys, columns, new_k, axis=2)
            values = mx.put_along_axis(values, columns, new_v, axis=2)
        else:
            keys[:, :, at:at + 1, :] = new_k
            values[:, :, at:at + 1, :] = new_v
        buffers[i] = (keys, values)
        total = at + 1
        outs.append(_attend(q, keys[:, :, :total, :], values[:, :, :total, :], mask, kernel))
    return mx.stack(outs).sum()


def _time(rows: int, variant: str, args) -> float:
    dtype = getattr(mx, args.dtype)
    cols = args.length + args.stagger + args.steps + 16
    shape = (rows, args.kv_heads, cols, args.head_dim)
    buffers = [(mx.zeros(shape, dtype), mx.zeros(shape, dtype)) for _ in range(args.layers)]
    q = mx.random.normal((rows, args.heads, 1, args.head_dim)).astype(dtype)
    new = mx.random.normal((rows, args.kv_heads, 1, args.head_dim)).astype(dtype)
    mx.eval(buffers, q, new)
    write, _, mask_kind = variant.partition("+")
    base = [args.length + k % max(args.stagger, 1) for k in range(rows)]
    previous, start = None, 0.0
    for step in range(args.steps):
        if step == 3:
            start = time.perf_counter()
        at = max(base) + step
        lengths = mx.array([n + step for n in base], dtype=mx.int32)
        columns = lengths[:, None, None, None]
        kernel = mask_kind if mask_kind.startswith("kernel") else ""
        # a kernel variant: masked after a scatter (rows at different lengths), unmasked
        # after a slice write (rows at one length)
        kind = ("bool" if write == "scatter" else "none") if kernel else mask_kind or "none"
        mask = _masks(lengths, at + 1, dtype)[kind]
        out = _step(buffers, q, new, new, at, columns, mask, write == "scatter", kernel)
        mx.async_eval(out)
        if previous is not None:
            previous.item()
        previous = out
    previous.item()
    return (time.perf_counter() - start) * 1000 / (args.steps - 3)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, nargs="+", default=[64, 128])
    ap.add_argument("--length", type=int, default=350)
    ap.add_argument("--stagger", type=int, default=64)
    ap.add_argument("--layers", type=int, default=36)
    ap.add_argument("--heads", type=int, default=32)
    ap.add_argument("--kv-heads", type=int, default=8)
    ap.add_argument("--head-dim", type=int, default=128)
    ap.add_argument("--dtype", default="bfloat16")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS))
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    if not row_attention.available():
        args.variants = [v for v in args.variants if "kernel" not in v]
    table: dict[str, dict[str, float]] = {}
    for rows in args.rows:
        for variant in args.variants:
            _time(rows, variant, args)  # first use of the shapes
        for variant in args.variants:
            best = min(_time(rows, variant, args) for _ in range(args.repeats))
            table.setdefault(variant, {})[str(rows)] = round(best, 3)
        ref = table["slice"][str(rows)] if "slice" in table else None
        print(f"{rows:4d} rows: " + ", ".join(
            f"{v} {table[v][str(rows)]:.2f} ms" + (f" ({table[v][str(rows)] / ref:.2f}x)"
                                                   if ref else "")
            for v in args.variants), flush=True)
    result = dict(device=f"{platform.processor() or platform.machine()}, {mx.default_device()}",
                  mlx=mx.__version__, args=vars(args), ms_per_step=table)
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
