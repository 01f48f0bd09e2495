"""SmolLM2 decode speed on a Linux CPU: mlxserve's CPU set-up against plain mlx-cpu.

Each configuration runs in its own process (the BLAS is bound when MLX loads):
  plain      mlx-cpu's bundled reference BLAS, bfloat16 weights: what a plain mlx-lm user
             gets from the original (bf16) SmolLM2 checkpoint
  plain-q4   reference BLAS, the GGUF's 4-bit weights kept quantized (MLX's CPU kernels)
  ref-fp32   reference BLAS, weights dequantized to float32
  mlxserve   OpenBLAS (mlxserve.backend) + float32 weights: what `mlxserve serve` does

Prints tokens/s per configuration and the ratio mlxserve / plain (target: >= 10x).
Usage: python benchmarks/cpu_blas.py [--model smollm2-135m] [--gen 64] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time

CONFIGS = {
    "plain": {"MLXSERVE_BLAS": "reference", "keep_quantized": False, "dtype": "bfloat16"},
    "plain-q4": {"MLXSERVE_BLAS": "reference", "keep_quantized": True, "dtype": "auto"},
    "ref-fp32": {"MLXSERVE_BLAS": "reference", "keep_quantized": False, "dtype": "float32"},
    "mlxserve": {"MLXSERVE_BLAS": "", "keep_quantized": False, "dtype": "auto"},
    # All cores for BLAS: faster on an otherwise idle machine, much slower on a busy one
    # (OpenBLAS threads spin), which is why the default is half the cores.
    "mlxserve-all-cores": {"MLXSERVE_BLAS": "", "keep_quantized": False, "dtype": "auto",
                           "OPENBLAS_NUM_THREADS": str(os.cpu_count() or 1)},
}


def measure(model: str, keep_quantized: bool, dtype: str, gen: int, prompt: str) -> dict:
    """Runs inside the child process: greedy decode of exactly `gen` tokens (EOS ignored)."""
    import mlxserve  # noqa: F401  (binds the BLAS first)
    from mlxserve import backend
    from mlxserve.config import ModelConfig
    from mlxserve.models import load_model

    import mlx.core as mx
    from mlx_lm.generate import generate_step
    from mlx_lm.sample_utils import make_sampler

    loaded = load_model(ModelConfig(model=model, keep_quantized=keep_quantized, dtype=dtype))
    ids = mx.array(loaded.tokenizer.encode(prompt))
    greedy = make_sampler(temp=0.0)

    def timed_run(n: int) -> tuple[float, float]:
        t0 = time.perf_counter()
        first = None
        for i, _ in enumerate(generate_step(ids, loaded.model, max_tokens=n, sampler=greedy)):
            if i == 0:
                first = time.perf_counter()
        end = time.perf_counter()
        return first - t0, (n - 1) / (end - first)

    timed_run(4)  # warm-up
    ttft, decode = timed_run(gen)
    return {
        "blas": backend.prepare().name,
        "dtype": loaded.capabilities.dtype,
        "quantization": loaded.capabilities.quantization,
        "decode_tok_s": decode,
        "prefill_tok_s": ids.size / ttft,
        "prompt_tokens": int(ids.size),
        "generated": gen,
        "peak_mem_gb": mx.get_peak_memory() / 1e9,
    }


def run_child(name: str, model: str, gen: int, prompt: str) -> dict:
    cfg = CONFIGS[name]
    env = dict(os.environ, MLXSERVE_BLAS=cfg["MLXSERVE_BLAS"])
    env.pop("OPENBLAS_NUM_THREADS", None)
    if "OPENBLAS_NUM_THREADS" in cfg:
        env["OPENBLAS_NUM_THREADS"] = cfg["OPENBLAS_NUM_THREADS"]
    code = (
        "import json, sys; sys.path.insert(0, %r); from cpu_blas import measure; "
        "print('RESULT ' + json.dumps(measure(%r, %r, %r, %d, %r)))"
        % (os.path.dirname(os.path.abspath(__file__)), model, cfg["keep_quantized"],
           cfg["dtype"], gen, prompt)
    )
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    line = [ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")]
    if out.returncode != 0 or not line:
        raise SystemExit(f"{name} failed:\n{out.stderr[-3000:]}")
    res = json.loads(line[-1][len("RESULT "):])
    res["wall_s"] = round(time.perf_counter() - t0, 1)
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--gen", type=int, default=64)
    ap.add_argument("--prompt", default=" ".join(
        ["The lighthouse keeper climbed the stairs at dusk, counted the steps, trimmed the wick,"
         " and wrote the weather in the log before the ships came past the rocks."] * 8),
        help="default ~260 tokens, so prefill is matrix-matrix work")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()

    results = {}
    for name in CONFIGS:
        results[name] = run_child(name, args.model, args.gen, args.prompt)
        r = results[name]
        print(f"{name:9s} blas={r['blas']:9s} dtype={r['dtype']:8s} quant={r['quantization']:14s} "
              f"decode {r['decode_tok_s']:8.1f} tok/s  prefill {r['prefill_tok_s']:8.1f} tok/s",
              flush=True)
    ratio = results["mlxserve"]["decode_tok_s"] / results["plain"]["decode_tok_s"]
    prefill_ratio = results["mlxserve"]["prefill_tok_s"] / results["plain"]["prefill_tok_s"]
    print(f"ratio mlxserve/plain: decode {ratio:.1f}x, prefill {prefill_ratio:.1f}x  (aim >= 10x)")
    report = {
        "benchmark": "cpu_blas", "model": args.model, "gen_tokens": args.gen,
        "device": f"{platform.processor() or platform.machine()} ({os.cpu_count()} cores), Linux CPU",
        "results": results, "ratio_decode_mlxserve_vs_plain": ratio,
        "ratio_prefill_mlxserve_vs_plain": prefill_ratio,
    }
    if args.out:
        with open(args.out, "w") as f:
            json.dump(report, f, indent=2)


if __name__ == "__main__":
    main()
