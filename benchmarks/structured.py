"""Structured outputs: grammar mask time per token, and engine throughput with constrained
rows against the same rows unconstrained, measured in one run.

    python benchmarks/structured.py --model smollm2-135m --rows 1 8 64 --out r.json
    python benchmarks/structured.py --masks-only --tokenizers smollm2-135m qwen2.5-coder-0.5b
    XGRAMMAR_PATH=/opt/xg python benchmarks/structured.py --masks-only   # compare xgrammar
    python benchmarks/structured.py --device gpu --random-shape qwen3-0.6b \
        --tokenizer /root/models/qwen0.5b.gguf --gen-len 128 --repeats 5   # no model files

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

Runs on whatever MLX device is the default (or --device): masks are filled on the CPU and
overlap the device's forward pass. On a machine without network or model files,
--random-shape builds a random-weight model (benchmarks/engine.py's shapes) and the grammar
uses --tokenizer: a GGUF file's tokenizer (no weights read), or by default a byte-level BPE
trained by this script on the Python standard library's sources (a real BPE vocabulary).
Random weights change which allowed token wins, not the work per step.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
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
BPE_STDLIB = "bpe-stdlib"  # a tokenizer trained by this script (for machines without models)
ARGS_BPE = [32768, 8.0]  # its vocabulary size and corpus megabytes (--bpe-vocab, --bpe-mb)
LONG_SCHEMA = {"type": "array", "minItems": 400, "items": {"type": "integer", "minimum": 0,
                                                           "maximum": 999}}


@functools.lru_cache(maxsize=4)
def load_tokenizer(name: str):
    """(tokenizer, logits width, eos ids) without loading any weights: a model name or
    folder (its config's vocab_size), a GGUF file (its own tokenizer), or "bpe-stdlib"."""
    if name == BPE_STDLIB:
        tokenizer, eos = stdlib_bpe_tokenizer(ARGS_BPE[0], ARGS_BPE[1])
        return tokenizer, len(tokenizer), eos
    if name.endswith(".gguf"):
        return gguf_tokenizer(name)
    from mlx_lm.tokenizer_utils import load as load_tokenizer_folder

    from mlxserve.models.hf_folder import collect_eos_ids, read_json
    from mlxserve.models.loader import materialize
    from mlxserve.models.source import resolve_source

    folder, _ = materialize(resolve_source(name), ModelConfig(model=name))
    config = read_json(os.path.join(folder, "config.json"))
    tokenizer = load_tokenizer_folder(Path(folder))
    return tokenizer, config["vocab_size"], collect_eos_ids(folder, config, tokenizer)


def gguf_tokenizer(path: str):
    """The tokenizer a GGUF file describes (no weights read), its vocabulary and EOS ids."""
    from mlxserve.models.gguf.arch import arch_spec, build_config
    from mlxserve.models.gguf.reader import open_gguf
    from mlxserve.models.gguf.tokenizer import build_tokenizer

    file = open_gguf(path)
    config = build_config(file, arch_spec(file))
    eos = config["eos_token_id"]
    return build_tokenizer(file), config["vocab_size"], set(eos if isinstance(eos, list) else [eos])


def _corpus(megabytes: float):
    """Source text for training a BPE offline: the Python standard library's modules,
    then this repository's Python and Markdown files, up to ``megabytes``."""
    import sysconfig

    roots = [Path(sysconfig.get_paths()["stdlib"]), Path(__file__).resolve().parents[1]]
    budget = megabytes * 1e6
    for root in roots:
        for path in sorted(root.rglob("*.py")) + sorted(root.rglob("*.md")):
            if budget <= 0 or "site-packages" in path.parts:
                continue
            try:
                text = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError):
                continue
            budget -= len(text)
            yield text


