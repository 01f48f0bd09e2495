"""Per-step host time of the whole engine (AsyncEngine) at 1 / 64 / 128 decoding rows.

    python benchmarks/host_overhead.py --model tiny --rows 1 64 128
    python benchmarks/host_overhead.py --model smollm2-135m --rows 1 64 128 --out r.json

On a tiny random model (2-layer qwen3, 64 hidden) the model's own work is small, so the
wall time of a decode step is mostly the engine's host cost: scheduling, graph building,
sampling setup, read-back, detokenizing, stop checks and delta delivery. (Not all of it:
on a CPU the "device" is the CPU, and at 128 rows MLX's CPU attention alone takes a few ms
a step, see "other" below.) Each level sends ``rows`` greedy requests at once (one prompt
length, so they prefill together), and measures the decode phase: from the moment every
request has its first token to the last one's end, divided by the decode steps
(``--gen-len`` - 1). Best of ``--repeats``. Optionally with penalties on every row
(``--penalties``) or sampled rows (``--sampled``). Run it on the code before and after a
change, on one machine, to compare. Besides wall time it splits the CPU time per step:
the event loop's thread (consumers, hand-off), the engine thread (Python of the step) and
the rest (MLX's CPU stream: the model and sampling kernels); on a shared machine whose
other load stretches wall time, CPU time is the steadier measure.
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

from mlxserve.cache import row_attention  # noqa: E402
from mlxserve.config import EngineConfig, ModelConfig  # noqa: E402
from mlxserve.engine.client import AsyncEngine  # noqa: E402
from mlxserve.engine.request import GenerateRequest, SamplingParams, StopParams  # noqa: E402


def _request(k: int, prompt: list[int], gen_len: int, args) -> GenerateRequest:
    extra = dict(frequency_penalty=0.5, repetition_penalty=1.1) if args.penalties else {}
    if args.sampled:
        extra.update(temperature=0.8, top_p=0.95, top_k=50, seed=k)
    params = SamplingParams(**{"temperature": 0.0, **extra})
    return GenerateRequest(f"h{k}", list(prompt), params,
                           StopParams(max_tokens=gen_len, ignore_eos=True))


class _Clocks:
    """Wall time and CPU time of the process, of the event loop's thread (this one) and of
    the engine thread, read together."""

    def __init__(self, engine: AsyncEngine):
        self._engine_clock = time.pthread_getcpuclockid(engine._core.thread.ident)

    def read(self) -> tuple[float, float, float, float]:
        return (time.perf_counter(), time.process_time(), time.thread_time(),
                time.clock_gettime(self._engine_clock))


def _prompts(rows: int, args) -> list[list[int]]:
    """Row k's prompt: ``--prompt-len`` tokens plus ``k % --stagger`` more, so with a
    stagger the rows decode at different lengths (the masked attention path)."""
    return [list(range(3, 3 + args.prompt_len + k % max(args.stagger, 1)))
            for k in range(rows)]


async def _level(engine: AsyncEngine, rows: int, gen_len: int, args) -> dict[str, float]:
    """Milliseconds per decode step with ``rows`` rows decoding together: wall time, and
    CPU time (the process, the event loop, the engine thread, the rest: MLX's CPU stream
    and BLAS, i.e. the device work on a CPU) over the same span."""
    clocks, prompts = _Clocks(engine), _prompts(rows, args)
    first: list[tuple] = []
    ends: list[tuple] = []

    async def one(k: int) -> None:
        got = 0
        async for delta in engine.generate(_request(k, prompts[k], gen_len, args)):
            if got == 0 and delta.token_ids:
                first.append(clocks.read())
            got += len(delta.token_ids)
        ends.append(clocks.read())

    await asyncio.gather(*(one(k) for k in range(rows)))
    start, end = max(first), max(ends)
    wall, proc, loop, eng = ((e - s) * 1000 / (gen_len - 1) for s, e in zip(start, end))
    return dict(wall=wall, cpu=proc, loop_cpu=loop, engine_cpu=eng,
                other_cpu=proc - loop - eng)


async def _measure(path: str, levels: list[int], args) -> dict:
    engine = AsyncEngine(ModelConfig(model=path), EngineConfig(
        max_num_seqs=max(levels),
        max_num_batched_tokens=max(levels) * (args.prompt_len + args.stagger),
        enable_prefix_caching=args.prefix_caching))
    await engine.start()
    try:
        out: dict[str, dict] = {}
        for rows in levels:
            await _level(engine, rows, 8, args)  # warm this shape
            runs = [await _level(engine, rows, args.gen_len, args)
                    for _ in range(args.repeats)]
            best = min(runs, key=lambda r: r["wall"])
            for key in best:
                out.setdefault(key, {})[str(rows)] = round(best[key], 2)
            print(f"{rows:4d} rows: {best['wall']:7.2f} ms per step; CPU ms: process "
                  f"{best['cpu']:.2f} = event loop {best['loop_cpu']:.2f} + engine thread "
                  f"{best['engine_cpu']:.2f} + other (MLX CPU stream) {best['other_cpu']:.2f}",
                  flush=True)
        return dict(ms_per_step=out.pop("wall"), cpu_ms_per_step=out)
    finally:
        await engine.shutdown()


def _model_path(name: str, root: str, head_dim: int) -> str:
    """The tiny model's folder, else the HF folder mlxserve loads ``name`` from (a GGUF or
    an alias converted first), so mlx-lm's reference loads the very same weights."""
    if name != "tiny":
        from mlxserve.models.loader import materialize
        from mlxserve.models.source import resolve_source

        return materialize(resolve_source(name), ModelConfig(model=name))[0]
    from tiny_models import make_tiny_model

    return str(make_tiny_model(Path(root), "qwen3", overrides={"head_dim": head_dim}))


