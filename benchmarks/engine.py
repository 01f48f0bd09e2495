"""Engine throughput against mlx-lm, measured in one run on one model.

    python benchmarks/engine.py --model smollm2-135m --prompt-len 128 --gen-len 128
    python benchmarks/engine.py --random-shape qwen3-8b --dtype bfloat16 --out r.json

Measures (all greedy, EOS ignored, token ids only):
  1. mlx_lm.stream_generate decode tokens/s at one request (generate_step when the model
     has no tokenizer, e.g. --random-shape: the same decode loop without detokenizing);
  2. the engine (AsyncEngine) decode tokens/s at one request: ratio to (1);
  3. aggregate tokens/s (all generated tokens / wall time, prefill included) of the engine
     and of mlx_lm's BatchGenerator at each --concurrency: ratio engine / BatchGenerator.
Fairness: before its timed runs each side runs every concurrency level once untimed
(--warmup-tokens per request), so neither pays for first-use compilation in its timed runs
(MLX's CUDA backend compiles some kernels, and builds cuDNN attention graphs per shape, on
first use; the side that ran first used to pay for both). Timed runs of the two sides are
interleaved, the side that goes first alternating from one repeat to the next (batch 1
too), so slow drifts of the machine hit both sides alike. Every number is the median of
--repeats (default 5) timed runs, reported with its min and max; a ratio is median over
median, with the range of the ratios of the repeats' adjacent pairs beside it.
BatchGenerator gets the engine's batching knobs: the whole burst in one prefill batch
(prefill_batch_size = completion_batch_size = concurrency), the engine's prefill chunk as
its prefill_step_size.
For --random-shape it also reports batch-1 decode as a fraction of the bandwidth limit
(weight bytes / --bandwidth-gbs).

Depends only on mlx, mlx-lm, numpy and mlxserve.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import mlxserve  # noqa: E402,F401  (binds MLX to OpenBLAS on Linux CPU before mlx.core)
import mlx.core as mx  # noqa: E402
import numpy as np  # noqa: E402

from mlxserve.cache import row_attention  # noqa: E402
from mlxserve.config import EngineConfig, ModelConfig  # noqa: E402
from mlxserve.engine.client import AsyncEngine  # noqa: E402
from mlxserve.engine.request import GenerateRequest, SamplingParams, StopParams  # noqa: E402

RANDOM_SHAPES = {
    # a smoke-test shape: checks the script end to end in seconds on any machine
    "qwen3-tiny": dict(hidden_size=64, num_hidden_layers=2, intermediate_size=128,
                       num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                       tie_word_embeddings=True),
    "qwen3-0.6b": dict(hidden_size=1024, num_hidden_layers=28, intermediate_size=3072,
                       num_attention_heads=16, num_key_value_heads=8, head_dim=128,
                       tie_word_embeddings=True),
    "qwen3-8b": dict(hidden_size=4096, num_hidden_layers=36, intermediate_size=12288,
                     num_attention_heads=32, num_key_value_heads=8, head_dim=128,
                     tie_word_embeddings=False),
}


METHOD = ("warmed; sides interleaved, first side alternating; median of the repeats with "
          "min/max; BatchGenerator with prefill_batch_size = the burst")


def spread(values: list[float]) -> dict:
    """min / median / max of the repeats, and the runs themselves."""
    return dict(min=min(values), median=float(np.median(values)), max=max(values),
                runs=[round(v, 3) for v in values])


@dataclass
class Results:
    device: str
    model: str
    dtype: str
    prompt_len: int
    gen_len: int
    weight_bytes: int
    repeats: int = 0
    method: str = METHOD
    reference_tps: float = 0.0  # median; *_spread: min / median / max / runs
    reference_tps_spread: dict = field(default_factory=dict)
    parity: list[dict] = field(default_factory=list)  # engine vs single-stream greedy ids
    engine_b1_tps: float = 0.0
    engine_b1_tps_spread: dict = field(default_factory=dict)
    engine_b1_ratio: float = 0.0
    engine_b1_pair_ratios: dict = field(default_factory=dict)
    bandwidth_fraction: float | None = None
    concurrency: list[dict] = field(default_factory=list)
    load_average_1m_start_end: list = field(default_factory=list)  # how busy the machine was


def build_random_model(shape: str, dtype: str):
    from mlx.utils import tree_flatten, tree_map
    from mlx_lm.models import qwen3

    args = qwen3.ModelArgs.from_dict(dict(
        RANDOM_SHAPES[shape], model_type="qwen3", rms_norm_eps=1e-6, vocab_size=151936,
        max_position_embeddings=40960, rope_theta=1_000_000.0,
    ))
    mx.random.seed(0)
    model = qwen3.Model(args)
    target = getattr(mx, dtype)
    model.update(tree_map(lambda p: p.astype(target), model.parameters()))
    for _, p in tree_flatten(model.parameters()):  # one tensor at a time: low peak memory
        mx.eval(p)
    config = dict(RANDOM_SHAPES[shape], model_type="qwen3", vocab_size=151936,
                  max_position_embeddings=40960)
    return model, config


def loaded_model_for(model, config: dict, tokenizer, name: str, dtype: str):
    from mlxserve.models import LoadedModel, ModelCapabilities

    caps = ModelCapabilities(model_type=config.get("model_type", ""),
                             context_length=config.get("max_position_embeddings", 4096),
                             vocab_size=config["vocab_size"], dtype=dtype)
    eos = set(getattr(tokenizer, "eos_token_ids", set()) or set())
    return LoadedModel(model=model, tokenizer=tokenizer, capabilities=caps, name=name,
                       path="", eos_token_ids=eos, config=config)


def weight_bytes(model) -> int:
    from mlx.utils import tree_flatten

    return sum(p.nbytes for _, p in tree_flatten(model.parameters()))


def make_prompts(n: int, length: int, vocab: int, seed: int = 0) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    return [rng.integers(100, min(vocab, 30000), size=length).tolist() for _ in range(n)]


def reference_run(model, tokenizer, prompt: list[int], gen_len: int) -> tuple[float, list]:
    """mlx-lm's single-stream loop: decode tokens/s, (tokens - 1) / (last - first) (the
    clock the engine is measured with), and the greedy token ids."""
    from mlx_lm.generate import generate_step, stream_generate

    stamps, tokens = [], []
    if tokenizer is not None:
        saved, tokenizer.eos_token_ids = tokenizer.eos_token_ids, set()
        try:
            for r in stream_generate(model, tokenizer, prompt, max_tokens=gen_len):
                stamps.append(time.perf_counter())
                tokens.append(r.token)
        finally:
            tokenizer.eos_token_ids = saved
    else:
        for token, _ in generate_step(mx.array(prompt), model, max_tokens=gen_len):
            stamps.append(time.perf_counter())
            tokens.append(int(token))
    return (len(stamps) - 1) / (stamps[-1] - stamps[0]), tokens


def parity(where: str, engine_tokens: list[int], reference_tokens: list[int]) -> dict:
    """Where the engine's greedy ids first differ from single-stream mlx-lm (None: never)."""
    first = next((k for k, (a, b) in enumerate(zip(engine_tokens, reference_tokens)) if a != b),
                 None if len(engine_tokens) == len(reference_tokens) else
                 min(len(engine_tokens), len(reference_tokens)))
    return dict(where=where, identical=first is None, first_difference=first)


