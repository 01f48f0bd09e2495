"""Speculative decoding against plain decode, measured in one run on one model.

    python benchmarks/speculative.py --method draft              # Qwen2.5-Coder 1.5B + 0.5B
    python benchmarks/speculative.py --method draft --target /root/models/qwen1.5b.gguf \\
        --draft /root/models/qwen0.5b.gguf --dtype bfloat16
    python benchmarks/speculative.py --method mtp --shape qwen3.5-tiny --batches 1 8 32
    python benchmarks/speculative.py --method ngram --model smollm2-135m --batches 1 8 32 64

Each method lives in its own functions (``run_<method>``); ``METHODS`` maps names to them.

--method draft: the real pair (target and draft from their GGUF packages or files), code
prompts rendered with the chat template, batch 1, greedy: per prompt a plain run and a
speculative run (interleaved, the first of each pair alternating), both on one loaded
target. Prints decode tokens/s of each (first to last token, prefill excluded), their
ratio, the acceptance rate (accepted / proposed tokens), the mean accepted length (1 +
accepted / verified drafts) and whether both runs gave the same tokens.

--method mtp: a Qwen3.5-shaped random model (built in memory) with a random MTP head
(written as ``mtp.*`` tensors into a temporary folder, loaded by the real adapter). Random
heads accept ~nothing, so this measures overhead: at each batch size, aggregate decode
tokens/s of plain decode, of MTP forced on every step (``adaptive: false``: the cost of a
verify step against a plain step is plain / forced), and of MTP with the engine's back-off
(adaptive: must stay within 2% of plain). The back-off learns per batch size (it probes
after pauses that double from 64 up to 4,096 steps); --settle N runs the adaptive engine for N
tokens at each batch size before the timed runs, as a server that has been up a while
(0: the timed runs include the learning, as a fresh server's first requests do).

--method ngram: an "edit this file" workload (the answer repeats a file with one name
changed, so prompt lookup finds most of it), greedy, EOS ignored up to --gen-len. Two
engines on one --model, with and without ``{"method": "ngram", ...}`` (adaptive: the
back-off decides per step, as served; --no-adaptive verifies every step), both warmed at
every batch size first, the timed runs interleaved (the side going first alternating).
Per batch size: aggregate output tokens/s (all tokens / wall time of the burst), the ratio
on/off, the acceptance counters and whether the outputs were identical (greedy: they must
be). Targets (issue 18): >= 2x at batch 1, >= 0.98x at 8 / 32 / 64.

Every number is the median of --repeats runs with its min and max. Depends only on mlx,
mlx-lm, numpy and mlxserve.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import mlxserve  # noqa: E402,F401  (binds MLX to OpenBLAS on Linux CPU before mlx.core)
import mlx.core as mx  # noqa: E402

from engine import make_prompts, spread  # noqa: E402
from mlxserve.config import EngineConfig, ModelConfig, SpeculativeConfig  # noqa: E402
from mlxserve.engine.client import AsyncEngine  # noqa: E402
from mlxserve.engine.request import GenerateRequest, SamplingParams, StopParams  # noqa: E402

CODE_PROMPTS = [
    "Write a Python function that parses a CSV file into a list of dictionaries, with a "
    "docstring and type hints.",
    "Implement binary search over a sorted list in Python and add unit tests with pytest.",
    "Write a JavaScript function that debounces another function, with comments.",
    "Write a Python class for an LRU cache with get and put methods.",
]


# ---- shared ------------------------------------------------------------------------------
def device_name() -> str:
    info = mx.device_info() if hasattr(mx, "device_info") else {}
    name = info.get("device_name") or str(mx.default_device())
    return f"{name} ({platform.machine()}, {platform.processor() or platform.system()})"


def start_engine(loaded, speculative: SpeculativeConfig | None, max_seqs: int) -> AsyncEngine:
    config = EngineConfig(max_num_seqs=max(max_seqs, 1), speculative=speculative,
                          enable_prefix_caching=False)
    return AsyncEngine(ModelConfig(model=loaded.name), config, loader=lambda _c: loaded)


async def timed_requests(engine: AsyncEngine, prompts: list[list[int]], gen_len: int,
                         tag: str) -> tuple[float, list[list[int]]]:
    """All prompts at once, greedy, EOS ignored: (decode tokens/s over the batch once
    every row decodes, token ids per request). A delta may carry several tokens."""
    async def one(i: int, prompt: list[int]):
        request = GenerateRequest(f"{tag}-{i}", prompt, SamplingParams(temperature=0.0),
                                  StopParams(max_tokens=gen_len, ignore_eos=True))
        stamps, tokens = [], []
        async for delta in engine.generate(request):
            if delta.token_ids:
                stamps.append((time.perf_counter(), len(delta.token_ids)))
                tokens += delta.token_ids
        return stamps, tokens

    runs = await asyncio.gather(*(one(i, p) for i, p in enumerate(prompts)))
    first = max(s[0][0] for s, _ in runs)  # from when every row decodes
    last = max(s[-1][0] for s, _ in runs)
    decoded = sum(n for s, _ in runs for t, n in s if t > first)
    return decoded / max(last - first, 1e-9), [t for _, t in runs]


def spec_counters(engine: AsyncEngine) -> dict:
    """The engine's speculative counters (zeros when it reports none)."""
    stats = engine.stats()
    found = getattr(stats, "spec_decode", None) or {}
    if not isinstance(found, dict):
        found = found.as_dict() if hasattr(found, "as_dict") else vars(found)
    if found and all(isinstance(v, dict) for v in found.values()):  # per method
        found = next(iter(found.values()))
    return {k: found.get(k, 0) for k in ("num_drafts", "num_draft_tokens",
                                         "num_accepted_tokens")}


