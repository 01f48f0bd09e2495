"""SpecPrefill: quality (does the answer survive a sparse prefill?) and speed (TTFT), dense
against sparse, measured in one run through the engine (AsyncEngine, greedy).

    # quality: real target + draft (any source the server takes: alias, HF folder, .gguf)
    python benchmarks/specprefill.py quality --target qwen2.5-coder-1.5b \\
        --draft qwen2.5-coder-0.5b --lengths 4096 8192 16384 --cases 20 --keeps 0.3 0.1
    # speed: random-weight Qwen3-8B-shaped bf16 target, Qwen3-0.6B-shaped draft
    python benchmarks/specprefill.py speed --lengths 8192 32768 65536 --out r.json

quality: needle in a haystack (a fact at 10%..90% depth of --lengths-token filler, --cases
per length) and a multi-fact set (several facts in one haystack, each asked in turn);
accuracy per keep fraction (1 = dense, no draft run) and the TTFT of each prompt, so the
sparse / dense TTFT ratio comes from the same prompts.
speed: (1) TTFT of one prompt per --lengths, dense vs sparse (--keep); (2) --concurrent
prompts of --concurrent-len at once: time until all have their first token; (3) decode
tokens/s of --decoders short requests running alone, then while one long prompt
(--concurrent-len) is prefilled densely, then sparsely (its prefill chunks share every
step with their decodes). Each number is the median of --repeats; every (length, path)
is run once untimed first (the first prompt of a length pays MLX's first-use costs: 1.4 s
of 1.75 at 8k on an H200 in the fifth session, so one warm-up at 2k was not enough).
The device is MLX's default (CUDA on an NVIDIA machine, else CPU), or --device cpu.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import random
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import mlxserve  # noqa: E402,F401  (binds MLX to OpenBLAS on Linux CPU before mlx.core)
import mlx.core as mx  # noqa: E402
import numpy as np  # noqa: E402

from mlxserve.config import EngineConfig, ModelConfig, SpecPrefillConfig  # noqa: E402
from mlxserve.engine.client import AsyncEngine  # noqa: E402
from mlxserve.engine.request import (GenerateRequest, SamplingParams,  # noqa: E402
                                     SpecPrefillOptions, StopParams)

FILLER = [
    "The committee reviewed the annual budget and postponed the vote until spring.",
    "Rain fell steadily over the valley while the farmers repaired their fences.",
    "A new bridge connects the two halves of the old market town.",
    "The library extended its opening hours during the examination period.",
    "Several species of migratory birds rest at the lake each autumn.",
    "Engineers tested the cooling system of the data center for a week.",
    "The orchestra rehearsed the second movement more slowly than usual.",
    "Local bakers compete every year for the best rye bread in the region.",
    "The museum's new wing displays tools from the early iron age.",
    "Traffic on the coastal road doubled after the tunnel was closed.",
    "A volunteer group planted three hundred oak trees along the river.",
    "The school introduced a course on the history of navigation.",
]
CITIES = ["Oslo", "Lima", "Cairo", "Perth", "Quito", "Turin", "Hanoi", "Dakar", "Riga", "Bern"]
FACT_KINDS = [("locker number of {name}", "{name}'s locker number is {value}."),
              ("room number of {name}", "{name} works in room {value}."),
              ("badge code of {name}", "The badge code of {name} is {value}."),
              ("parking spot of {name}", "{name} parks in spot {value}."),
              ("phone extension of {name}", "The phone extension of {name} is {value}.")]
NAMES = ["Alice", "Bruno", "Chen", "Dana", "Emil", "Farah", "Goran", "Hana", "Ivo", "Jun"]
SYSTEM = "You answer questions about the document the user gives. Be brief."


def _machine(device: str) -> dict:
    info = {"device": device, "platform": platform.platform(), "python": platform.python_version(),
            "mlx": mx.__version__}
    try:
        info["device_name"] = mx.device_info().get("device_name")
    except Exception:  # older MLX
        pass
    return info


# ---- prompts ---------------------------------------------------------------------
def _encode(tokenizer, user: str) -> list[int]:
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]
    try:
        return list(tokenizer.apply_chat_template(messages, add_generation_prompt=True,
                                                  tokenize=True))
    except Exception:  # no chat template: ChatML (the Qwen families')
        text = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)
        return list(tokenizer.encode(text + "<|im_start|>assistant\n"))


def _haystack(tokenizer, length: int, facts: list[tuple[float, str]], question: str,
              rng: random.Random) -> list[int]:
    """Filler of about ``length`` tokens with each (depth, sentence) fact placed at that
    depth (a fraction of the filler), then the question."""
    per_sentence = max(1, len(tokenizer.encode(" ".join(FILLER))) // len(FILLER))
    count = max(len(facts) + 1, length // per_sentence)
    sentences = [rng.choice(FILLER) for _ in range(count)]
    for depth, fact in sorted(facts, reverse=True):
        sentences.insert(int(depth * count), fact)
    return _encode(tokenizer, " ".join(sentences) + "\n\n" + question)


def needle_cases(tokenizer, length: int, cases: int, seed: int) -> list[tuple[list[int], str]]:
    rng = random.Random(seed + length)
    out = []
    for i in range(cases):
        depth = 0.1 + 0.8 * (i % 9) / 8  # 10% .. 90%
        city, code = rng.choice(CITIES), str(rng.randrange(1000, 9999))
        fact = f"The secret passphrase for the {city} vault is {code}."
        question = (f"What is the secret passphrase for the {city} vault? "
                    "Answer with the number only.")
        out.append((_haystack(tokenizer, length, [(depth, fact)], question, rng), code))
    return out


def multi_fact_cases(tokenizer, length: int, haystacks: int, seed: int
                     ) -> list[tuple[list[int], str]]:
    rng = random.Random(seed)
    out = []
    for _ in range(haystacks):
        names = rng.sample(NAMES, len(FACT_KINDS))
        facts = [(kind, template.format(name=n, value=v), n, v) for (kind, template), n, v in
                 zip(FACT_KINDS, names, (str(rng.randrange(100, 999)) for _ in FACT_KINDS))]
        placed = [(rng.uniform(0.05, 0.95), sentence) for _, sentence, _, _ in facts]
        for kind, _, name, value in facts:
            question = f"What is the {kind.format(name=name)}? Answer with the number only."
            out.append((_haystack(tokenizer, length, placed, question, random.Random(
                rng.random())), value))
    return out


# ---- engine runs -----------------------------------------------------------------
def _request(rid: str, prompt: list[int], max_tokens: int, keep: float | None
             ) -> GenerateRequest:
    asked = SpecPrefillOptions(False) if keep is None or keep >= 1.0 else \
        SpecPrefillOptions(True, keep)
    return GenerateRequest(rid, list(prompt), SamplingParams(temperature=0.0),
                           StopParams(max_tokens=max_tokens, ignore_eos=max_tokens == 1),
                           specprefill=asked)


async def _timed(engine: AsyncEngine, request: GenerateRequest) -> dict:
    """TTFT, the answer's token ids and the prompt tokens actually prefilled."""
    start, first, tokens, last = time.perf_counter(), None, [], None
    async for delta in engine.generate(request):
        if delta.token_ids and first is None:
            first = time.perf_counter() - start
        tokens += delta.token_ids
        last = delta
    if last.error:
        raise RuntimeError(last.error)
    return dict(ttft_s=first, tokens=tokens, prefilled=last.prefilled_tokens)