async def engine_run(engine: AsyncEngine, prompts: list[list[int]], gen_len: int, tag: str):
    """Run all prompts concurrently; returns (wall seconds, total tokens, b1 decode tps)."""
    async def one(i: int, prompt: list[int]):
        req = GenerateRequest(f"{tag}-{i}", prompt, SamplingParams(temperature=0.0),
                              StopParams(max_tokens=gen_len, ignore_eos=True))
        stamps, tokens = [], []
        async for delta in engine.generate(req):
            if delta.token_ids:
                stamps.append(time.perf_counter())
                tokens += delta.token_ids
        return stamps, tokens

    start = time.perf_counter()
    runs = await asyncio.gather(*(one(i, p) for i, p in enumerate(prompts)))
    wall = time.perf_counter() - start
    total = sum(len(s) for s, _ in runs)
    first = runs[0][0]
    decode_tps = (len(first) - 1) / (first[-1] - first[0]) if len(first) > 1 else 0.0
    return wall, total, decode_tps, [t for _, t in runs]


def batch_generator_run(model, prompts: list[list[int]], gen_len: int,
                        prefill_step: int) -> tuple[float, int]:
    """mlx-lm's BatchGenerator on the burst, with the engine's knobs: every prompt admitted
    at once (prefill and completion batch = the burst), the engine's prefill chunk."""
    from mlx_lm.generate import BatchGenerator

    gen = BatchGenerator(model, max_tokens=gen_len, completion_batch_size=len(prompts),
                         prefill_batch_size=len(prompts), prefill_step_size=prefill_step)
    with row_attention.mlx_attention():  # mlx-lm as users run it
        start = time.perf_counter()
        gen.insert(prompts, [gen_len] * len(prompts))
        total = 0
        while responses := gen.next_generated():
            total += len(responses)
        wall = time.perf_counter() - start
    gen.close()
    return wall, total


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    src = ap.add_mutually_exclusive_group()
    src.add_argument("--model", default=None, help="HF folder, .gguf, hub id or alias")
    src.add_argument("--random-shape", choices=sorted(RANDOM_SHAPES), default=None)
    ap.add_argument("--dtype", default="auto", help="auto | float32 | bfloat16 | float16")
    ap.add_argument("--prompt-len", type=int, default=128)
    ap.add_argument("--gen-len", type=int, default=128)
    ap.add_argument("--concurrency", default="8,32,64,128",
                    help="comma-separated concurrent request counts")
    ap.add_argument("--bandwidth-gbs", type=float, default=3000.0,
                    help="memory bandwidth for the limit (H100 copy bandwidth ~3000 GB/s)")
    ap.add_argument("--repeats", type=int, default=5,
                    help="timed runs per side and level (interleaved); median, min, max")
    ap.add_argument("--max-num-batched-tokens", type=int, default=None,
                    help="engine step token budget (default: EngineConfig.token_budget)")
    ap.add_argument("--warmup-tokens", type=int, default=16,
                    help="tokens per request of the untimed run of each concurrency level")
    ap.add_argument("--parity-checks", type=int, default=4,
                    help="requests per concurrency level whose greedy ids are compared with "
                         "single-stream mlx-lm")
    ap.add_argument("--out", default=None, help="write results JSON here")
    args = ap.parse_args(argv)
    if args.model is None and args.random_shape is None:
        args.model = "smollm2-135m"
    return args


