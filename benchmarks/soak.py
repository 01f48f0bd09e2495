"""Mixed soak over HTTP: many requests of every kind against one real server.

Chat and completions, streamed and not, n > 1, logprobs, stop strings, tools, seeds,
deadlines, clients that leave mid-stream, and bad requests (each must be a 4xx in OpenAI's
error format) are mixed in a seeded random order and sent ``--concurrency`` at a time.
Reported: responses by status (zero 5xx expected), answers that did not check out, p50/p99
latency per kind and overall, and the server's RSS idle after warm-up vs idle at the end,
both less the prefix cache's bytes (it fills to its budget by design; reported apart):
within 5% expected, the leak check; with the series sampled under load beside it (that
also holds the running batch's KV, which comes and goes) and MLX's active and cached
bytes. Warm-up is the first quarter of the requests: on SmolLM2 RSS still rises
~50 MiB in the first 15% (allocator pools, the prefix cache filling to its working set,
~24 MiB here), then stays flat within +-2% (soak_cpu_smollm2_500_series.json: every
sample, and the prefix cache's bytes beside it).

    python benchmarks/soak.py                      # 2,000 requests on SmolLM2 (starts a server)
    python benchmarks/soak.py --requests 200 --url http://127.0.0.1:8000 --pid 1234

tests/robustness/test_soak.py runs the short form of the same workload in CI.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import statistics
import sys
import time
from dataclasses import dataclass, field

import httpx

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RSS_TOLERANCE = 1.05
FINISH_REASONS = {"stop", "length", "tool_calls"}
WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"]}}}
QUESTIONS = ["What is the capital of France?", "Name three colours.", "Say hello.",
             "What is 2 + 2?", "Write one short sentence about the sea.", "Count to five."]


@dataclass
class Spec:
    kind: str
    path: str
    body: dict | bytes
    stream: bool = False
    expect: str = "ok"  # ok | client_error | ok_or_timeout | leave (disconnects mid-stream)


@dataclass
class Outcome:
    kind: str
    status: int
    latency_s: float
    problem: str | None = None


def _chat(rng: random.Random, **fields) -> dict:
    body = {"messages": [{"role": "user", "content": rng.choice(QUESTIONS)}],
            "max_tokens": rng.randint(4, 16), "temperature": rng.choice([0, 0.7, 1.0])}
    return {**body, **fields}


def _completion(rng: random.Random, **fields) -> dict:
    return {"prompt": rng.choice(QUESTIONS), "max_tokens": rng.randint(4, 16),
            "temperature": rng.choice([0, 0.8]), **fields}


BAD_BODIES = [
    {"messages": [{"role": "user", "content": "hi"}], "max_tokens": -5},
    {"messages": "hello"},
    {"messages": []},
    {"messages": [{"role": "wizard", "content": "hi"}]},
    {"messages": [{"role": "user", "content": "hi"}], "temperature": "hot"},
    {"messages": [{"role": "user", "content": "hi"}], "model": "no-such-model"},
    {"messages": [{"role": "user", "content": "hi"}], "stop": ["x"] * 40},
    {"messages": [{"role": "user", "content": "hi"}], "n": 100},
    {"messages": [{"role": "user", "content": "hi"}], "logprobs": True, "top_logprobs": 50},
    {"messages": [{"role": "user", "content": "hi"}], "logit_bias": {"abc": 1}},
    {"messages": [{"role": "user", "content": "hi"}], "timeout": -1},
    {"messages": [{"role": "user", "content": [{"type": "image_url"}]}]},
]


def _bad(rng: random.Random) -> Spec:
    choice = rng.randrange(len(BAD_BODIES) + 3)
    if choice == len(BAD_BODIES):
        return Spec("bad", "/v1/chat/completions", b'{"messages": [', expect="client_error")
    if choice == len(BAD_BODIES) + 1:
        deep = b'{"messages": ' + b"[" * 500 + b"]" * 500 + b"}"
        return Spec("bad", "/v1/chat/completions", deep, expect="client_error")
    if choice == len(BAD_BODIES) + 2:
        return Spec("bad", "/v1/completions", {"prompt": [10**12], "max_tokens": 4},
                    expect="client_error")
    return Spec("bad", "/v1/chat/completions", BAD_BODIES[choice], expect="client_error")


def _good(kind: str, rng: random.Random) -> Spec:
    chat, completions = "/v1/chat/completions", "/v1/completions"
    builders = {
        "chat": lambda: Spec(kind, chat, _chat(rng)),
        "chat_stream": lambda: Spec(kind, chat, _chat(rng, stream=True, stream_options={
            "include_usage": True}), stream=True),
        "completions": lambda: Spec(kind, completions, _completion(rng)),
        "completions_stream": lambda: Spec(kind, completions, _completion(rng, stream=True),
                                           stream=True),
        "chat_n": lambda: Spec(kind, chat, _chat(rng, n=rng.randint(2, 3), temperature=0.9)),
        "chat_logprobs": lambda: Spec(kind, chat, _chat(rng, logprobs=True, top_logprobs=3)),
        "completions_logprobs": lambda: Spec(kind, completions, _completion(rng, logprobs=2)),
        "chat_stop": lambda: Spec(kind, chat, _chat(rng, stop=["\n", ".", " is"])),
        "chat_tools": lambda: Spec(kind, chat, _chat(rng, tools=[WEATHER_TOOL], messages=[
            {"role": "user", "content": "What is the weather in Paris?"}])),
        "chat_seed": lambda: Spec(kind, chat, _chat(rng, seed=rng.randint(0, 99))),
        "chat_timeout": lambda: Spec(kind, chat, _chat(rng, timeout=0.05, max_tokens=64),
                                     expect="ok_or_timeout"),
        "leave": lambda: Spec(kind, chat, _chat(rng, stream=True, max_tokens=48),
                              stream=True, expect="leave"),
    }
    return builders[kind]()


KIND_WEIGHTS = {"chat": 14, "chat_stream": 14, "completions": 8, "completions_stream": 8,
                "chat_n": 6, "chat_logprobs": 6, "completions_logprobs": 4, "chat_stop": 6,
                "chat_tools": 6, "chat_seed": 4, "chat_timeout": 3, "leave": 5, "bad": 16}


def workload(requests: int, seed: int) -> list[Spec]:
    rng = random.Random(seed)
    kinds = rng.choices(list(KIND_WEIGHTS), weights=list(KIND_WEIGHTS.values()), k=requests)
    return [_bad(rng) if kind == "bad" else _good(kind, rng) for kind in kinds]


def _check_error_body(text: str) -> str | None:
    try:
        error = json.loads(text)["error"]
    except (ValueError, KeyError, TypeError):
        return f"error body not in OpenAI's format: {text[:200]}"
    if set(error) != {"message", "type", "param", "code"} or not error["message"]:
        return f"error body not in OpenAI's format: {text[:200]}"
    return None


def _check_answer(body: dict) -> str | None:
    choices = body.get("choices") or []
    if not choices or "usage" not in body:
        return f"answer without choices/usage: {json.dumps(body)[:200]}"
    if any(c.get("finish_reason") not in FINISH_REASONS for c in choices):
        return f"bad finish_reason: {[c.get('finish_reason') for c in choices]}"
    return None


def _check_events(lines: list[str]) -> str | None:
    data = [line[6:] for line in lines if line.startswith("data: ")]
    if not data or data[-1] != "[DONE]":
        return "stream did not end with [DONE]"
    events = [json.loads(d) for d in data[:-1]]
    if any("error" in e for e in events):
        return f"error event: {data[-2][:200]}"
    finishes = [c.get("finish_reason") for e in events for c in e.get("choices", [])]
    if not any(f in FINISH_REASONS for f in finishes):
        return "stream without a finish_reason"
    return None


def judge(spec: Spec, status: int, text: str = "", lines: list[str] | None = None
          ) -> str | None:
    """What is wrong with this answer to ``spec`` (None: nothing)."""
    if status >= 500:
        return f"{status}: {text[:200]}"
    if spec.expect == "client_error":
        return _check_error_body(text) if 400 <= status < 500 else f"expected a 4xx, got {status}"
    if spec.expect == "ok_or_timeout" and status == 408:
        return _check_error_body(text)
    if status != 200:
        return f"expected 200, got {status}: {text[:200]}"
    if spec.expect == "leave":
        return None
    return _check_events(lines or []) if spec.stream else _check_answer(json.loads(text))


async def send(client: httpx.AsyncClient, base: str, spec: Spec) -> Outcome:
    started = time.monotonic()
    content = spec.body if isinstance(spec.body, bytes) else json.dumps(spec.body).encode()
    headers = {"content-type": "application/json"}
    async with client.stream("POST", base + spec.path, content=content,
                             headers=headers) as response:
        if not spec.stream or response.status_code != 200:
            text = (await response.aread()).decode(errors="replace")
            return Outcome(spec.kind, response.status_code, time.monotonic() - started,
                           judge(spec, response.status_code, text))
        lines = []
        async for line in response.aiter_lines():
            lines.append(line)
            if spec.expect == "leave" and len(lines) >= 6:
                break  # the client goes away mid-stream
    return Outcome(spec.kind, response.status_code, time.monotonic() - started,
                   judge(spec, response.status_code, lines=lines))


def rss_bytes(pid: int | None) -> int | None:
    if pid is None:
        return None
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return None


@dataclass
class SoakResult:
    outcomes: list[Outcome] = field(default_factory=list)
    rss_warm: int | None = None  # idle, after the warm-up part
    rss_final: int | None = None  # idle, at the end
    cache_idle: list[int] = field(default_factory=list)  # prefix-cache bytes at those two
    rss_samples: list[int] = field(default_factory=list)
    cache_samples: list[int] = field(default_factory=list)  # prefix-cache bytes, with RSS
    mlx_samples: list[tuple[int, int]] = field(default_factory=list)  # MLX active, cached
    duration_s: float = 0.0


async def _prefix_cache_bytes(client: httpx.AsyncClient, base: str) -> int:
    stats = (await client.get(base + "/v1/cache/stats")).json()
    return int(stats.get("bytes") or 0)


async def _mlx_bytes(client: httpx.AsyncClient, base: str) -> tuple[int, int]:
    """MLX's live-array bytes and the freed buffers its allocator keeps for reuse."""
    engine = (await client.get(base + "/metrics/json")).json()["engine"]
    return int(engine.get("mlx_active_bytes") or 0), int(engine.get("mlx_cache_bytes") or 0)