def counter_delta(before: dict, after: dict) -> dict:
    return {k: after[k] - before[k] for k in before}


# ---- --method draft ----------------------------------------------------------------------
def chat_prompts(tokenizer, count: int) -> list[list[int]]:
    prompts = []
    for text in (CODE_PROMPTS * count)[:count]:
        ids = tokenizer.apply_chat_template([{"role": "user", "content": text}],
                                            add_generation_prompt=True, tokenize=True)
        prompts.append(list(ids))
    return prompts


async def draft_pair(plain, spec, prompt: list[int], gen_len: int, tag: str,
                     spec_first: bool) -> dict:
    runs = {}
    for name in (("spec", "plain") if spec_first else ("plain", "spec")):
        engine = spec if name == "spec" else plain
        before = spec_counters(engine)
        tps, tokens = await timed_requests(engine, [prompt], gen_len, f"{tag}-{name}")
        runs[name] = dict(tps=tps, tokens=tokens[0],
                          counters=counter_delta(before, spec_counters(engine)))
    return runs


def run_draft(args) -> dict:
    from mlxserve.models import load_model

    target = load_model(ModelConfig(model=args.target, dtype=args.dtype))
    prompts = chat_prompts(target.tokenizer, args.prompts)
    speculative = SpeculativeConfig(method="draft_model", model=args.draft,
                                    num_speculative_tokens=args.k,
                                    options={"adaptive": args.adaptive})

    async def main() -> list[dict]:
        plain, spec = start_engine(target, None, 1), start_engine(target, speculative, 1)
        await plain.start()
        await spec.start()
        try:
            await draft_pair(plain, spec, prompts[0], 16, "warm", False)  # compile / warm
            pairs = []
            for r in range(args.repeats):
                for i, prompt in enumerate(prompts):
                    pairs.append(await draft_pair(plain, spec, prompt, args.gen_len,
                                                  f"r{r}p{i}", (r + i) % 2 == 1))
            return pairs
        finally:
            await spec.shutdown()
            await plain.shutdown()

    return draft_summary(asyncio.run(main()), args)


