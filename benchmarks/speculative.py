"""Speculative decoding on vs off, measured in one run on one model.

    python benchmarks/speculative.py --method ngram --model smollm2-135m --batches 1,8
    python benchmarks/speculative.py --method ngram --model /root/models/qwen0.5b.gguf \
        --batches 1,8,32,64 --max-tokens 256 --out results/speculative_ngram_h200.json

``--method ngram``: an "edit this file" workload (the answer repeats the file with one
name changed, so prompt lookup finds most of it), greedy, EOS ignored up to --max-tokens.
Two engines on the same model, one with ``--speculative-config`` (adaptive: the back-off
decides per step, as served), one without; both warmed at every batch size first, then
the timed runs interleave, the side going first alternating per repeat. Per batch size:
aggregate output tokens/s (median of --repeats, min and max), the ratio on/off, the
acceptance counters of the timed runs, and whether the outputs were identical (greedy: they
must be). Targets (issue 18): >= 2x at batch 1, >= 0.98x at 8 / 32 / 64.
Other methods (draft_model, mtp) add their own ``run_<method>`` next to ``run_ngram``.
Runs wherever MLX runs (CPU, Metal, CUDA): nothing device-specific.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mlxserve.config import EngineConfig, ModelConfig  # noqa: E402
from mlxserve.engine.client import AsyncEngine  # noqa: E402
from mlxserve.engine.request import GenerateRequest, SamplingParams, StopParams  # noqa: E402
from mlxserve.spec.settings import parse_speculative_config  # noqa: E402

FILE = '''import json
from pathlib import Path


class Inventory:
    """Items in stock, saved as JSON."""

    def __init__(self, path):
        self.path = Path(path)
        self.items = {}

    def load(self):
        if self.path.exists():
            self.items = json.loads(self.path.read_text())
        return self.items

    def add(self, name, count):
        self.items[name] = self.items.get(name, 0) + count
        self.save()

    def remove(self, name, count):
        left = self.items.get(name, 0) - count
        if left < 0:
            raise ValueError(f"not enough {name}")
        self.items[name] = left
        self.save()

    def save(self):
        self.path.write_text(json.dumps(self.items, indent=2))
'''
EDITS = ["Rename the method `add` to `put`", "Rename the attribute `items` to `stock`",
         "Rename the parameter `count` to `amount`", "Rename the class to `Store`"]


def edit_prompts(tokenizer, n: int) -> list[list[int]]:
    prompts = []
    for i in range(n):
        text = (f"{EDITS[i % len(EDITS)]} in this file and print the whole file, nothing "
                f"else:\n\n```python\n{FILE}```")
        messages = [{"role": "user", "content": text}]
        prompts.append(list(tokenizer.apply_chat_template(messages, add_generation_prompt=True)))
    return prompts


async def _burst(engine: AsyncEngine, prompts: list[list[int]], max_tokens: int, tag: str):
    async def one(i: int, prompt: list[int]) -> list[int]:
        request = GenerateRequest(f"{tag}-{i}", prompt, SamplingParams(temperature=0.0),
                                  StopParams(max_tokens=max_tokens, ignore_eos=True))
        tokens = []
        async for delta in engine.generate(request):
            tokens += delta.token_ids
        return tokens

    started = time.perf_counter()
    outputs = await asyncio.gather(*[one(i, p) for i, p in enumerate(prompts)])
    seconds = time.perf_counter() - started
    return sum(len(o) for o in outputs) / seconds, outputs


def _counters(engine: AsyncEngine) -> dict:
    stats = engine.stats()
    return dict(drafts=stats.spec_decode_num_drafts, draft_tokens=stats.spec_decode_num_draft_tokens,
                accepted=stats.spec_decode_num_accepted_tokens)


async def run_ngram(args) -> dict:
    spec = parse_speculative_config(json.dumps({
        "method": "ngram", "num_speculative_tokens": args.k, "prompt_lookup_min": 2,
        "prompt_lookup_max": 5, "adaptive": not args.always}))
    model = ModelConfig(model=args.model, dtype=args.dtype)
    common = dict(max_num_seqs=max(args.batches), enable_prefix_caching=False)
    on = AsyncEngine(model, EngineConfig(speculative=spec, **common))
    off = AsyncEngine(model, EngineConfig(**common))
    await on.start()
    await off.start()
    try:
        return await _compare(args, on, off)
    finally:
        await on.shutdown()
        await off.shutdown()


async def _compare(args, on: AsyncEngine, off: AsyncEngine) -> dict:
    results = {}
    for batch in args.batches:
        prompts = edit_prompts(on.model.tokenizer, batch)
        for engine in (on, off):  # warm every shape on both sides, untimed
            await _burst(engine, prompts, args.warmup_tokens, "warm")
        rates = {"on": [], "off": []}
        before, same = _counters(on), True
        for repeat in range(args.repeats):
            order = [("on", on), ("off", off)] if repeat % 2 == 0 else [("off", off), ("on", on)]
            outs = {}
            for name, engine in order:
                rate, outs[name] = await _burst(engine, prompts, args.max_tokens, f"{name}{repeat}")
                rates[name].append(rate)
            same = same and outs["on"] == outs["off"]
        after = _counters(on)
        results[batch] = _summary(rates, before, after, same)
        print(json.dumps({"batch": batch, **results[batch]}), flush=True)
    return results


def _summary(rates: dict, before: dict, after: dict, same: bool) -> dict:
    med = {k: statistics.median(v) for k, v in rates.items()}
    drafts = after["drafts"] - before["drafts"]
    proposed = after["draft_tokens"] - before["draft_tokens"]
    accepted = after["accepted"] - before["accepted"]
    return dict(
        tok_s_on=round(med["on"], 2), tok_s_off=round(med["off"], 2),
        range_on=[round(min(rates["on"]), 2), round(max(rates["on"]), 2)],
        range_off=[round(min(rates["off"]), 2), round(max(rates["off"]), 2)],
        ratio=round(med["on"] / med["off"], 3), greedy_identical=same,
        acceptance_rate=round(accepted / proposed, 3) if proposed else 0.0,
        mean_accepted_length=round(1 + accepted / drafts, 3) if drafts else 0.0,
        verified_rows=drafts)


def _device() -> str:
    import mlx.core as mx

    info = mx.device_info() if hasattr(mx, "device_info") else {}
    name = info.get("device_name") or str(mx.default_device())
    return f"{name} ({platform.machine()}, {platform.processor() or platform.system()})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--method", choices=["ngram"], default="ngram")
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--batches", default="1,8,32,64",
                        type=lambda s: [int(x) for x in s.split(",")])
    parser.add_argument("--max-tokens", type=int, default=192)
    parser.add_argument("--warmup-tokens", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("-k", type=int, default=5, help="num_speculative_tokens")
    parser.add_argument("--always", action="store_true",
                        help="speculate on every step (no back-off): the verify's own cost")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    runs = {"ngram": run_ngram}
    results = asyncio.run(runs[args.method](args))
    record = dict(method=args.method, model=args.model, device=_device(),
                  max_tokens=args.max_tokens, k=args.k, adaptive=not args.always,
                  repeats=args.repeats, results=results)
    print(json.dumps(record, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