def batch_generator_ms(path: str, levels: list[int], args) -> dict[str, float]:
    """The reference: mlx-lm's own batched decode loop (BatchGenerator) on the same model,
    prompts and rows, ms per decode step (best of ``--repeats``). Its step is the model's
    forward plus mlx-lm's sampling and bookkeeping, so engine / reference near 1 means the
    engine's host cost hides behind the device work as mlx-lm's does."""
    from mlx_lm import load
    from mlx_lm.generate import BatchGenerator

    model, _ = load(path)
    out = {}
    for rows in levels:
        runs = []
        for _ in range(args.repeats):
            gen = BatchGenerator(model, max_tokens=args.gen_len, completion_batch_size=rows,
                                 prefill_batch_size=rows, prefill_step_size=512)
            gen.insert(_prompts(rows, args), [args.gen_len] * rows)
            steps, start = 0, 0.0
            with row_attention.mlx_attention():  # mlx-lm as users run it
                while gen.next_generated():
                    steps += 1
                    if steps == 2:  # from the first decode step on (prefill excluded)
                        start = time.perf_counter()
            runs.append((time.perf_counter() - start) * 1000 / max(steps - 2, 1))
            gen.close()
        out[str(rows)] = round(min(runs), 2)
        print(f"{rows:4d} rows: {out[str(rows)]:7.2f} ms per step (mlx-lm BatchGenerator)",
              flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="tiny", help="'tiny' or any model mlxserve loads")
    parser.add_argument("--rows", type=int, nargs="+", default=[1, 64, 128])
    parser.add_argument("--head-dim", type=int, default=16,
                        help="the tiny model's head_dim (MLX 0.32.4's CUDA rope fails at "
                        "head_dim 16 with 512+ batch x heads: use 32 on a GPU)")
    parser.add_argument("--prompt-len", type=int, default=16)
    parser.add_argument("--stagger", type=int, default=0,
                        help="row k's prompt is k %% N tokens longer (rows at different lengths)")
    parser.add_argument("--gen-len", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--penalties", action="store_true")
    parser.add_argument("--sampled", action="store_true",
                        help="temperature 0.8, top_p 0.95, top_k 50, a seed per request")
    parser.add_argument("--prefix-caching", action=argparse.BooleanOptionalAction,
                        default=True, help="the engine's prefix cache (on by default)")
    parser.add_argument("--label", default="", help="e.g. before / after")
    parser.add_argument("--out", help="write the results as JSON here")
    parser.add_argument("--reference", action="store_true",
                        help="also time mlx-lm's BatchGenerator (greedy only) and print ratios")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as root:
        path = _model_path(args.model, root, args.head_dim)
        per_step = asyncio.run(_measure(path, args.rows, args))
        if args.reference:
            reference = batch_generator_ms(path, args.rows, args)
            per_step["reference_ms_per_step"] = reference
            per_step["engine_over_reference"] = {
                k: round(per_step["ms_per_step"][k] / v, 3) for k, v in reference.items()}
            print(f"engine / BatchGenerator: {per_step['engine_over_reference']}", flush=True)
    import mlx.core as mx

    result = dict(device=f"{platform.processor() or platform.machine()}, {mx.default_device()}",
                  model=args.model, head_dim=args.head_dim, label=args.label,
                  penalties=args.penalties, sampled=args.sampled,
                  prompt_len=args.prompt_len, stagger=args.stagger, gen_len=args.gen_len, **per_step,
                  load_average=[round(x, 2) for x in os.getloadavg()])
    print(json.dumps(result))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