def load(args) -> tuple:
    if args.random_shape:
        dtype = "bfloat16" if args.dtype == "auto" else args.dtype
        model, config = build_random_model(args.random_shape, dtype)
        return loaded_model_for(model, config, None, args.random_shape, dtype)
    from mlxserve.models import load_model

    return load_model(ModelConfig(model=args.model, dtype=args.dtype))


def prefill_chunk(args) -> int:
    return max(512, args.prompt_len)


async def batch1_runs(engine, loaded, args, res: Results, prompt: list[int]) -> tuple:
    """Batch-1 decode, engine vs mlx-lm, interleaved; the side going first alternates."""
    ref_tps, engine_tps, ref_ids, ids = [], [], [], []
    for r in range(args.repeats):
        for side in ("ref", "engine") if r % 2 == 0 else ("engine", "ref"):
            if side == "ref":
                tps, ref_ids = reference_run(loaded.model, loaded.tokenizer, prompt,
                                             args.gen_len)
                ref_tps.append(tps)
            else:
                _, _, tps, ids = await engine_run(engine, [prompt], args.gen_len, f"b1-{r}")
                engine_tps.append(tps)
    res.reference_tps_spread, res.engine_b1_tps_spread = spread(ref_tps), spread(engine_tps)
    res.reference_tps = res.reference_tps_spread["median"]
    res.engine_b1_tps = res.engine_b1_tps_spread["median"]
    res.engine_b1_pair_ratios = spread([e / r for e, r in zip(engine_tps, ref_tps)])
    return ids[0], ref_ids


async def concurrency_row(engine, loaded, args, n: int, prompts: list) -> tuple[dict, list]:
    """Aggregate tokens/s at ``n`` concurrent requests: engine vs BatchGenerator."""
    # untimed: first-use compilation (CUDA kernels, cuDNN graphs) of this level's shapes
    await engine_run(engine, prompts, args.warmup_tokens, f"warm{n}")
    batch_generator_run(loaded.model, prompts, args.warmup_tokens, prefill_chunk(args))
    engine_tps, bg_tps, ids, total = [], [], [], 0
    for r in range(args.repeats):  # the side going first alternates
        for side in ("engine", "bg") if r % 2 == 0 else ("bg", "engine"):
            if side == "bg":
                wall, count = batch_generator_run(loaded.model, prompts, args.gen_len,
                                                  prefill_chunk(args))
                bg_tps.append(count / wall)
            else:
                wall, total, _, ids = await engine_run(engine, prompts, args.gen_len, f"c{n}-{r}")
                engine_tps.append(total / wall)
    row = dict(n=n, engine_tps=float(np.median(engine_tps)),
               batch_generator_tps=float(np.median(bg_tps)), engine_tokens=total)
    row.update(ratio=row["engine_tps"] / row["batch_generator_tps"],
               engine_tps_spread=spread(engine_tps), batch_generator_tps_spread=spread(bg_tps),
               pair_ratios=spread([e / b for e, b in zip(engine_tps, bg_tps)]))
    return row, ids


