"""Where a batched prefill's time goes: the whole forward against its matmuls alone, and
MLX's matmuls against torch's on the same device (the reference, same run).

    python benchmarks/prefill_probe.py --random-shape qwen3-8b --tokens 8192 --out r.json

A served burst prefills ~8k prompt tokens a step (``--max-num-batched-tokens``); on the
H200 such a step ran at ~15-19k tok/s, a third of the GPU's bf16 peak. This splits one
such forward (``--rows`` x ``--tokens / rows``, into mlx-lm's KVCache and into the
engine's BatchCache as its group prefill does) into the layer's seven weight
matmuls at M = tokens, timed alone in MLX and, where torch sees a GPU, in torch (cuBLAS):
if MLX's matmuls are near torch's, the forward's remaining time is the rest (attention,
norms, RoPE, activations); if not, the matmuls are.
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


def _mlx_ms(fn, repeats: int) -> float:
    mx.eval(fn())
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        mx.eval(fn())
        times.append(time.perf_counter() - t)
    return 1000 * sorted(times)[len(times) // 2]


def _torch_ms(m: int, k: int, n: int, repeats: int) -> float | None:
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    a = torch.randn(m, k, device="cuda", dtype=torch.bfloat16)
    w = torch.randn(n, k, device="cuda", dtype=torch.bfloat16)
    torch.nn.functional.linear(a, w)
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        torch.nn.functional.linear(a, w)
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return 1000 * sorted(times)[len(times) // 2]


def layer_matmuls(shape: dict) -> dict[str, tuple[int, int]]:
    """(in, out) of one decoder layer's weight matmuls."""
    h, inter = shape["hidden_size"], shape["intermediate_size"]
    q = shape["num_attention_heads"] * shape["head_dim"]
    kv = shape["num_key_value_heads"] * shape["head_dim"]
    return dict(q=(h, q), k=(h, kv), v=(h, kv), o=(q, h), gate=(h, inter), up=(h, inter),
                down=(inter, h))


def time_matmuls(shape: dict, m: int, dtype, repeats: int) -> list[dict]:
    rows = []
    for name, (k, n) in layer_matmuls(shape).items():
        x = mx.random.normal((m, k)).astype(dtype)
        w = mx.random.normal((n, k)).astype(dtype)
        mlx_ms = _mlx_ms(lambda: x @ w.T, repeats)
        torch_ms = _torch_ms(m, k, n, repeats)
        tflop = 2 * m * k * n / 1e12
        rows.append(dict(name=name, m=m, k=k, n=n, mlx_ms=round(mlx_ms, 3),
                         mlx_tflops=round(tflop / mlx_ms * 1e3, 1),
                         torch_ms=None if torch_ms is None else round(torch_ms, 3),
                         torch_tflops=None if torch_ms is None else round(tflop / torch_ms * 1e3, 1)))
    return rows


def time_forward(model, rows: int, length: int, engine_cache: bool, repeats: int) -> float:
    """One prefill forward of (rows, length) tokens into fresh caches: mlx-lm's KVCache, or
    the engine's BatchCache as its group prefill uses it (``prefill_together``)."""
    from mlx_lm.models.cache import make_prompt_cache

    from mlxserve.cache.batch_kv import BatchCache

    tokens = mx.random.randint(0, 1000, (rows, length)).astype(mx.uint32)
    prototype = make_prompt_cache(model)

    def run():
        if engine_cache:
            batch = BatchCache.fresh(prototype, [f"r{i}" for i in range(rows)])
            batch.begin_padded([length] * rows)
            layers = batch.layers
        else:
            layers = make_prompt_cache(model)
        hidden = model.model(tokens, cache=layers)
        return [hidden] + [leaf for c in layers for leaf in c.state]

    return _mlx_ms(run, repeats)


def time_attention(shape: dict, rows: int, length: int, dtype, repeats: int) -> float:
    """One layer's causal attention over (rows, length) fresh tokens (MLX's fused SDPA)."""
    heads, kv, dim = shape["num_attention_heads"], shape["num_key_value_heads"], shape["head_dim"]
    q = mx.random.normal((rows, heads, length, dim)).astype(dtype)
    k = mx.random.normal((rows, kv, length, dim)).astype(dtype)
    v = mx.random.normal((rows, kv, length, dim)).astype(dtype)
    return _mlx_ms(lambda: mx.fast.scaled_dot_product_attention(
        q, k, v, scale=dim ** -0.5, mask="causal"), repeats)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--random-shape", default="qwen3-8b", choices=sorted(RANDOM_SHAPES))
    ap.add_argument("--dtype", default="bfloat16")
    ap.add_argument("--tokens", type=int, default=8192)
    ap.add_argument("--rows", type=int, nargs="+", default=[16, 1])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    shape = RANDOM_SHAPES[args.random_shape]
    dtype = getattr(mx, args.dtype)
    result = dict(device=str(mx.default_device()), shape=args.random_shape, dtype=args.dtype,
                  tokens=args.tokens, matmuls=time_matmuls(shape, args.tokens, dtype, args.repeats))
    layers = shape["num_hidden_layers"]
    for key in ("mlx_ms", "torch_ms"):
        per_layer = [r[key] for r in result["matmuls"] if r[key] is not None]
        if per_layer:
            result[f"matmuls_{key}_all_layers"] = round(layers * sum(per_layer), 1)
    for r in result["matmuls"]:
        print(json.dumps(r))
    model, _ = build_random_model(args.random_shape, args.dtype)
    result["forwards"] = []
    for rows in args.rows:
        for engine_cache in (False, True):
            ms = time_forward(model, rows, args.tokens // rows, engine_cache, args.repeats)
            entry = dict(rows=rows, length=args.tokens // rows, engine_cache=engine_cache,
                         ms=round(ms, 1),
                         tok_per_s=round(args.tokens / ms * 1e3))
            if engine_cache:
                entry["attention_ms_all_layers"] = round(layers * time_attention(
                    shape, rows, args.tokens // rows, dtype, args.repeats), 1)
            result["forwards"].append(entry)
            print(json.dumps(entry))
    print({k: v for k, v in result.items() if k.startswith("matmuls_")})
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
