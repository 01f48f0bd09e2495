"""SmolLM2 prefill and decode speed on a Linux CPU: mlxserve's CPU set-up against plain
mlx-cpu, same dtype first.

Each configuration runs in its own process (the BLAS is bound when MLX loads):
  ref-fp32   mlx-cpu's bundled reference BLAS, weights dequantized to float32
  mlxserve   OpenBLAS (mlxserve.backend) + float32 weights: what `mlxserve serve` does
  plain      reference BLAS, bfloat16 weights: what a plain mlx-lm user gets from the
             original (bf16) SmolLM2 checkpoint (two changes at once against mlxserve:
             BLAS and dtype)
  mlxserve-all-cores   mlxserve with OPENBLAS_NUM_THREADS = all cores
  plain-q4   (--configs) reference BLAS, the GGUF's 4-bit weights kept quantized

The headline is mlxserve / ref-fp32: the same float32 model, only the BLAS differs.
Method: every process loads the model and warms up once, then the timed runs go round
robin over the processes (--repeats rounds, the first process of a round rotating), so a
change in the machine's load hits every configuration alike. Each number is the median of
the rounds with its min and max; ratios are median over median, with the range of the
per-round ratios beside them.
Usage: python benchmarks/cpu_blas.py [--model smollm2-135m] [--gen 48] [--repeats 5] [--out F]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time

import numpy as np

CONFIGS = {
    "ref-fp32": {"MLXSERVE_BLAS": "reference", "keep_quantized": False, "dtype": "float32"},
    "mlxserve": {"MLXSERVE_BLAS": "", "keep_quantized": False, "dtype": "auto"},
    "plain": {"MLXSERVE_BLAS": "reference", "keep_quantized": False, "dtype": "bfloat16"},
    # All cores for BLAS: faster on an otherwise idle machine, much slower on a busy one
    # (OpenBLAS threads spin), which is why the default is half the cores.
    "mlxserve-all-cores": {"MLXSERVE_BLAS": "", "keep_quantized": False, "dtype": "auto",
                           "OPENBLAS_NUM_THREADS": str(os.cpu_count() or 1)},
    "plain-q4": {"MLXSERVE_BLAS": "reference", "keep_quantized": True, "dtype": "auto"},
}
DEFAULT_CONFIGS = "ref-fp32,mlxserve,plain,mlxserve-all-cores"
PAIRS = {  # (name, numerator, denominator, what differs)
    "same_dtype": ("mlxserve", "ref-fp32", "BLAS only (both float32)"),
    "vs_plain_bf16": ("mlxserve", "plain", "BLAS and dtype (float32+OpenBLAS vs bf16+reference)"),
}


def serve_measurements(model: str, keep_quantized: bool, dtype: str, gen: int,
                       prompt: str) -> None:
    """Runs in the child: load, warm up, print READY, then one timed greedy run of exactly
    ``gen`` tokens (EOS ignored) per "run" line on stdin, printed as a RESULT line."""
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
    info = {"blas": backend.prepare().name, "dtype": loaded.capabilities.dtype,
            "quantization": loaded.capabilities.quantization, "prompt_tokens": int(ids.size)}
    print("READY " + json.dumps(info), flush=True)
    for _ in sys.stdin:
        ttft, decode = timed_run(gen)
        print("RESULT " + json.dumps({"decode_tok_s": decode, "prefill_tok_s": ids.size / ttft,
                                      "peak_mem_gb": mx.get_peak_memory() / 1e9}), flush=True)


class Child:
    """One configuration's process, kept alive across the rounds."""

    def __init__(self, name: str, model: str, gen: int, prompt: str):
        cfg = CONFIGS[name]
        env = dict(os.environ, MLXSERVE_BLAS=cfg["MLXSERVE_BLAS"])
        env.pop("OPENBLAS_NUM_THREADS", None)
        if "OPENBLAS_NUM_THREADS" in cfg:
            env["OPENBLAS_NUM_THREADS"] = cfg["OPENBLAS_NUM_THREADS"]
        code = ("import sys; sys.path.insert(0, %r); from cpu_blas import serve_measurements; "
                "serve_measurements(%r, %r, %r, %d, %r)"
                % (os.path.dirname(os.path.abspath(__file__)), model, cfg["keep_quantized"],
                   cfg["dtype"], gen, prompt))
        self.name = name
        self.process = subprocess.Popen([sys.executable, "-c", code], env=env, text=True,
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.info = self._read("READY ")

    def _read(self, tag: str) -> dict:
        for line in self.process.stdout:
            if line.startswith(tag):
                return json.loads(line[len(tag):])
        raise SystemExit(f"{self.name} failed (exit {self.process.wait()})")

    def run(self) -> dict:
        self.process.stdin.write("run\n")
        self.process.stdin.flush()
        return self._read("RESULT ")

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=60)