def draft_summary(pairs: list[dict], args) -> dict:
    counters = {k: sum(p["spec"]["counters"][k] for p in pairs)
                for k in ("num_drafts", "num_draft_tokens", "num_accepted_tokens")}
    proposed, accepted = counters["num_draft_tokens"], counters["num_accepted_tokens"]
    return dict(
        method="draft", device=device_name(), target=args.target, draft=args.draft,
        k=args.k, adaptive=args.adaptive, gen_len=args.gen_len, runs=len(pairs),
        plain_tps=spread([p["plain"]["tps"] for p in pairs]),
        spec_tps=spread([p["spec"]["tps"] for p in pairs]),
        speedup=spread([p["spec"]["tps"] / p["plain"]["tps"] for p in pairs]),
        acceptance_rate=accepted / proposed if proposed else 0.0,
        mean_accepted_length=1 + accepted / counters["num_drafts"]
        if counters["num_drafts"] else 0.0,
        counters=counters,
        identical=all(p["plain"]["tokens"] == p["spec"]["tokens"] for p in pairs))


# ---- --method mtp ------------------------------------------------------------------------
MTP_SHAPES = {
    # a smoke-test shape: the script end to end in seconds on any machine
    "qwen3.5-tiny": dict(hidden_size=64, num_hidden_layers=4, intermediate_size=128,
                         num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                         linear_num_value_heads=2, linear_num_key_heads=2,
                         linear_key_head_dim=16, linear_value_head_dim=16,
                         vocab_size=4096),
    # Qwen3.5-27B's published text shape
    "qwen3.5-27b": dict(hidden_size=5120, num_hidden_layers=64, intermediate_size=17408,
                        num_attention_heads=24, num_key_value_heads=4, head_dim=256,
                        linear_num_value_heads=48, linear_num_key_heads=16,
                        linear_key_head_dim=128, linear_value_head_dim=128,
                        vocab_size=248320),
    # a small member of the family (same layer pattern, ~2B parameters)
    "qwen3.5-2b": dict(hidden_size=2048, num_hidden_layers=24, intermediate_size=6144,
                       num_attention_heads=8, num_key_value_heads=2, head_dim=256,
                       linear_num_value_heads=16, linear_num_key_heads=16,
                       linear_key_head_dim=128, linear_value_head_dim=128,
                       vocab_size=248320),
}


def mtp_text_config(shape: str) -> dict:
    return dict(MTP_SHAPES[shape], model_type="qwen3_5_text", rms_norm_eps=1e-6,
                linear_conv_kernel_dim=4, full_attention_interval=4,
                tie_word_embeddings=False, max_position_embeddings=32768,
                rope_parameters={"rope_type": "default", "rope_theta": 10_000_000.0,
                                 "partial_rotary_factor": 0.25},
                mtp_num_hidden_layers=1)


def _random_module(module, dtype) -> None:
    from mlx.utils import tree_flatten, tree_map

    module.update(tree_map(lambda p: p.astype(dtype), module.parameters()))
    for _, p in tree_flatten(module.parameters()):  # one tensor at a time: low peak
        mx.eval(p)


def build_mtp_target(shape: str, dtype_name: str, folder: str):
    """A random Qwen3.5-shaped LoadedModel whose "checkpoint folder" holds only its random
    ``mtp.*`` tensors (MLX norm convention: no conv1d there, so none is shifted)."""
    from mlx.utils import tree_flatten
    from mlx_lm.models import qwen3_5

    from mlxserve.models import LoadedModel, ModelCapabilities
    from mlxserve.models.mtp import MTPHead

    dtype = getattr(mx, dtype_name)
    config = {"model_type": "qwen3_5", "text_config": mtp_text_config(shape)}
    mx.random.seed(0)
    model = qwen3_5.Model(qwen3_5.ModelArgs.from_dict(json.loads(json.dumps(config))))
    _random_module(model, dtype)
    head = MTPHead(model.language_model.args, 1, moe=False)
    _random_module(head, dtype)
    mx.save_safetensors(str(Path(folder) / "mtp.safetensors"),
                        {f"mtp.{k}": v for k, v in tree_flatten(head.parameters())})
    caps = ModelCapabilities(model_type="qwen3_5", context_length=32768,
                             vocab_size=MTP_SHAPES[shape]["vocab_size"], has_mtp=True,
                             cache_trimmable=False, dtype=dtype_name)
    return LoadedModel(model=model, tokenizer=None, capabilities=caps, name=shape,
                       path=folder, config=config)


