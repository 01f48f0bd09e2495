"""Structured outputs: grammar mask time per token, and engine throughput with constrained
rows against the same rows unconstrained, measured in one run.

    python benchmarks/structured.py --model smollm2-135m --rows 1 8 64 --out r.json
    python benchmarks/structured.py --masks-only --tokenizers smollm2-135m qwen2.5-coder-0.5b
    XGRAMMAR_PATH=/opt/xg python benchmarks/structured.py --masks-only   # compare xgrammar

1. Masks, per tokenizer (the GGUF-built SmolLM2 and Qwen2.5 tokenizers by default): for a
   few JSON Schemas, a valid compact answer is tokenized by the model's tokenizer and
   replayed, timing before each token (a) llguidance's mask for one row, (b) the batched
   fill the engine uses (``structured.masks.fill_masks``) for 64 rows, per row, and (c)
   when xgrammar imports (put it on XGRAMMAR_PATH; it needs torch, which mlxserve does not
   install), xgrammar's mask. The first mask (cold) is reported apart from the mean of the
   rest. Tokenizer set-up and compile times too.
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

EMAIL = {"type": "string", "format": "email"}
MASK_CASES = {  # schema, and a valid answer whose tokens (the model tokenizer's) are replayed
    "person": ({"type": "object", "properties": {
        "name": {"type": "string", "maxLength": 30}, "age": {"type": "integer"},
        "email": EMAIL}, "required": ["name", "age"]},
        {"name": "Ada Lovelace", "age": 36, "email": "ada@example.org"}),
    "nested": ({"type": "object", "properties": {"order": {"type": "object", "properties": {
        "id": {"type": "integer"}, "items": {"type": "array", "maxItems": 4, "items": {
            "type": "object", "properties": {
                "sku": {"type": "string", "pattern": "^[A-Z]{3}[0-9]{3}$"},
                "qty": {"type": "integer", "minimum": 1, "maximum": 99}},
            "required": ["sku", "qty"]}}}, "required": ["id", "items"]}},
        "required": ["order"]},
        {"order": {"id": 1234, "items": [{"sku": "ABC123", "qty": 2},
                                         {"sku": "XYZ999", "qty": 10}]}}),
    "any_of": ({"type": "object", "properties": {"value": {"anyOf": [
        {"type": "number", "minimum": 0, "maximum": 1}, {"type": "string", "maxLength": 40},
        {"type": "array", "items": {"type": "boolean"}, "maxItems": 5}]}},
        "required": ["value"]}, {"value": "a short free-text answer here"}),
    "enum_ref": ({"$defs": {"c": {"enum": ["red", "green", "blue", "cyan", "magenta"]}},
                  "type": "object", "properties": {"colors": {
                      "type": "array", "maxItems": 6, "items": {"$ref": "#/$defs/c"}}},
                  "required": ["colors"]}, {"colors": ["red", "cyan", "blue"]}),
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


def answer_path(tokenizer, answer) -> list[int]:
    """The tokens of a compact JSON answer, as the model's tokenizer writes it."""
    return tokenizer.encode(json.dumps(answer, separators=(", ", ": ")),
                            add_special_tokens=False)


def _first_and_mean(times: list[float]) -> dict:
    """µs: the first mask (cold: lexer states are built lazily) and the mean of the rest."""
    rest = times[1:] or times
    return {"first_mask_us": times[0] * 1e6, "mask_us": sum(rest) / len(rest) * 1e6}


def time_llguidance(compile_one, path: list[int], rows: int) -> dict:
    """One row's mask per token, and the batched fill of ``rows`` rows (µs per row)."""
    one = compile_one()
    buf = np.zeros(one.mask_words, np.int32)
    times = []
    for token in path:
        start = time.perf_counter()
        one.fill_mask(buf)
        times.append(time.perf_counter() - start)
        one.commit(token)
    assert one.error is None, one.error
    out = _first_and_mean(times)
    batch = [compile_one() for _ in range(rows)]
    times = []
    for token in path:
        start = time.perf_counter()
        fill_masks(batch, one.mask_words)
        times.append((time.perf_counter() - start) / rows)
        for c in batch:
            c.commit(token)
    out[f"per_row_at_{rows}_rows"] = _first_and_mean(times)
    return out


