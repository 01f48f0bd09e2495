"""Per-step host time of the whole engine (AsyncEngine) at 1 / 64 / 128 decoding rows.

    python benchmarks/host_overhead.py --model tiny --rows 1 64 128
    python benchmarks/host_overhead.py --model smollm2-135m --rows 1 64 128 --out r.json

On a tiny random model (2-layer qwen3, 64 hidden) the device work of a step is negligible,
so the wall time of a decode step is the engine's own host cost: scheduling, graph
building, sampling setup, read-back, detokenizing, stop checks and delta delivery. Each
level sends ``rows`` greedy requests at once (one prompt length, so they prefill
together), and measures the decode phase: from the moment every request has its first
token to the last one's end, divided by the decode steps (``--gen-len`` - 1). Best of
``--repeats``. Optionally also with penalties on every row (``--penalties``). Run it on the
code before and after a change, on one machine, to compare. Besides wall time it reports
the process's CPU time per step (all threads: engine, event loop, MLX's CPU stream): on a
shared machine whose other load stretches wall time, that is the steadier of the two.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import mlxserve  # noqa: E402,F401  (binds MLX to OpenBLAS on Linux CPU before mlx.core)

from mlxserve.config import EngineConfig, ModelConfig  # noqa: E402
from mlxserve.engine.client import AsyncEngine  # noqa: E402
from mlxserve.engine.request import GenerateRequest, SamplingParams, StopParams  # noqa: E402


def _request(k: int, prompt: list[int], gen_len: int, penalties: bool) -> GenerateRequest:
    extra = dict(frequency_penalty=0.5, repetition_penalty=1.1) if penalties else {}
    return GenerateRequest(f"h{k}", list(prompt), SamplingParams(temperature=0.0, **extra),
                           StopParams(max_tokens=gen_len, ignore_eos=True))


async def _level(engine: AsyncEngine, rows: int, prompt: list[int], gen_len: int,
                 penalties: bool) -> tuple[float, float]:
    """Seconds per decode step with ``rows`` rows decoding together: wall time, and the
    CPU time of the whole process (all threads) over the same span."""
    first: list[tuple[float, float]] = []
    ends: list[tuple[float, float]] = []

    async def one(k: int) -> None:
        got = 0
        async for delta in engine.generate(_request(k, prompt, gen_len, penalties)):
            if got == 0 and delta.token_ids:
                first.append((time.perf_counter(), time.process_time()))
            got += len(delta.token_ids)
        ends.append((time.perf_counter(), time.process_time()))

    await asyncio.gather(*(one(k) for k in range(rows)))
    start, end = max(first), max(ends)
    return (end[0] - start[0]) / (gen_len - 1), (end[1] - start[1]) / (gen_len - 1)


async def _measure(path: str, levels: list[int], args) -> dict:
    engine = AsyncEngine(ModelConfig(model=path), EngineConfig(
        max_num_seqs=max(levels), max_num_batched_tokens=max(levels) * args.prompt_len))
    await engine.start()
    try:
        prompt = list(range(3, 3 + args.prompt_len))
        wall, cpu = {}, {}
        for rows in levels:
            await _level(engine, rows, prompt, 8, args.penalties)  # warm this shape
            runs = [await _level(engine, rows, prompt, args.gen_len, args.penalties)
                    for _ in range(args.repeats)]
            wall[str(rows)] = round(min(w for w, _ in runs) * 1000, 2)
            cpu[str(rows)] = round(min(c for _, c in runs) * 1000, 2)
            print(f"{rows:4d} rows: {wall[str(rows)]:7.2f} ms per step "
                  f"(process CPU {cpu[str(rows)]:.2f} ms)", flush=True)
        return dict(ms_per_step=wall, cpu_ms_per_step=cpu)
    finally:
        await engine.shutdown()


def _model_path(name: str, root: str) -> str:
    if name != "tiny":
        return name
    from tiny_models import make_tiny_model

    return str(make_tiny_model(Path(root), "qwen3"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="tiny", help="'tiny' or any model mlxserve loads")
    parser.add_argument("--rows", type=int, nargs="+", default=[1, 64, 128])
    parser.add_argument("--prompt-len", type=int, default=16)
    parser.add_argument("--gen-len", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--penalties", action="store_true")
    parser.add_argument("--label", default="", help="e.g. before / after")
    parser.add_argument("--out", help="write the results as JSON here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as root:
        per_step = asyncio.run(_measure(_model_path(args.model, root), args.rows, args))
    result = dict(device=f"{platform.processor() or platform.machine()} CPU",
                  model=args.model, label=args.label, penalties=args.penalties,
                  prompt_len=args.prompt_len, gen_len=args.gen_len, **per_step,
                  load_average=[round(x, 2) for x in os.getloadavg()])
    print(json.dumps(result))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