def _engine(target: str, draft: str, args, loader=None) -> AsyncEngine:
    chunk = args.prefill_chunk
    kv = None if args.kv_cache_gb is None else int(args.kv_cache_gb * 2**30)
    cfg = EngineConfig(prefill_chunk_size=chunk, max_num_batched_tokens=args.token_budget,
                       kv_cache_memory_bytes=kv,
                       enable_prefix_caching=False, max_num_seqs=64,
                       specprefill=SpecPrefillConfig(draft_model=draft))
    return AsyncEngine(ModelConfig(model=target, dtype=args.dtype), cfg, loader=loader)


async def quality(args) -> dict:
    engine = _engine(args.target, args.draft, args)
    await engine.start()
    try:
        tok = engine.model.tokenizer
        sets = {f"needle_{n}": needle_cases(tok, n, args.cases, args.seed) for n in args.lengths}
        if args.multi_fact_haystacks:
            sets[f"multi_fact_{args.lengths[0]}"] = multi_fact_cases(
                tok, args.lengths[0], args.multi_fact_haystacks, args.seed)
        await _timed(engine, _request("warm", sets[next(iter(sets))][0][0][:256], 1, 0.5))
        out = {}
        for name, cases in sets.items():
            out[name] = await _score_set(engine, tok, name, cases, [1.0] + args.keeps, args)
        return out
    finally:
        await engine.shutdown()