def stdlib_bpe_tokenizer(vocab: int, megabytes: float):
    """A byte-level BPE (GPT-2 style, like Qwen's and SmolLM2's) trained here on source
    text: a real BPE vocabulary on a machine without network or model files."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    bpe.train_from_iterator(_corpus(megabytes), trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|endoftext|>")
    return fast, {fast.eos_token_id}


def random_model(shape: str, dtype: str, eos: set[int]):
    """A random-weight model of a named shape (benchmarks/engine.py's), as a LoadedModel
    without a tokenizer (the engine then skips detokenizing, on both sides alike)."""
    from benchmarks.engine import build_random_model, loaded_model_for

    model, config = build_random_model(shape, dtype)
    loaded = loaded_model_for(model, config, None, shape, dtype)
    loaded.eos_token_ids = set(eos)
    return loaded


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


def make_engine(args) -> tuple[AsyncEngine, object]:
    """The engine on --model, or on a random-weight --random-shape model; and the
    tokenizer the grammar is built for (None: the loaded model's)."""
    config = EngineConfig(max_num_seqs=max(args.rows))
    if not args.random_shape:
        return AsyncEngine(ModelConfig(model=args.model), config), None
    tokenizer, _, eos = load_tokenizer(args.tokenizer)
    loaded = random_model(args.random_shape, args.dtype, eos)
    return (AsyncEngine(ModelConfig(model=args.random_shape), config,
                        loader=lambda _config: loaded), tokenizer)


async def bench_throughput(args) -> dict:
    engine, tokenizer = make_engine(args)
    await engine.start()
    try:
        loaded = engine.model
        tokenizer = tokenizer or loaded.tokenizer
        llg_tok = build_llg_tokenizer(tokenizer, loaded.capabilities.vocab_size,
                                      loaded.eos_token_ids)
        proto = compile_constraint(StructuredOutput("json_schema", schema=LONG_SCHEMA), llg_tok)
        prompt = tokenizer.encode("Numbers: ")
        for rows in args.rows:  # untimed warm-up of both sides
            for constrained in (True, False):
                await _run_rows(engine, prompt, rows, 8, constrained, proto.fork)
        return {rows: await _compare_rows(engine, prompt, rows, args, proto.fork)
                for rows in args.rows}
    finally:
        await engine.shutdown()


async def _compare_rows(engine, prompt: list[int], rows: int, args, compile_one) -> dict:
    """Timed runs of both sides, alternating which goes first; the best of each kept."""
    runs = {True: [], False: []}
    for k in range(args.repeats):
        for constrained in ((True, False) if k % 2 == 0 else (False, True)):
            runs[constrained].append(await _run_rows(engine, prompt, rows, args.gen_len,
                                                     constrained, compile_one))
    best = {side: max(values) for side, values in runs.items()}
    print(f"  {rows} rows: constrained {best[True]:.1f} tok/s, unconstrained "
          f"{best[False]:.1f} tok/s, ratio {best[True] / best[False]:.3f}", flush=True)
    return {"constrained_tok_s": best[True], "unconstrained_tok_s": best[False],
            "ratio": best[True] / best[False], "constrained_runs": runs[True],
            "unconstrained_runs": runs[False]}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["auto", "cpu", "gpu"], default="auto")
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--random-shape", default=None,
                        help="a random-weight model of this benchmarks/engine.py shape "
                             "(e.g. qwen3-0.6b) instead of --model: no model files needed")
    parser.add_argument("--dtype", default="bfloat16", help="of the --random-shape model")
    parser.add_argument("--tokenizer", default=BPE_STDLIB,
                        help="with --random-shape: a model name, a .gguf file (a missing "
                             f"one falls back to {BPE_STDLIB}), or {BPE_STDLIB}")
    parser.add_argument("--bpe-vocab", type=int, default=ARGS_BPE[0])
    parser.add_argument("--bpe-mb", type=float, default=ARGS_BPE[1])
    parser.add_argument("--tokenizers", nargs="*", default=None,
                        help="for the mask timings (default: SmolLM2's and Qwen2.5's; "
                             "with --random-shape: --tokenizer)")
    parser.add_argument("--rows", nargs="*", type=int, default=[1, 8, 64])
    parser.add_argument("--gen-len", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--mask-rows", type=int, default=64)
    parser.add_argument("--masks-only", action="store_true")
    parser.add_argument("--throughput-only", action="store_true")
    parser.add_argument("--note", default="")
    parser.add_argument("--out")
    args = parser.parse_args()
    ARGS_BPE[:] = [args.bpe_vocab, args.bpe_mb]
    if args.tokenizer.endswith(".gguf") and not os.path.exists(args.tokenizer):
        print(f"{args.tokenizer} not found: using {BPE_STDLIB}", flush=True)
        args.tokenizer = BPE_STDLIB
    if args.tokenizers is None:
        args.tokenizers = ([args.tokenizer] if args.random_shape
                           else ["smollm2-135m", "qwen2.5-coder-0.5b"])
    if args.device != "auto":
        mx.set_default_device(getattr(mx, args.device))
    return args


def main() -> None:
    args = parse_args()
    device = mx.default_device()
    result = {"device": str(device), "device_name": mx.device_info().get("device_name", ""),
              "machine": platform.machine(), "processor": platform.processor(),
              "cpus": os.cpu_count(), "load_average_1m_start": os.getloadavg()[0],
              "note": args.note}
    if not args.throughput_only:
        result["masks"] = [bench_masks(t, args.mask_rows) for t in args.tokenizers]
    if not args.masks_only:
        result["throughput"] = {
            "model": args.random_shape or args.model, "random_weights": bool(args.random_shape),
            "tokenizer": args.tokenizer if args.random_shape else args.model,
            "gen_len": args.gen_len, "repeats": args.repeats,
            "rows": asyncio.run(bench_throughput(args))}
    result["load_average_1m_end"] = os.getloadavg()[0]
    text = json.dumps(result, indent=1)
    if args.out:
        Path(args.out).write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
