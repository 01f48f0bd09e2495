"""TTFT of short prompts: the last prompt chunk in one forward vs split in two (AsyncEngine).

    python benchmarks/ttft_short.py --model smollm2-135m --out r.json

A last prompt chunk of at most ``prefill.ONE_FORWARD_TAIL`` tokens runs in one forward (its
lm_head over those positions is cheap); longer ones, and every chunk before this change,
run all but the last token and then the last token alone, as ``mlx_lm.stream_generate``
does, which reads the weights twice. This times both in one engine, interleaved (the
threshold set to 0 gives the split), greedy, one output token, prefix cache off, median of
``--repeats``; prints the ratio per prompt length.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import mlxserve  # noqa: E402,F401  (binds MLX to OpenBLAS on Linux CPU before mlx.core)

import mlxserve.engine.prefill as prefill  # noqa: E402
from mlxserve.config import EngineConfig, ModelConfig  # noqa: E402
from mlxserve.engine.client import AsyncEngine  # noqa: E402
from mlxserve.engine.request import GenerateRequest, SamplingParams, StopParams  # noqa: E402


async def _ttft(engine: AsyncEngine, rid: str, prompt: list[int]) -> float:
    request = GenerateRequest(rid, prompt, SamplingParams(temperature=0.0),
                              StopParams(max_tokens=1, ignore_eos=True))
    start = time.perf_counter()
    async for _ in engine.generate(request):
        pass
    return time.perf_counter() - start


async def _run(args) -> dict:
    engine = AsyncEngine(ModelConfig(model=args.model), EngineConfig(enable_prefix_caching=False))
    await engine.start()
    one_forward = prefill.ONE_FORWARD_TAIL
    out = {}
    try:
        for length in args.lengths:
            times: dict[str, list[float]] = {"split": [], "one": []}
            for rep in range(args.repeats + 1):  # the first round warms this length
                for mode, tail in (("split", 0), ("one", one_forward)):
                    prefill.ONE_FORWARD_TAIL = tail
                    prompt = [(rep * 31 + 7 * j + tail) % 4000 + 10 for j in range(length)]
                    took = await _ttft(engine, f"{mode}-{length}-{rep}", prompt)
                    if rep:
                        times[mode].append(took)
            split, one = statistics.median(times["split"]), statistics.median(times["one"])
            out[str(length)] = dict(split_s=round(split, 4), one_forward_s=round(one, 4),
                                    split_over_one=round(split / one, 3))
            print(f"prompt {length:4d}: TTFT split {split * 1e3:.0f} ms, one forward "
                  f"{one * 1e3:.0f} ms: {split / one:.2f}x", flush=True)
    finally:
        prefill.ONE_FORWARD_TAIL = one_forward
        await engine.shutdown()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--lengths", type=int, nargs="+", default=[8, 24, 60])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    results = asyncio.run(_run(args))
    import mlx.core as mx

    record = dict(device=f"{platform.processor() or platform.machine()}, {mx.default_device()}",
                  model=args.model, repeats=args.repeats, ttft=results,
                  load_average=[round(x, 2) for x in os.getloadavg()])
    if args.out:
        Path(args.out).write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