async def mtp_row(engines: dict, batch: int, args, vocab: int, repeat: int) -> dict:
    prompts = make_prompts(batch, args.prompt_len, vocab, seed=batch * 100 + repeat)
    order = list(engines)
    if repeat % 2:
        order.reverse()
    rates = {}
    for name in order:
        before = spec_counters(engines[name])
        rates[name], _ = await timed_requests(engines[name], prompts, args.gen_len,
                                              f"b{batch}r{repeat}{name}")
        if name == "forced":
            rates["forced_counters"] = counter_delta(before, spec_counters(engines[name]))
    return rates


def run_mtp(args) -> dict:
    dtype = ("float32" if mx.default_device().type == mx.cpu else "bfloat16") \
        if args.dtype == "auto" else args.dtype
    with tempfile.TemporaryDirectory() as folder:
        target = build_mtp_target(args.shape, dtype, folder)
        vocab = target.capabilities.vocab_size
        top = max(args.batches)
        configs = {"plain": None,
                   "forced": SpeculativeConfig(method="mtp", num_speculative_tokens=args.k,
                                               options={"adaptive": False}),
                   "adaptive": SpeculativeConfig(method="mtp", num_speculative_tokens=args.k)}

        async def main() -> dict:
            engines = {n: start_engine(target, c, top) for n, c in configs.items()}
            for engine in engines.values():
                await engine.start()
            try:
                warm = argparse.Namespace(**{**vars(args), "gen_len": 8})
                rows = {}
                for batch in args.batches:
                    await mtp_row(engines, batch, warm, vocab, 0)  # compile this shape
                    if args.settle:  # the back-off learns this batch size, untimed
                        await timed_requests(engines["adaptive"], make_prompts(
                            batch, args.prompt_len, vocab, seed=7), args.settle, "settle")
                    runs = [await mtp_row(engines, batch, args, vocab, r)
                            for r in range(args.repeats)]
                    rows[batch] = mtp_batch_summary(runs)
                return rows
            finally:
                for engine in engines.values():
                    await engine.shutdown()

        rows = asyncio.run(main())
    return dict(method="mtp", device=device_name(), shape=args.shape, dtype=dtype, k=args.k,
                gen_len=args.gen_len, prompt_len=args.prompt_len, settle=args.settle,
                batches=rows)


def mtp_batch_summary(runs: list[dict]) -> dict:
    return dict(plain_tps=spread([r["plain"] for r in runs]),
                forced_tps=spread([r["forced"] for r in runs]),
                adaptive_tps=spread([r["adaptive"] for r in runs]),
                verify_step_cost=spread([r["plain"] / r["forced"] for r in runs]),
                adaptive_vs_plain=spread([r["adaptive"] / r["plain"] for r in runs]),
                forced_counters={k: sum(r["forced_counters"][k] for r in runs)
                                 for k in runs[0]["forced_counters"]})


# ---- --method ngram ----------------------------------------------------------------------
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
        ids = list(tokenizer.apply_chat_template(messages, add_generation_prompt=True))
        # the answer starts as the file does (as edit tools prompt): the copy starts at once
        prompts.append(ids + list(tokenizer.encode("```python\n", add_special_tokens=False)))
    return prompts


def run_ngram(args) -> dict:
    from mlxserve.models import load_model

    loaded = load_model(ModelConfig(model=args.model, dtype=args.dtype))
    spec = SpeculativeConfig(method="ngram", num_speculative_tokens=args.k,
                             prompt_lookup_min=2, prompt_lookup_max=5,
                             options={"adaptive": args.adaptive})
    results = asyncio.run(_ngram_engines(args, loaded, spec))
    return dict(method="ngram", model=args.model, device=device_name(), k=args.k,
                gen_len=args.gen_len, adaptive=args.adaptive, repeats=args.repeats,
                batches=results)


