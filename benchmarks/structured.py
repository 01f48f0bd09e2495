"""Structured outputs: grammar mask time per token, and engine throughput with constrained
rows against the same rows unconstrained, measured in one run.

    python benchmarks/structured.py --model smollm2-135m --rows 1 8 64 --out r.json
    python benchmarks/structured.py --masks-only --tokenizers smollm2-135m qwen2.5-coder-0.5b
    XGRAMMAR_PATH=/opt/xg python benchmarks/structured.py --masks-only   # compare xgrammar

1. Masks, per tokenizer (the GGUF-built SmolLM2 and Qwen2.5 tokenizers by default): for a
   few JSON Schemas a valid token path is drawn at random through llguidance's own masks
   (seeded), then replayed timing (a) llguidance's mask for one row, (b) the batched fill
   the engine uses (``structured.masks.fill_masks``) for 64 rows, per row, and (c) when
   xgrammar imports (put it on XGRAMMAR_PATH; it needs torch, which mlxserve does not
   install), xgrammar's mask for the same path. Tokenizer set-up and compile times too.
2. Throughput: aggregate tokens/s (all generated tokens / wall time, prefill included) of
   the engine for N rows constrained by a JSON Schema that cannot end before --gen-len
   tokens, and for the same N rows unconstrained (EOS ignored, same length). Both sides
   run each N once untimed first; timed runs alternate (--repeats each, best kept).

Runs on whatever MLX device is the default (CPU here; on a GPU machine the same command
measures the GPU: masks stay on the CPU and overlap the device's forward pass).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import mlxserve  # noqa: E402,F401  (binds MLX to OpenBLAS on Linux CPU before mlx.core)
import mlx.core as mx  # noqa: E402
import numpy as np  # noqa: E402

from mlxserve.config import EngineConfig, ModelConfig  # noqa: E402
from mlxserve.engine.client import AsyncEngine  # noqa: E402
from mlxserve.engine.request import GenerateRequest, SamplingParams, StopParams  # noqa: E402
from mlxserve.structured.constraint import compile_constraint  # noqa: E402
from mlxserve.structured.masks import fill_masks  # noqa: E402
from mlxserve.structured.spec import StructuredOutput  # noqa: E402
from mlxserve.structured.tokenizer import build_llg_tokenizer  # noqa: E402

MASK_SCHEMAS = {
    "person": {"type": "object", "properties": {
        "name": {"type": "string", "maxLength": 30}, "age": {"type": "integer"},
        "email": {"type": "string", "format": "email"}}, "required": ["name", "age"]},
    "nested": {"type": "object", "properties": {"order": {"type": "object", "properties": {
        "id": {"type": "integer"}, "items": {"type": "array", "maxItems": 4, "items": {
            "type": "object", "properties": {"sku": {"type": "string", "pattern": "^[A-Z]{3}[0-9]{3}$"},
                                             "qty": {"type": "integer", "minimum": 1, "maximum": 99}},
            "required": ["sku", "qty"]}}}, "required": ["id", "items"]}}, "required": ["order"]},
    "any_of": {"type": "object", "properties": {"value": {"anyOf": [
        {"type": "number", "minimum": 0, "maximum": 1}, {"type": "string", "maxLength": 20},
        {"type": "array", "items": {"type": "boolean"}, "maxItems": 5}]}}, "required": ["value"]},
    "enum_ref": {"$defs": {"c": {"enum": ["red", "green", "blue", "cyan", "magenta"]}},
                 "type": "object", "properties": {"colors": {"type": "array", "maxItems": 6,
                                                             "items": {"$ref": "#/$defs/c"}}},
                 "required": ["colors"]},
}
LONG_SCHEMA = {"type": "array", "minItems": 400, "items": {"type": "integer", "minimum": 0,
                                                           "maximum": 999}}


def load_tokenizer(name: str):
    """(mlx-lm TokenizerWrapper, logits width, eos ids) without loading the weights."""
    from mlx_lm.tokenizer_utils import load as load_tokenizer_folder

    from mlxserve.models.hf_folder import collect_eos_ids, read_json
    from mlxserve.models.loader import materialize
    from mlxserve.models.source import resolve_source

    folder, _ = materialize(resolve_source(name), ModelConfig(model=name))
    config = read_json(os.path.join(folder, "config.json"))
    tokenizer = load_tokenizer_folder(Path(folder))
    return tokenizer, config["vocab_size"], collect_eos_ids(folder, config, tokenizer)


def random_path(constraint, eos: list[int], max_tokens: int, rng: random.Random) -> list[int]:
    """A valid token path: random allowed tokens until the grammar accepts (or the cap)."""
    row = np.zeros(constraint.mask_words, np.int32)
    path: list[int] = []
    while len(path) < max_tokens and not constraint.matcher.is_stopped():
        constraint.fill_mask(row)
        allowed = np.nonzero(np.unpackbits(row.view(np.uint8), bitorder="little"))[0]
        allowed = [int(t) for t in allowed if t < constraint.vocab_size]
        text = [t for t in allowed if t not in eos] or allowed
        if constraint.accepting and rng.random() < 0.3:
            break
        token = rng.choice(text)
        constraint.commit(token)
        path.append(token)
    return path


def time_llguidance(compile_one, path: list[int], rows: int) -> tuple[float, float]:
    """(µs per mask for one row, µs per row-mask when ``rows`` rows fill together)."""
    one = compile_one()
    buf = np.zeros(one.mask_words, np.int32)
    start = time.perf_counter()
    for token in path:
        one.fill_mask(buf)
        one.commit(token)
    single = (time.perf_counter() - start) / len(path) * 1e6
    batch = [compile_one() for _ in range(rows)]
    start = time.perf_counter()
    for token in path:
        fill_masks(batch, one.mask_words)
        for c in batch:
            c.commit(token)
    batched = (time.perf_counter() - start) / (len(path) * rows) * 1e6
    return single, batched


def xgrammar_module():
    extra = os.environ.get("XGRAMMAR_PATH")
    if extra:
        sys.path[:0] = extra.split(os.pathsep)
    try:
        import xgrammar

        return xgrammar
    except ImportError:
        return None


def time_xgrammar(xgr, tokenizer, vocab: int, eos: set[int], schemas: dict, paths: dict) -> dict:
    start = time.perf_counter()
    info = xgr.TokenizerInfo.from_huggingface(tokenizer._tokenizer, vocab_size=vocab,
                                              stop_token_ids=sorted(eos))
    compiler = xgr.GrammarCompiler(info)
    out = {"tokenizer_setup_s": time.perf_counter() - start, "schemas": {}}
    for name, schema in schemas.items():
        start = time.perf_counter()
        compiled = compiler.compile_json_schema(json.dumps(schema), any_whitespace=False,
                                                separators=(", ", ": "))
        compile_s = time.perf_counter() - start
        matcher = xgr.GrammarMatcher(compiled)
        bitmask = xgr.allocate_token_bitmask(1, vocab)
        start, accepted = time.perf_counter(), 0
        for token in paths[name]:
            matcher.fill_next_token_bitmask(bitmask)
            if not matcher.accept_token(token):
                break
            accepted += 1
        us = (time.perf_counter() - start) / max(accepted, 1) * 1e6
        out["schemas"][name] = {"compile_s": compile_s, "mask_us": us,
                                "path_tokens_accepted": f"{accepted}/{len(paths[name])}"}
    return out


def bench_masks(name: str, rows: int, seed: int) -> dict:
    import llguidance

    tokenizer, vocab, eos = load_tokenizer(name)
    start = time.perf_counter()
    llg_tok = build_llg_tokenizer(tokenizer, vocab, eos)
    result = {"tokenizer": name, "vocab": vocab, "llguidance": {
        "version": llguidance.__version__, "tokenizer_setup_s": time.perf_counter() - start,
        "schemas": {}}}
    paths = {}
    for schema_name, schema in MASK_SCHEMAS.items():
        spec = StructuredOutput("json_schema", schema=schema)
        start = time.perf_counter()
        compile_constraint(spec, llg_tok)
        compile_s = time.perf_counter() - start

        def one():
            return compile_constraint(spec, llg_tok)

        paths[schema_name] = random_path(one(), llg_tok.eos_tokens, 200, random.Random(seed))
        single, batched = time_llguidance(one, paths[schema_name], rows)
        result["llguidance"]["schemas"][schema_name] = {
            "compile_s": compile_s, "path_tokens": len(paths[schema_name]),
            "mask_us": single, f"mask_us_per_row_at_{rows}_rows": batched}
        print(f"  {name} {schema_name}: {len(paths[schema_name])} tokens, llguidance "
              f"{single:.0f} µs/mask alone, {batched:.0f} µs/row at {rows} rows", flush=True)
    xgr = xgrammar_module()
    if xgr is not None:
        result["xgrammar"] = dict(version=getattr(xgr, "__version__", "?"),
                                  **time_xgrammar(xgr, tokenizer, vocab, eos, MASK_SCHEMAS, paths))
        print(f"  {name} xgrammar: {result['xgrammar']}", flush=True)
    return result


async def _run_rows(engine, prompt: list[int], rows: int, gen_len: int, constrained: bool,
                    compile_one) -> float:
    requests = [GenerateRequest(f"{'c' if constrained else 'f'}{rows}-{i}-{time.time_ns()}",
                                prompt, SamplingParams(temperature=0.0),
                                StopParams(max_tokens=gen_len, ignore_eos=not constrained),
                                constraint=compile_one() if constrained else None)
                for i in range(rows)]

    async def drain(request) -> int:
        return sum([len(d.token_ids) async for d in engine.generate(request)])

    start = time.perf_counter()
    counts = await asyncio.gather(*(drain(r) for r in requests))
    elapsed = time.perf_counter() - start
    assert all(n == gen_len for n in counts), counts
    return sum(counts) / elapsed


async def bench_throughput(model: str, rows_list: list[int], gen_len: int, repeats: int) -> dict:
    engine = AsyncEngine(ModelConfig(model=model), EngineConfig(max_num_seqs=max(rows_list)))
    await engine.start()
    try:
        loaded = engine.model
        llg_tok = build_llg_tokenizer(loaded.tokenizer, loaded.capabilities.vocab_size,
                                      loaded.eos_token_ids)
        spec = StructuredOutput("json_schema", schema=LONG_SCHEMA)
        proto = compile_constraint(spec, llg_tok)
        prompt = loaded.tokenizer.encode("Numbers: ")
        out = {}
        for rows in rows_list:  # untimed warm-up of both sides
            for constrained in (True, False):
                await _run_rows(engine, prompt, rows, 8, constrained, proto.fork)
        for rows in rows_list:
            best = {True: 0.0, False: 0.0}
            for k in range(repeats):
                for constrained in ((True, False) if k % 2 == 0 else (False, True)):
                    tps = await _run_rows(engine, prompt, rows, gen_len, constrained, proto.fork)
                    best[constrained] = max(best[constrained], tps)
            out[rows] = {"constrained_tok_s": best[True], "unconstrained_tok_s": best[False],
                         "ratio": best[True] / best[False]}
            print(f"  {model} {rows} rows: constrained {best[True]:.1f} tok/s, unconstrained "
                  f"{best[False]:.1f} tok/s, ratio {best[True] / best[False]:.3f}", flush=True)
        return out
    finally:
        await engine.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--tokenizers", nargs="*", default=["smollm2-135m", "qwen2.5-coder-0.5b"])
    parser.add_argument("--rows", nargs="*", type=int, default=[1, 8, 64])
    parser.add_argument("--gen-len", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--mask-rows", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--masks-only", action="store_true")
    parser.add_argument("--throughput-only", action="store_true")
    parser.add_argument("--note", default="")
    parser.add_argument("--out")
    args = parser.parse_args()
    result = {"device": str(mx.default_device()), "machine": platform.machine(),
              "processor": platform.processor(), "cpus": os.cpu_count(), "note": args.note}
    if not args.throughput_only:
        result["masks"] = [bench_masks(t, args.mask_rows, args.seed) for t in args.tokenizers]
    if not args.masks_only:
        result["throughput"] = {"model": args.model, "gen_len": args.gen_len, "rows": asyncio.run(
            bench_throughput(args.model, args.rows, args.gen_len, args.repeats))}
    text = json.dumps(result, indent=1)
    if args.out:
        Path(args.out).write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