def spread(values: list[float]) -> dict:
    return {"min": min(values), "median": float(np.median(values)), "max": max(values),
            "runs": [round(v, 3) for v in values]}


def measure_rounds(children: list[Child], repeats: int) -> dict[str, list[dict]]:
    runs: dict[str, list[dict]] = {c.name: [] for c in children}
    for r in range(repeats):
        order = children[r % len(children):] + children[:r % len(children)]
        for child in order:
            runs[child.name].append(child.run())
        print(f"round {r + 1}/{repeats} done", file=sys.stderr, flush=True)
    return runs


def summarize(children: list[Child], runs: dict[str, list[dict]]) -> dict:
    results = {}
    for child in children:
        rows = runs[child.name]
        results[child.name] = dict(child.info,
                                   decode_tok_s=spread([x["decode_tok_s"] for x in rows]),
                                   prefill_tok_s=spread([x["prefill_tok_s"] for x in rows]),
                                   peak_mem_gb=max(x["peak_mem_gb"] for x in rows))
    return results


def ratios(results: dict, runs: dict) -> dict:
    out = {}
    for key, (num, den, differs) in PAIRS.items():
        if num not in results or den not in results:
            continue
        entry = {"of": f"{num} / {den}", "differs": differs}
        for metric in ("decode_tok_s", "prefill_tok_s"):
            per_round = [a[metric] / b[metric] for a, b in zip(runs[num], runs[den])]
            entry[metric.split("_")[0]] = dict(
                median_ratio=results[num][metric]["median"] / results[den][metric]["median"],
                per_round=spread(per_round))
        out[key] = entry
    return out


def show(results: dict, pairs: dict, repeats: int) -> None:
    def f(s: dict) -> str:
        return f"{s['median']:7.1f} [{s['min']:.1f}-{s['max']:.1f}]"

    print(f"medians of {repeats} round-robin runs [min-max], tok/s")
    for name, r in results.items():
        print(f"{name:19s} blas={r['blas']:9s} dtype={r['dtype']:8s} decode {f(r['decode_tok_s'])}"
              f"  prefill {f(r['prefill_tok_s'])}")
    for key, p in pairs.items():
        d, pf = p["decode"], p["prefill"]
        print(f"{key}: {p['of']} ({p['differs']}): decode {d['median_ratio']:.2f}x "
              f"[rounds {d['per_round']['min']:.2f}-{d['per_round']['max']:.2f}], prefill "
              f"{pf['median_ratio']:.1f}x [rounds {pf['per_round']['min']:.1f}-"
              f"{pf['per_round']['max']:.1f}]")


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--gen", type=int, default=48)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--configs", default=DEFAULT_CONFIGS,
                    help=f"comma-separated, from {', '.join(CONFIGS)}")
    ap.add_argument("--prompt", default=" ".join(
        ["The lighthouse keeper climbed the stairs at dusk, counted the steps, trimmed the wick,"
         " and wrote the weather in the log before the ships came past the rocks."] * 8),
        help="default ~260 tokens, so prefill is matrix-matrix work")
    ap.add_argument("--note", default="", help="free text stored in the result (machine load)")
    ap.add_argument("--out", default=None)
    return ap.parse_args()


def main() -> None:
    args = parse_args()
    started, load_start = time.time(), os.getloadavg()[0]
    children = [Child(name, args.model, args.gen, args.prompt)
                for name in args.configs.split(",")]
    try:
        runs = measure_rounds(children, args.repeats)
    finally:
        for child in children:
            child.close()
    results = summarize(children, runs)
    pairs = ratios(results, runs)
    show(results, pairs, args.repeats)
    report = {
        "benchmark": "cpu_blas", "model": args.model, "gen_tokens": args.gen,
        "repeats": args.repeats, "method": "one process per config, warmed, round robin "
        "with rotating first config; median [min, max] of the rounds",
        "device": f"{platform.processor() or platform.machine()} ({os.cpu_count()} cores), "
                  f"{platform.platform()}",
        "load_average_1m_start_end": [round(load_start, 2), round(os.getloadavg()[0], 2)],
        "note": args.note, "wall_s": round(time.time() - started, 1),
        "results": results, "ratios": pairs,
    }
    if args.out:
        with open(args.out, "w") as f:
            json.dump(report, f, indent=2)


if __name__ == "__main__":
    main()