async def _ngram_engines(args, loaded, spec) -> dict:
    on = start_engine(loaded, spec, max(args.batches))  # one loaded model, two engines
    off = start_engine(loaded, None, max(args.batches))
    await on.start()
    await off.start()
    try:
        return await _ngram_compare(args, on, off)
    finally:
        await on.shutdown()
        await off.shutdown()


async def _ngram_compare(args, on: AsyncEngine, off: AsyncEngine) -> dict:
    results = {}
    for batch in args.batches:
        prompts = edit_prompts(on.model.tokenizer, batch)
        for engine in (on, off):  # warm every shape on both sides, untimed
            await timed_requests(engine, prompts, 8, "warm")
        rates = {"on": [], "off": []}
        before, same = spec_counters(on), True
        for repeat in range(args.repeats):
            order = [("on", on), ("off", off)] if repeat % 2 == 0 else [("off", off), ("on", on)]
            outs = {}
            for name, engine in order:
                rate, outs[name] = await timed_requests(engine, prompts,
                                                       args.gen_len, f"{name}{repeat}")
                rates[name].append(rate)
            same = same and outs["on"] == outs["off"]
        after = spec_counters(on)
        results[batch] = _ngram_summary(rates, before, after, same)
        print(json.dumps({"batch": batch, **results[batch]}), flush=True)
    return results


def _ngram_summary(rates: dict, before: dict, after: dict, same: bool) -> dict:
    med = {k: statistics.median(v) for k, v in rates.items()}
    delta = counter_delta(before, after)
    drafts, proposed = delta["num_drafts"], delta["num_draft_tokens"]
    accepted = delta["num_accepted_tokens"]
    return dict(
        tok_s_on=round(med["on"], 2), tok_s_off=round(med["off"], 2),
        range_on=[round(min(rates["on"]), 2), round(max(rates["on"]), 2)],
        range_off=[round(min(rates["off"]), 2), round(max(rates["off"]), 2)],
        ratio=round(med["on"] / med["off"], 3), greedy_identical=same,
        acceptance_rate=round(accepted / proposed, 3) if proposed else 0.0,
        mean_accepted_length=round(1 + accepted / drafts, 3) if drafts else 0.0,
        verified_rows=drafts)


# ---- entry -------------------------------------------------------------------------------
METHODS = {"draft": run_draft, "mtp": run_mtp, "ngram": run_ngram}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--method", choices=sorted(METHODS), required=True)
    p.add_argument("--k", type=int, default=4, help="num_speculative_tokens")
    p.add_argument("--gen-len", type=int, default=128)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--dtype", default="auto")
    p.add_argument("--out", default=None, help="write the results as JSON here")
    draft = p.add_argument_group("--method draft")
    draft.add_argument("--target", default="qwen2.5-coder-1.5b")
    draft.add_argument("--draft", default="qwen2.5-coder-0.5b")
    draft.add_argument("--prompts", type=int, default=2, help="code prompts per repeat")
    draft.add_argument("--adaptive", action=argparse.BooleanOptionalAction, default=True,
                       help="the engine's back-off (off: verify every step)")
    mtp = p.add_argument_group("--method mtp")
    mtp.add_argument("--shape", choices=sorted(MTP_SHAPES), default="qwen3.5-tiny")
    mtp.add_argument("--batches", type=int, nargs="+", default=[1, 8, 32],
                     help="(also --method ngram)")
    mtp.add_argument("--prompt-len", type=int, default=64)
    mtp.add_argument("--settle", type=int, default=0,
                     help="untimed tokens of the adaptive engine per batch size first")
    ngram = p.add_argument_group("--method ngram")
    ngram.add_argument("--model", default="smollm2-135m", help="the target")
    return p.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    result = METHODS[args.method](args)
    print(json.dumps(result, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    return result


if __name__ == "__main__":
    main()