async def _score_set(engine, tokenizer, name: str, cases: list, keeps: list[float], args
                     ) -> dict:
    result = {}
    for keep in keeps:
        found, ttfts, prefilled = [], [], []
        for i, (prompt, answer) in enumerate(cases):
            run = await _timed(engine, _request(f"{name}-{keep}-{i}", prompt, args.answer_tokens,
                                                keep))
            text = tokenizer.decode(run["tokens"])
            found.append(answer in text)
            ttfts.append(run["ttft_s"])
            prefilled.append((run["prefilled"] or len(prompt)) / len(prompt))
            print(f"{name} keep={keep} case {i}: {'found' if found[-1] else 'MISSED'} "
                  f"ttft {run['ttft_s']:.2f}s answer {text.strip()[:40]!r}", flush=True)
        result[str(keep)] = dict(accuracy=float(np.mean(found)), cases=len(cases),
                                 ttft_median_s=float(np.median(ttfts)),
                                 prefilled_share=float(np.mean(prefilled)),
                                 prompt_tokens_median=int(np.median([len(p) for p, _ in cases])))
    dense = result["1.0"]["ttft_median_s"]
    for keep, r in result.items():
        r["ttft_speedup_vs_dense"] = dense / r["ttft_median_s"]
        r["accuracy_points_vs_dense"] = 100 * (r["accuracy"] - result["1.0"]["accuracy"])
    return result


# ---- speed (random weights) ------------------------------------------------------
# a mid-size shape: a CPU check of the speed paths in a minute (not a real model's shape)
MINI_SHAPE = dict(hidden_size=512, num_hidden_layers=8, intermediate_size=1536,
                  num_attention_heads=8, num_key_value_heads=4, head_dim=64,
                  tie_word_embeddings=True)


def _random_loader(args):
    from engine import RANDOM_SHAPES, build_random_model, loaded_model_for  # benchmarks/

    RANDOM_SHAPES.setdefault("qwen3-mini", MINI_SHAPE)

    dtype = "bfloat16" if args.dtype == "auto" else args.dtype
    built = {}

    def load(cfg: ModelConfig):
        shape = cfg.model
        if shape not in built:
            model, config = build_random_model(shape, dtype)
            built[shape] = loaded_model_for(model, config, None, shape, dtype)
        return built[shape]

    return load


def _prompt(length: int, seed: int) -> list[int]:
    return np.random.default_rng(seed).integers(100, 30000, size=length).tolist()


async def _median_ttft(engine, length: int, keep: float | None, repeats: int) -> dict:
    await _timed(engine, _request(f"w{length}-{keep}", _prompt(length, 99), 1, keep))
    runs = [await _timed(engine, _request(f"t{length}-{keep}-{r}", _prompt(length, r), 1, keep))
            for r in range(repeats)]
    return dict(ttft_s=float(np.median([r["ttft_s"] for r in runs])),
                prefilled=runs[0]["prefilled"] or length)


async def _burst(engine, count: int, length: int, keep: float | None) -> float:
    """Seconds until every one of ``count`` prompts sent together has its first token."""
    start = time.perf_counter()
    await asyncio.gather(*[_timed(engine, _request(f"b{keep}-{i}", _prompt(length, 100 + i),
                                                   1, keep)) for i in range(count)])
    return time.perf_counter() - start


async def _decode_rate_during(engine, args, keep: float | None | str) -> float:
    """Tokens/s of the short decoders while a long prompt prefills (``"alone"``: none)."""
    counts, stop = [0] * args.decoders, asyncio.Event()

    async def decoder(i: int):
        request = _request(f"d{keep}-{i}", _prompt(128, 500 + i), 1, None)
        request = replace(request, stop=StopParams(max_tokens=args.decode_tokens,
                                                   ignore_eos=True))
        async for delta in engine.generate(request):
            counts[i] += len(delta.token_ids)
            if stop.is_set():
                engine.abort(request.request_id)
                break

    tasks = [asyncio.create_task(decoder(i)) for i in range(args.decoders)]
    while sum(counts) < 4 * args.decoders:  # every decoder is running
        failed = [t for t in tasks if t.done()]
        if failed:
            failed[0].result()  # raises what stopped it
            raise RuntimeError("a decoder finished before the measurement")
        await asyncio.sleep(0.01)
    before, start = sum(counts), time.perf_counter()
    if keep == "alone":
        await asyncio.sleep(args.alone_window_s)
    else:
        await _timed(engine, _request(f"long-{keep}", _prompt(args.concurrent_len, 9), 1, keep))
    rate = (sum(counts) - before) / (time.perf_counter() - start)
    stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    return rate


