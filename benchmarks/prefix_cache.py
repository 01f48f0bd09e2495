"""Prefix cache in the engine: TTFT with a shared system prefix (cold vs hit) and a
multi-turn chat (tokens prefilled and TTFT per turn, cache on vs off), in one run.

    python benchmarks/prefix_cache.py --model smollm2-135m --system-tokens 2048
    python benchmarks/prefix_cache.py --random-shape qwen3-8b --dtype bfloat16 \
        --system-tokens 2048,6144,8192,32768 --out r.json      # CUDA (or Metal)

The engine (AsyncEngine, in process) on token ids; --random-shape builds a random model of
that shape (benchmarks/engine.py), so nothing is downloaded. Side by side with another
server over HTTP (vllm-mlx): benchmarks/prefix_cache_servers.py.

1. Shared system prefix, per size: each repeat uses a new system prefix (so nothing of it
   is cached), sends system + question a (cold: all of it is prefilled), then system +
   question b (a hit: only the question is prefilled). TTFT = submit -> first token, greedy,
   1 token. Cold and hit interleaved; the first pair is an untimed warm-up. Median, min,
   max, and the ratio of the medians cold / hit. Beside them the floor: the question alone
   (no system prefix, nothing cached), the engine's fixed cost of a request; hit - floor
   is what reading the cached prefix costs. --siblings N sends N other questions on the
   same prefix before each hit (a chat UI or agent: many entries share one system prompt).
2. Chat: --turns turns, each resending the whole history (system + every user turn and
   the engine's own answers, --answer-tokens each, as token ids: the turn markers of a
   template are left out) plus a new user turn, to an engine with the cache on and one
   with it off (the same loaded model; turns interleaved). Per turn: prompt tokens, tokens
   prefilled (prompt - cached), TTFT; totals, and whether both engines' answers are equal.
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
import numpy as np  # noqa: E402

from mlxserve.config import EngineConfig, ModelConfig  # noqa: E402
from mlxserve.engine.client import AsyncEngine  # noqa: E402
from mlxserve.engine.request import GenerateRequest, SamplingParams, StopParams  # noqa: E402

WORDS = ("the quick brown fox jumps over a lazy dog while seven tired wizards quietly "
         "count every golden star above the sleeping northern hills").split()


class Prompts:
    """Token ids of system prefixes and questions: text through the model's tokenizer, or
    random ids when the model has none (a --random-shape model)."""

    def __init__(self, tokenizer, vocab: int):
        self.tokenizer = tokenizer
        self.rng = np.random.default_rng(0)
        self.high = min(vocab, 30000)

    def system(self, n: int, tag: int) -> list[int]:
        if self.tokenizer is None:
            return self.rng.integers(100, self.high, size=n).tolist()
        words = [f"Session {tag}."] + [WORDS[(k * 7 + tag) % len(WORDS)]
                                       for k in range(n)]
        return self.tokenizer.encode(" ".join(words))[:n]

    def text(self, words: str, n: int) -> list[int]:
        if self.tokenizer is None:
            return self.rng.integers(100, self.high, size=n).tolist()
        return self.tokenizer.encode(" " + words)


def spread(values: list[float]) -> dict:
    return dict(min=min(values), median=statistics.median(values), max=max(values),
                runs=[round(v, 4) for v in values])


def request(rid: str, prompt: list[int], max_tokens: int) -> GenerateRequest:
    return GenerateRequest(rid, list(prompt), SamplingParams(temperature=0.0),
                           StopParams(max_tokens=max_tokens, ignore_eos=True))


async def timed(engine: AsyncEngine, rid: str, prompt: list[int], max_tokens: int = 1):
    """(TTFT s, cached tokens, output token ids)."""
    start = time.perf_counter()
    first, cached, tokens = None, 0, []
    async for delta in engine.generate(request(rid, prompt, max_tokens)):
        if first is None and delta.token_ids:
            first = time.perf_counter() - start
        tokens += delta.token_ids
        cached = max(cached, delta.cached_tokens)
    return first, cached, tokens


async def shared_prefix(engine: AsyncEngine, prompts: Prompts, size: int,
                        repeats: int, siblings: int = 0) -> dict:
    cold, hit, floor, cached = [], [], [], []
    for r in range(repeats + 1):  # the first pair is a warm-up
        await engine.clear_prefix_cache()  # older systems would only hold memory
        system = prompts.system(size, tag=1000 * size + r)
        a, _, _ = await timed(engine, f"c{size}-{r}", system + prompts.text("why?", 8))
        for k in range(siblings):
            await timed(engine, f"s{size}-{r}-{k}", system + prompts.text(f"and {k}?", 8))
        b, n, _ = await timed(engine, f"h{size}-{r}", system + prompts.text("how so?", 8))
        await engine.clear_prefix_cache()  # the floor's question must not hit itself
        f, _, _ = await timed(engine, f"f{size}-{r}", prompts.text("how so?", 8))
        print(f"  {size} tokens, repeat {r}: cold {a:.4f} s, hit {b:.4f} s ({n} cached), "
              f"floor {f:.4f} s", file=sys.stderr, flush=True)
        if r:
            cold.append(a)
            hit.append(b)
            floor.append(f)
            cached.append(n)
    return dict(system_tokens=size, cold_ttft_s=spread(cold), hit_ttft_s=spread(hit),
                floor_ttft_s=spread(floor),
                cold_over_hit=statistics.median(cold) / statistics.median(hit),
                cached_tokens=cached)


async def chat(engines: dict, prompts: Prompts, args) -> dict:
    """The same conversation on each engine (cache on / off), turns interleaved."""
    system = prompts.system(args.chat_system_tokens, tag=7)
    history = {name: list(system) for name in engines}
    turns = {name: [] for name in engines}
    answers_equal = True
    for t in range(args.turns):
        user = prompts.text(f"turn {t}: and what happened next to the fox?", 12)
        order = list(engines) if t % 2 == 0 else list(reversed(engines))
        answers = {}
        for name in order:
            prompt = history[name] + user
            ttft, cached, out = await timed(engines[name], f"{name}{t}", prompt,
                                            args.answer_tokens)
            turns[name].append(dict(prompt_tokens=len(prompt), cached_tokens=cached,
                                    prefilled_tokens=len(prompt) - cached, ttft_s=ttft))
            history[name] = prompt + out
            answers[name] = out
        answers_equal &= len({tuple(a) for a in answers.values()}) == 1
        print(f"  turn {t}: " + ", ".join(
            f"{n} prefilled {turns[n][-1]['prefilled_tokens']} ttft "
            f"{turns[n][-1]['ttft_s']:.4f} s" for n in engines), file=sys.stderr, flush=True)
    totals = {n: sum(x["prefilled_tokens"] for x in turns[n]) for n in engines}
    return dict(turns=args.turns, answer_tokens=args.answer_tokens, per_turn=turns,
                prefilled_tokens_total=totals,
                prefilled_fewer_fraction=1 - totals["cache_on"] / totals["cache_off"],
                ttft_total_s={n: sum(x["ttft_s"] for x in turns[n]) for n in engines},
                answers_equal=answers_equal)


def load(args):
    if args.random_shape:
        from engine import build_random_model, loaded_model_for

        dtype = "bfloat16" if args.dtype == "auto" else args.dtype
        model, config = build_random_model(args.random_shape, dtype)
        return loaded_model_for(model, config, None, args.random_shape, dtype)
    from mlxserve.models import load_model

    return load_model(ModelConfig(model=args.model, dtype=args.dtype))


def engine_config(args, cache: bool) -> EngineConfig:
    extra = {}
    if args.max_num_batched_tokens:
        extra["max_num_batched_tokens"] = args.max_num_batched_tokens
    return EngineConfig(enable_prefix_caching=cache, **extra)


async def start(loaded, args, cache: bool) -> AsyncEngine:
    engine = AsyncEngine(ModelConfig(model=loaded.name), engine_config(args, cache),
                         loader=lambda _c: loaded)
    await engine.start()
    return engine


async def run(args) -> dict:
    import mlx.core as mx

    loaded = load(args)
    prompts = Prompts(loaded.tokenizer, loaded.capabilities.vocab_size or 30000)
    result = dict(model=args.random_shape or args.model, dtype=loaded.capabilities.dtype,
                  device=str(mx.default_device()), machine=platform.platform(),
                  processor=platform.processor() or platform.machine(),
                  cpu_count=os.cpu_count(), load_average_1m_start=os.getloadavg()[0])
    engine = await start(loaded, args, cache=True)
    try:
        result["shared_prefix"] = [await shared_prefix(engine, prompts, size, args.repeats,
                                                       args.siblings)
                                   for size in args.system_tokens]
        if args.turns:
            await engine.clear_prefix_cache()
            off = await start(loaded, args, cache=False)
            try:
                result["chat"] = await chat(dict(cache_on=engine, cache_off=off), prompts,
                                            args)
            finally:
                await off.shutdown()
    finally:
        await engine.shutdown()
    result["load_average_1m_end"] = os.getloadavg()[0]
    return result


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    src = ap.add_mutually_exclusive_group()
    src.add_argument("--model", default=None, help="HF folder, .gguf, hub id or alias")
    src.add_argument("--random-shape", default=None, help="a shape of benchmarks/engine.py")
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--system-tokens", default="2048",
                    type=lambda s: [int(x) for x in s.split(",")],
                    help="comma-separated shared-prefix sizes")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--turns", type=int, default=10, help="chat turns (0: no chat)")
    ap.add_argument("--chat-system-tokens", type=int, default=512)
    ap.add_argument("--siblings", type=int, default=0,
                    help="other questions on the same system prefix sent (untimed) before "
                         "each hit: the store then holds that many entries sharing it")
    ap.add_argument("--answer-tokens", type=int, default=32)
    ap.add_argument("--max-num-batched-tokens", type=int, default=None)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    if args.model is None and args.random_shape is None:
        args.model = "smollm2-135m"
    return args


def report(result: dict) -> None:
    for row in result["shared_prefix"]:
        print(f"{row['system_tokens']:>6} shared tokens: cold {row['cold_ttft_s']['median']:.4f}"
              f" s, hit {row['hit_ttft_s']['median']:.4f} s, cold/hit "
              f"{row['cold_over_hit']:.1f}x, floor (question alone) "
              f"{row['floor_ttft_s']['median']:.4f} s", file=sys.stderr)
    if "chat" in result:
        c = result["chat"]
        print(f"chat, {c['turns']} turns: prefilled {c['prefilled_tokens_total']}, "
              f"{100 * c['prefilled_fewer_fraction']:.0f}% fewer with the cache; TTFT sum "
              f"{c['ttft_total_s']}; answers equal: {c['answers_equal']}", file=sys.stderr)


def main(argv=None) -> dict:
    args = parse_args(argv)
    result = asyncio.run(run(args))
    report(result)
    print(json.dumps(result, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