def xgrammar_module():
    extra = os.environ.get("XGRAMMAR_PATH")
    if extra:
        sys.path[:0] = extra.split(os.pathsep)
    try:
        import xgrammar

        return xgrammar
    except ImportError:
        return None


def time_xgrammar(xgr, tokenizer, vocab: int, eos: set[int], paths: dict) -> dict:
    from importlib.metadata import version

    start = time.perf_counter()
    info = xgr.TokenizerInfo.from_huggingface(tokenizer._tokenizer, vocab_size=vocab,
                                              stop_token_ids=sorted(eos))
    compiler = xgr.GrammarCompiler(info)
    out = {"version": version("xgrammar"), "tokenizer_setup_s": time.perf_counter() - start,
           "schemas": {}}
    for name, (schema, _) in MASK_CASES.items():
        start = time.perf_counter()
        compiled = compiler.compile_json_schema(json.dumps(schema), any_whitespace=False,
                                                separators=(", ", ": "))
        compile_s = time.perf_counter() - start
        matcher = xgr.GrammarMatcher(compiled)
        bitmask = xgr.allocate_token_bitmask(1, vocab)
        times = []
        for token in paths[name]:
            start = time.perf_counter()
            matcher.fill_next_token_bitmask(bitmask)
            times.append(time.perf_counter() - start)
            assert matcher.accept_token(token), (name, token)
        out["schemas"][name] = dict(compile_s=compile_s, **_first_and_mean(times))
    return out


def bench_masks(name: str, rows: int) -> dict:
    import llguidance

    tokenizer, vocab, eos = load_tokenizer(name)
    start = time.perf_counter()
    llg_tok = build_llg_tokenizer(tokenizer, vocab, eos)
    result = {"tokenizer": name, "vocab": vocab, "llguidance": {
        "version": llguidance.__version__, "tokenizer_setup_s": time.perf_counter() - start,
        "schemas": {}}}
    paths = {}
    for case, (schema, answer) in MASK_CASES.items():
        spec = StructuredOutput("json_schema", schema=schema)
        start = time.perf_counter()
        compile_constraint(spec, llg_tok)
        compile_s = time.perf_counter() - start
        paths[case] = answer_path(tokenizer, answer)
        timed = time_llguidance(lambda: compile_constraint(spec, llg_tok), paths[case], rows)
        result["llguidance"]["schemas"][case] = dict(compile_s=compile_s,
                                                     path_tokens=len(paths[case]), **timed)
        print(f"  {name} {case}: {len(paths[case])} tokens, llguidance "
              f"{timed['mask_us']:.0f} µs/mask (first {timed['first_mask_us']:.0f}), "
              f"{timed[f'per_row_at_{rows}_rows']['mask_us']:.0f} µs/row at {rows} rows",
              flush=True)
    xgr = xgrammar_module()
    if xgr is not None:
        result["xgrammar"] = time_xgrammar(xgr, tokenizer, vocab, eos, paths)
        for case, r in result["xgrammar"]["schemas"].items():
            print(f"  {name} {case}: xgrammar {r['mask_us']:.0f} µs/mask (first "
                  f"{r['first_mask_us']:.0f}), compile {r['compile_s']:.3f} s", flush=True)
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
    parser.add_argument("--masks-only", action="store_true")
    parser.add_argument("--throughput-only", action="store_true")
    parser.add_argument("--note", default="")
    parser.add_argument("--out")
    args = parser.parse_args()
    result = {"device": str(mx.default_device()), "machine": platform.machine(),
              "processor": platform.processor(), "cpus": os.cpu_count(), "note": args.note}
    if not args.throughput_only:
        result["masks"] = [bench_masks(t, args.mask_rows) for t in args.tokenizers]
    if not args.masks_only:
        result["throughput"] = {"model": args.model, "gen_len": args.gen_len, "rows": asyncio.run(
            bench_throughput(args.model, args.rows, args.gen_len, args.repeats))}
    text = json.dumps(result, indent=1)
    if args.out:
        Path(args.out).write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