async def speed(args) -> dict:
    engine = _engine(args.target_shape, args.draft_shape, args, loader=_random_loader(args))
    await engine.start()
    try:
        for keep in (None, args.keep):  # warm-up: compile both paths
            await _timed(engine, _request(f"warm-{keep}", _prompt(2048, 0), 1, keep))
        out: dict = {"ttft": {}}
        for length in args.lengths:
            dense = await _median_ttft(engine, length, None, args.repeats)
            sparse = await _median_ttft(engine, length, args.keep, args.repeats)
            out["ttft"][str(length)] = dict(dense_s=dense["ttft_s"], sparse_s=sparse["ttft_s"],
                                            speedup=dense["ttft_s"] / sparse["ttft_s"],
                                            sparse_prefilled=sparse["prefilled"])
            print(f"TTFT {length}: dense {dense['ttft_s']:.2f}s sparse {sparse['ttft_s']:.2f}s "
                  f"x{dense['ttft_s'] / sparse['ttft_s']:.2f}", flush=True)
        for keep in (None, args.keep):  # warm-up: the burst's length and batch
            await _burst(engine, args.concurrent, args.concurrent_len, keep)
        dense_b = await _burst(engine, args.concurrent, args.concurrent_len, None)
        sparse_b = await _burst(engine, args.concurrent, args.concurrent_len, args.keep)
        out["concurrent"] = dict(requests=args.concurrent, length=args.concurrent_len,
                                 dense_s=dense_b, sparse_s=sparse_b, speedup=dense_b / sparse_b)
        print(f"{args.concurrent} x {args.concurrent_len}: dense {dense_b:.2f}s sparse "
              f"{sparse_b:.2f}s x{dense_b / sparse_b:.2f}", flush=True)
        rates = {str(k): await _decode_rate_during(engine, args, k)
                 for k in ("alone", None, args.keep)}
        out["decode_during_long_prefill"] = dict(
            decoders=args.decoders, long_prompt=args.concurrent_len, tokens_per_s=rates,
            dense_vs_alone=rates["None"] / rates["alone"],
            sparse_vs_alone=rates[str(args.keep)] / rates["alone"])
        print(f"decode tok/s of {args.decoders} rows: {rates}", flush=True)
        return out
    finally:
        await engine.shutdown()


def parse(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("mode", choices=["quality", "speed"])
    ap.add_argument("--device", choices=["auto", "cpu", "gpu"], default="auto")
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--target", default="qwen2.5-coder-1.5b", help="quality: target source")
    ap.add_argument("--draft", default="qwen2.5-coder-0.5b", help="quality: draft source")
    ap.add_argument("--target-shape", default="qwen3-8b", help="speed: random target shape")
    ap.add_argument("--draft-shape", default="qwen3-0.6b", help="speed: random draft shape")
    ap.add_argument("--lengths", type=int, nargs="+", default=None)
    ap.add_argument("--cases", type=int, default=20, help="quality: needles per length")
    ap.add_argument("--multi-fact-haystacks", type=int, default=4,
                    help="quality: haystacks of 5 facts each asked in turn (0: none)")
    ap.add_argument("--keeps", type=float, nargs="+", default=[0.3, 0.1])
    ap.add_argument("--keep", type=float, default=0.3, help="speed: the sparse keep fraction")
    ap.add_argument("--answer-tokens", type=int, default=12)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--concurrent", type=int, default=8)
    ap.add_argument("--concurrent-len", type=int, default=16384)
    ap.add_argument("--decoders", type=int, default=8)
    ap.add_argument("--alone-window-s", type=float, default=3.0)
    ap.add_argument("--decode-tokens", type=int, default=4096,
                    help="max_tokens of each short decoder (it is stopped after the window)")
    ap.add_argument("--prefill-chunk", type=int, default=2048)
    ap.add_argument("--token-budget", type=int, default=None)
    ap.add_argument("--kv-cache-gb", type=float, default=None,
                    help="KV budget (default: the engine's share of free memory; on a "
                         "crowded CPU machine that may not hold one long prompt)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    if args.lengths is None:
        args.lengths = [4096, 8192, 16384] if args.mode == "quality" else [8192, 32768, 65536]
    return args


def main(argv=None) -> None:
    args = parse(argv)
    if args.device == "cpu":
        mx.set_default_device(mx.cpu)
    device = str(mx.default_device())
    run = quality if args.mode == "quality" else speed
    started = time.time()
    results = asyncio.run(run(args))
    report = dict(mode=args.mode, machine=_machine(device), args=vars(args),
                  wall_s=time.time() - started, results=results)
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
