"""Prefix cache: time to first token with a shared system prompt, cold vs hit, one run.

    python benchmarks/prefix_cache.py --model smollm2-135m --system-tokens 2048

Runs the engine (AsyncEngine) with the prefix cache on. Each repeat: drop the cache, send
system + question k (cold: the whole prompt is prefilled), then system + question k'
(a hit: only the question is prefilled). TTFT = submit → first token, greedy, 1 token.
Prints the medians and their ratio (cold / hit); both are measured in the same run, cold
and hit interleaved, so a slow drift of the machine hits both.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import sys
import time

from mlxserve.config import EngineConfig, ModelConfig
from mlxserve.engine.client import AsyncEngine
from mlxserve.engine.request import GenerateRequest, SamplingParams, StopParams

WORDS = ("the quick brown fox jumps over a lazy dog while seven tired wizards quietly "
         "count every golden star above the sleeping northern hills").split()


def _system(tokenizer, n: int) -> list[int]:
    text, tokens = "", []
    k = 0
    while len(tokens) < n:
        text += " " + WORDS[k % len(WORDS)]
        k += 1
        if k % 64 == 0:
            tokens = tokenizer.encode(text)
    return tokenizer.encode(text)[:n]


async def _ttft(engine: AsyncEngine, rid: str, prompt: list[int]) -> tuple[float, int]:
    request = GenerateRequest(rid, prompt, SamplingParams(temperature=0.0),
                              StopParams(max_tokens=1, ignore_eos=True))
    start = time.perf_counter()
    cached = 0
    async for delta in engine.generate(request):
        cached = max(cached, delta.cached_tokens)
    return time.perf_counter() - start, cached


async def _run(args) -> dict:
    engine = AsyncEngine(ModelConfig(model=args.model), EngineConfig())
    await engine.start()
    try:
        tok = engine.model.tokenizer
        system = _system(tok, args.system_tokens)
        cold, hit, cached = [], [], []
        for r in range(args.repeats + 1):  # the first pair is a warm-up
            await engine.clear_prefix_cache()
            a, _ = await _ttft(engine, f"c{r}", system + tok.encode(f" question {r}: why?"))
            b, n = await _ttft(engine, f"h{r}", system + tok.encode(f" question {r}: how?"))
            print(f"repeat {r}: cold {a:.3f} s, hit {b:.3f} s ({n} cached)", file=sys.stderr)
            if r:
                cold.append(a)
                hit.append(b)
                cached.append(n)
        return dict(model=args.model, system_tokens=len(system), repeats=args.repeats,
                    cold_ttft_s=statistics.median(cold), hit_ttft_s=statistics.median(hit),
                    cold_over_hit=statistics.median(cold) / statistics.median(hit),
                    cached_tokens=cached, machine=platform.platform(),
                    processor=platform.processor() or platform.machine())
    finally:
        await engine.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--system-tokens", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=None)
    result = asyncio.run(_run(parser.parse_args()))
    print(json.dumps(result, indent=2))
    args = parser.parse_args()
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