async def _wait_idle(client: httpx.AsyncClient, base: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        engine = (await client.get(base + "/metrics/json")).json()["engine"]
        if not (engine["running"] or engine["waiting"]):
            return
        await asyncio.sleep(0.1)


async def run_soak(base: str, pid: int | None, requests: int, concurrency: int, seed: int,
                   warmup_fraction: float = 0.25) -> SoakResult:
    """The warm-up part, then (once the server is idle: the baseline) the rest, sampling
    RSS under load as it goes; the end is sampled idle too. Idle against idle is the leak
    check: under load RSS also holds the running batch's KV, which comes and goes."""
    specs, result = workload(requests, seed), SoakResult()
    gate, done = asyncio.Semaphore(concurrency), 0
    warm_at = max(1, int(requests * warmup_fraction))
    every = max(1, requests // 20)
    started = time.monotonic()

    async def one(client: httpx.AsyncClient, spec: Spec) -> None:
        nonlocal done
        async with gate:
            result.outcomes.append(await send(client, base, spec))
        done += 1
        if done > warm_at and done % every == 0 and pid is not None:
            result.rss_samples.append(rss_bytes(pid))
            result.cache_samples.append(await _prefix_cache_bytes(client, base))
            result.mlx_samples.append(await _mlx_bytes(client, base))

    limits = httpx.Limits(max_connections=concurrency * 2)
    async with httpx.AsyncClient(timeout=300, limits=limits) as client:
        await asyncio.gather(*(one(client, spec) for spec in specs[:warm_at]))
        await _wait_idle(client, base)
        result.rss_warm = rss_bytes(pid)
        result.cache_idle = [await _prefix_cache_bytes(client, base)]
        await asyncio.gather(*(one(client, spec) for spec in specs[warm_at:]))
        await _wait_idle(client, base)
        if pid is not None:
            result.rss_final = rss_bytes(pid)
            result.rss_samples.append(result.rss_final)
            result.cache_idle.append(await _prefix_cache_bytes(client, base))
            result.mlx_samples.append(await _mlx_bytes(client, base))
    result.duration_s = time.monotonic() - started
    return result


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


def _latency(outcomes: list[Outcome]) -> dict:
    values = [o.latency_s for o in outcomes]
    return {"n": len(values), "p50_s": round(statistics.median(values), 4) if values else 0,
            "p99_s": round(_percentile(values, 0.99), 4)}


def summarize(result: SoakResult) -> dict:
    outcomes = result.outcomes
    statuses: dict[str, int] = {}
    for o in outcomes:
        statuses[str(o.status)] = statuses.get(str(o.status), 0) + 1
    kinds = sorted({o.kind for o in outcomes})
    rss_max = max(result.rss_samples) if result.rss_samples else None
    return {
        "requests": len(outcomes), "duration_s": round(result.duration_s, 1),
        "requests_per_s": round(len(outcomes) / result.duration_s, 2) if outcomes else 0,
        "statuses": statuses, "responses_5xx": sum(o.status >= 500 for o in outcomes),
        "problems": [f"{o.kind}: {o.problem}" for o in outcomes if o.problem][:20],
        "problem_count": sum(o.problem is not None for o in outcomes),
        "latency": _latency(outcomes),
        "latency_by_kind": {k: _latency([o for o in outcomes if o.kind == k]) for k in kinds},
        "rss_warm_mib": _mib(result.rss_warm), "rss_max_after_warm_mib": _mib(rss_max),
        "rss_idle_end_over_warm": _idle_growth(result),
        "rss_final_mib": _mib(result.rss_samples[-1] if result.rss_samples else None),
        "rss_max_over_warm": (round(rss_max / result.rss_warm, 4)
                              if rss_max and result.rss_warm else None),
        **_rss_trend(result),
    }


def _idle_growth(result: SoakResult) -> float | None:
    """Idle RSS at the end over idle RSS after warm-up, both without the prefix cache's
    bytes (it fills up to its budget by design and is reported on its own)."""
    if not (result.rss_final and result.rss_warm and len(result.cache_idle) == 2):
        return None
    warm, end = (rss - cache for rss, cache in zip((result.rss_warm, result.rss_final),
                                                   result.cache_idle))
    return round(end / warm, 4)


def _rss_trend(result: SoakResult) -> dict:
    """Warm-up or growth: the RSS series after warm-up, and the second half's max over the
    sample at half way (growth keeps rising there; warm-up has levelled off)."""
    samples = result.rss_samples
    if len(samples) < 4:
        return {}
    half = samples[len(samples) // 2]
    return {"rss_samples_mib": [_mib(v) for v in samples],
            "prefix_cache_mib": [_mib(v) for v in result.cache_samples],
            "mlx_active_mib": [_mib(a) for a, _ in result.mlx_samples],
            "mlx_cache_mib": [_mib(c) for _, c in result.mlx_samples],
            "rss_second_half_max_over_half": round(max(samples[len(samples) // 2:]) / half, 4)}


def _mib(value: int | None) -> float | None:
    return None if value is None else round(value / 2**20, 1)


def _start_server(model: str, extra: list[str]):
    sys.path.insert(0, os.path.join(REPO, "tests", "e2e"))
    from server_process import start_server

    return start_server(model, extra)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--url", default=None, help="an already running server")
    parser.add_argument("--pid", type=int, default=None, help="its process id (for RSS)")
    parser.add_argument("--out", default=None, help="write the summary here (JSON)")
    parser.add_argument("--server-arg", action="append", default=[], metavar="ARG",
                        help="one more `mlxserve serve` argument (repeat), e.g. "
                             "--server-arg=--no-enable-prefix-caching")
    args = parser.parse_args()
    server = None if args.url else _start_server(args.model, ["--max-model-len", "2048",
                                                              *args.server_arg])
    base, pid = (args.url, args.pid) if args.url else (server.base_url, server.process.pid)
    try:
        summary = summarize(asyncio.run(run_soak(base, pid, args.requests, args.concurrency,
                                                 args.seed)))
    finally:
        if server is not None:
            server.stop()
    summary.update(model=args.model, concurrency=args.concurrency, seed=args.seed,
                   server_args=args.server_arg,
                   device=f"{platform.machine()} {platform.system()}, {os.cpu_count()} cores")
    print(json.dumps(summary, indent=2))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(summary, f, indent=2)
    growth = summary["rss_idle_end_over_warm"]
    rss_flat = growth is None or growth <= RSS_TOLERANCE
    return 0 if summary["responses_5xx"] == 0 and not summary["problem_count"] and rss_flat else 1


if __name__ == "__main__":
    sys.exit(main())
