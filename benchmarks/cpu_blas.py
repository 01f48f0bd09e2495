"""SmolLM2 decode speed on a Linux CPU: mlxserve's CPU set-up against plain mlx-cpu.

Each configuration runs in its own process (the BLAS is bound when MLX loads):
  plain      mlx-cpu's bundled reference BLAS, weights as the checkpoint has them (Q4_1)
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
    "plain": {"MLXSERVE_BLAS": "reference", "keep_quantized": True},
    "ref-fp32": {"MLXSERVE_BLAS": "reference", "keep_quantized": False},
    "mlxserve": {"MLXSERVE_BLAS": "", "keep_quantized": False},
}


def measure(model: str, keep_quantized: bool, gen: int, prompt: str) -> dict:
    """Runs inside the child process."""
    import mlxserve  # noqa: F401  (binds the BLAS first)
    from mlxserve import backend
    from mlxserve.config import ModelConfig
    from mlxserve.models import load_model

    import mlx.core as mx
    from mlx_lm import stream_generate
    from mlx_lm.sample_utils import make_sampler

    loaded = load_model(ModelConfig(model=model, keep_quantized=keep_quantized))
    greedy = make_sampler(temp=0.0)
    for _ in stream_generate(loaded.model, loaded.tokenizer, prompt, max_tokens=8, sampler=greedy):
        pass  # warm-up
    last = None
    for last in stream_generate(loaded.model, loaded.tokenizer, prompt, max_tokens=gen, sampler=greedy):
        pass
    return {
        "blas": backend.prepare().name,
        "dtype": loaded.capabilities.dtype,
        "quantization": loaded.capabilities.quantization,
        "decode_tok_s": last.generation_tps,
        "prefill_tok_s": last.prompt_tps,
        "generated": last.generation_tokens,
        "peak_mem_gb": mx.get_peak_memory() / 1e9,
    }


def run_child(name: str, model: str, gen: int, prompt: str) -> dict:
    cfg = CONFIGS[name]
    env = dict(os.environ, MLXSERVE_BLAS=cfg["MLXSERVE_BLAS"])
    code = (
        "import json, sys; sys.path.insert(0, %r); from cpu_blas import measure; "
        "print('RESULT ' + json.dumps(measure(%r, %r, %d, %r)))"
        % (os.path.dirname(os.path.abspath(__file__)), model, cfg["keep_quantized"], gen, prompt)
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
    ap.add_argument("--prompt", default="Write a short story about a lighthouse keeper.")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()

    results = {}
    for name in CONFIGS:
        results[name] = run_child(name, args.model, args.gen, args.prompt)
        r = results[name]
        print(f"{name:9s} blas={r['blas']:9s} dtype={r['dtype']:8s} "
              f"decode {r['decode_tok_s']:8.1f} tok/s  prefill {r['prefill_tok_s']:8.1f} tok/s",
              flush=True)
    ratio = results["mlxserve"]["decode_tok_s"] / results["plain"]["decode_tok_s"]
    print(f"ratio mlxserve/plain decode: {ratio:.1f}x  (target >= 10x)")
    report = {
        "benchmark": "cpu_blas", "model": args.model, "gen_tokens": args.gen,
        "device": f"{platform.processor() or platform.machine()} ({os.cpu_count()} cores), Linux CPU",
        "results": results, "ratio_decode_mlxserve_vs_plain": ratio,
    }
    if args.out:
        with open(args.out, "w") as f:
            json.dump(report, f, indent=2)


if __name__ == "__main__":
    main()
