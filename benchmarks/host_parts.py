"""Host CPU time of two per-step parts of the engine, in isolation, at 128 rows:

- delivery: `EngineCore._deliver` over one step's read-back tokens (commit, detokenize,
  stop checks, logprob covering, the delta, the outbox), with and without stop strings;
- sampler setup: building `sample()`'s graph for greedy, sampled and mixed-with-penalty
  batches (thread CPU of the build), and build + evaluation (process CPU).

    python benchmarks/host_parts.py [--rows 128] [--out r.json]

Thread CPU time, medians: steadier than wall time on a shared machine. Run it on two
commits to compare (it only uses engine APIs both sides of the host-overhead work have).
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import mlxserve  # noqa: E402,F401  (binds MLX to OpenBLAS on Linux CPU before mlx.core)

import mlx.core as mx  # noqa: E402
import numpy as np  # noqa: E402

from mlxserve.config import EngineConfig, ModelConfig  # noqa: E402
from mlxserve.engine import sampler  # noqa: E402
from mlxserve.engine.core import EngineCore  # noqa: E402
from mlxserve.engine.request import GenerateRequest, SamplingParams, StopParams  # noqa: E402
from mlxserve.engine.request_state import RequestState  # noqa: E402
from mlxserve.engine.runner import TokenOutput  # noqa: E402
from mlxserve.engine.scheduler import Scheduler, SeqState  # noqa: E402
from mlxserve.engine.stops import OutputStream  # noqa: E402
from mlxserve.models.detokenizer import detokenizer_prototype  # noqa: E402


class _Hub:
    def __call__(self, items) -> None:
        pass


class _Sink:
    def __init__(self, hub):
        self.hub = hub

    def __call__(self, delta) -> None:
        pass


class _NoRunner:
    def release(self, request_id: str) -> None:
        pass


def _core(loaded, rows: int, stop: tuple[str, ...]) -> EngineCore:
    core = EngineCore(ModelConfig(model="unused"), EngineConfig())
    core.loaded, core.runner = loaded, _NoRunner()
    core.scheduler = Scheduler(max_num_seqs=rows, max_num_batched_tokens=1 << 16,
                               prefill_chunk_size=512, kv_tokens_total=1 << 30)
    proto, hub = detokenizer_prototype(loaded.tokenizer), _Hub()
    for k in range(rows):
        request = GenerateRequest(f"r{k}", list(range(3, 19)), SamplingParams(temperature=0),
                                  StopParams(max_tokens=1 << 20, ignore_eos=True, stop=stop))
        core.scheduler.running[request.request_id] = SeqState(request.request_id, 16, 1 << 20)
        output = OutputStream(request, copy.copy(proto), loaded.eos_token_ids, 1 << 30)
        core._active[request.request_id] = RequestState(request, _Sink(hub), output, 0)
    return core


def _delivery_ms(loaded, rows: int, stop: tuple[str, ...], steps: int = 200) -> float:
    core, rng = _core(loaded, rows, stop), random.Random(0)
    vocab = loaded.capabilities.vocab_size
    times = []
    for _ in range(steps):
        outputs = [TokenOutput(f"r{k}", rng.randrange(3, vocab)) for k in range(rows)]
        start = time.thread_time()
        if hasattr(core, "_deliver"):
            core._deliver(outputs, [])
        else:  # before the host-overhead work: one _update per output
            for out in outputs:
                core._update(out)
        times.append(time.thread_time() - start)
        core._outbox._batches.clear()
    return statistics.median(times) * 1000


def _sampler_ms(rows: int, vocab: int, kinds: list[SamplingParams]) -> tuple[float, float]:
    samplers = [sampler.RowSampler(kinds[k % len(kinds)], [1, 2], vocab, k)
                for k in range(rows)]
    cache = sampler.SamplingCache() if hasattr(sampler, "SamplingCache") else None
    extra = {"cache": cache} if cache is not None else {}
    logits = mx.array(np.random.default_rng(0).normal(size=(rows, vocab)).astype(np.float32))
    mx.eval(logits)
    build, total = [], []
    for _ in range(60):
        thread, process = time.thread_time(), time.process_time()
        result = sampler.sample(logits, samplers, **extra)
        build.append(time.thread_time() - thread)
        mx.eval(result.tokens)
        total.append(time.process_time() - process)
    return statistics.median(build[5:]) * 1000, statistics.median(total[5:]) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=128)
    parser.add_argument("--out")
    args = parser.parse_args()
    from tiny_models import make_tiny_model

    from mlxserve.models import load_model

    with tempfile.TemporaryDirectory() as root:
        loaded = load_model(ModelConfig(model=str(make_tiny_model(Path(root), "qwen3"))))
    result = dict(device=f"{platform.processor() or platform.machine()} CPU", rows=args.rows)
    for name, stop in (("delivery_ms", ()), ("delivery_stop_strings_ms", ("zzz", "qq"))):
        result[name] = round(_delivery_ms(loaded, args.rows, stop), 3)
    vocab = loaded.capabilities.vocab_size
    kinds = {"greedy": [SamplingParams(temperature=0.0)],
             "sampled": [SamplingParams(temperature=0.8, top_p=0.9, top_k=40, seed=1)],
             "mixed_penalties": [SamplingParams(temperature=0.8, top_p=0.9),
                                 SamplingParams(temperature=0.0, frequency_penalty=0.3)]}
    for name, params in kinds.items():
        build, total = _sampler_ms(args.rows, vocab, params)
        result[f"sampler_{name}_build_ms"] = round(build, 3)
        result[f"sampler_{name}_build_eval_cpu_ms"] = round(total, 3)
    print(json.dumps(result))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