async def run_engine_side(loaded, args, res: Results, prompts_for) -> tuple[dict, list]:
    max_n = max([1] + args.concurrency)
    cfg = EngineConfig(max_num_seqs=max_n, max_num_batched_tokens=args.max_num_batched_tokens,
                       prefill_chunk_size=prefill_chunk(args), kv_cache_memory_bytes=None)
    engine = AsyncEngine(ModelConfig(model=res.model), cfg, loader=lambda _cfg: loaded)
    await engine.start()
    try:
        await engine_run(engine, prompts_for(1, 99), 8, "warm")
        reference_run(loaded.model, loaded.tokenizer, prompts_for(1, 99)[0], 8)  # warm-up
        b1_ids, b1_ref_ids = await batch1_runs(engine, loaded, args, res, prompts_for(1, 0)[0])
        engine_ids = {("b1", 0): b1_ids}
        for n in args.concurrency:
            row, ids = await concurrency_row(engine, loaded, args, n, prompts_for(n, n))
            res.concurrency.append(row)
            engine_ids.update({(f"c{n}", k): ids[k] for k in range(min(n, args.parity_checks))})
        return engine_ids, b1_ref_ids
    finally:
        await engine.shutdown()


def main(argv=None) -> Results:
    args = parse_args(argv)
    args.concurrency = [int(x) for x in str(args.concurrency).split(",") if x]
    loaded = load(args)
    vocab = loaded.capabilities.vocab_size or loaded.config.get("vocab_size")
    device = f"{mx.default_device()} {mx.device_info().get('device_name', platform.processor())}"
    res = Results(device=device, model=loaded.name, dtype=loaded.capabilities.dtype,
                  prompt_len=args.prompt_len, gen_len=args.gen_len,
                  weight_bytes=weight_bytes(loaded.model), repeats=args.repeats)

    def prompts_for(n: int, seed: int) -> list[list[int]]:
        return make_prompts(n, args.prompt_len, vocab, seed)

    load_start = os.getloadavg()[0]
    engine_ids, b1_ref_ids = asyncio.run(run_engine_side(loaded, args, res, prompts_for))
    res.load_average_1m_start_end = [round(load_start, 2), round(os.getloadavg()[0], 2)]
    for (where, k), ids in engine_ids.items():
        prompt = prompts_for(1, 0)[0] if where == "b1" else prompts_for(int(where[1:]),
                                                                         int(where[1:]))[k]
        ref = b1_ref_ids if where == "b1" else reference_run(
            loaded.model, loaded.tokenizer, prompt, args.gen_len)[1]
        res.parity.append(parity(f"{where}[{k}]", ids, ref))
    res.engine_b1_ratio = res.engine_b1_tps / res.reference_tps
    if args.random_shape:
        limit = args.bandwidth_gbs * 1e9 / res.weight_bytes
        res.bandwidth_fraction = res.engine_b1_tps / limit
    report(res, args)
    return res


def fmt(values: dict, digits: int = 1) -> str:
    return (f"{values['median']:.{digits}f} [{values['min']:.{digits}f}-"
            f"{values['max']:.{digits}f}]")


def report(res: Results, args) -> None:
    print(f"device: {res.device}   model: {res.model} ({res.dtype}, "
          f"{res.weight_bytes / 1e9:.2f} GB of weights)")
    print(f"prompt {res.prompt_len} tokens, generate {res.gen_len} tokens, greedy")
    print(f"medians of {res.repeats} interleaved runs [min-max]")
    print(f"batch 1 decode: mlx-lm {fmt(res.reference_tps_spread)} tok/s   engine "
          f"{fmt(res.engine_b1_tps_spread)} tok/s   ratio {res.engine_b1_ratio:.3f} "
          f"(per pair {fmt(res.engine_b1_pair_ratios, 2)})")
    if res.bandwidth_fraction is not None:
        limit = args.bandwidth_gbs * 1e9 / res.weight_bytes
        print(f"bandwidth limit at {args.bandwidth_gbs:.0f} GB/s: {limit:.1f} tok/s; engine "
              f"reaches {res.bandwidth_fraction:.1%}")
    for row in res.concurrency:
        print(f"concurrency {row['n']:4d}: engine {fmt(row['engine_tps_spread'])} tok/s   "
              f"BatchGenerator {fmt(row['batch_generator_tps_spread'])} tok/s   "
              f"ratio {row['ratio']:.3f} (per pair {fmt(row['pair_ratios'], 2)})")
    same = sum(p["identical"] for p in res.parity)
    diffs = [p["first_difference"] for p in res.parity if not p["identical"]]
    print(f"greedy parity with single-stream mlx-lm: {same}/{len(res.parity)} requests "
          f"identical" + (f"; first differences at tokens {sorted(diffs)}" if diffs else ""))
    if args.out:
        Path(args.out).write_text(json.dumps(asdict(res), indent=1))
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
