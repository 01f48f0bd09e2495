"""Client-side load over HTTP: mlxserve, mlx_lm.server and vllm-mlx, one after the other,
on the same model, written as one table.

    python benchmarks/serve_load.py --model FOLDER --clients 1,4,16 --out r.json
    python benchmarks/serve_load.py --random-shape qwen3-8b --dtype bfloat16 \\
        --folder /tmp/q8b --quantize 4 --clients 1,8,32,64,128 --out r.json \\
        --servers mlxserve,mlx_lm,vllm-mlx --vllm-mlx-pythonpath /tmp/peer:/tmp/site

Each server is started alone (``--server-cmd NAME='COMMAND {model} {port}'`` adds or
replaces one; the defaults are ``mlxserve serve``, ``python -m mlx_lm server`` and
``python -m vllm_mlx.cli serve --continuous-batching``), ready once a chat completion
succeeds, warmed with one request per client level's batch size, then loaded at each
``--clients`` level by streaming chat clients (raw SSE over httpx, so the client's own
cost stays small): closed loop (``--arrival fixed``: each client sends its next request
when the last ended) or open loop (``--arrival poisson --rate R``: requests arrive at R/s,
unbounded concurrency). Every request is a new prompt of ``--prompt-words`` words (no
prefix is shared across requests), greedy, ``--max-tokens`` output tokens;
``--no-max-tokens`` sends none (the server's default: the rest of the context) and closes
the stream after ``--max-tokens`` tokens (what a chat UI's stop button does), which is
what admission by use is about.

Per level: TTFT p10/p50/p99 (send → first content), inter-token latency p50/p99 (gaps between
content events, divided over the tokens an event carries when the server reports usage),
per-stream decode tok/s, aggregate output tok/s (all tokens / wall time), errors (a
stream's error event after its 200 counts as one), and for mlxserve MLX's peak active and
cached bytes (its /metrics/json, read every 0.5 s).
``--reference`` also times ``mlx_lm.stream_generate`` on the same prompt in a subprocess
(the 1-client ratio). ``--merge A.json B.json`` prints one table from several runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from prefix_cache_servers import (REPO, complete, http, start_servers,  # noqa: E402
                                  stop_servers, write_random_folder)

WORDS = ("time person year way day thing man world life hand part child eye woman place "
         "work week case point number group problem fact river stone light music garden "
         "window table story letter city road paper market animal forest ocean cloud").split()


# ---- the model folder -------------------------------------------------------------
def write_quantized_folder(source: Path, bits: int, group_size: int = 64) -> Path:
    """``source`` quantized with mlx-lm's convert (``mx.quantize`` per layer), as a Mac
    user's ``mlx_lm convert -q`` gives."""
    target = source.with_name(f"{source.name}-q{bits}")
    if not (target / "config.json").exists():
        from mlx_lm import convert

        convert(str(source), mlx_path=str(target), quantize=True, q_bits=bits,
                q_group_size=group_size)
    return target


# ---- servers ----------------------------------------------------------------------
def default_commands(args) -> dict[str, tuple[str, dict]]:
    py = shlex.quote(sys.executable)
    own = os.pathsep.join([str(REPO)] + [p for p in os.environ.get("PYTHONPATH", "")
                                         .split(os.pathsep) if p])
    return {
        "mlxserve": (f"{py} -m mlxserve.cli.main serve {{model}} --port {{port}} "
                     f"--log-level warning", {"PYTHONPATH": own}),
        "mlx_lm": (f"{py} -m mlx_lm server --model {{model}} --port {{port}}", {}),
        "vllm-mlx": (f"{py} -m vllm_mlx.cli serve {{model}} --continuous-batching "
                     f"--port {{port}}", {"PYTHONPATH": args.vllm_mlx_pythonpath}),
    }


def server_table(args) -> dict[str, tuple[str, dict]]:
    table = default_commands(args)
    for spec in args.server_cmd:
        name, _, command = spec.partition("=")
        table[name] = (command, {})
    return {name: table[name] for name in args.servers}


def run_server(name: str, command: str, env: dict, model: Path, args) -> dict:
    argv = shlex.split(command.format(model=shlex.quote(str(model)), port=args.port))
    argv += args.extra.get(name, [])
    procs = start_servers({name: (argv, dict(os.environ, **env), args.port)}, args.log_dir)
    started = time.monotonic()
    try:
        model_id = wait_ready(name, procs[name][0], args.port, str(model), args.ready_timeout)
        ready_s = time.monotonic() - started
        rows = asyncio.run(load_levels(args, model_id))
    except Exception as e:  # one server failing must not lose the others' rows
        print(f"{name}: {type(e).__name__}: {e}", file=sys.stderr)
        return dict(server=name, error=f"{type(e).__name__}: {e}", levels=[])
    finally:
        stop_servers(procs)
    return dict(server=name, command=" ".join(argv), ready_s=round(ready_s, 1), levels=rows)


def wait_ready(name: str, proc, port: int, folder: str, deadline_s: float) -> str:
    """The model id (from /v1/models, else the folder: mlx_lm.server's /v1/models fails
    without a hub cache), once a chat completion succeeds."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with {proc.returncode} (see its log)")
        for model in (_listed_model(port), folder):
            try:
                complete(port, model, [{"role": "user", "content": "hi"}])
                return model
            except Exception:  # not up yet, or the other name
                pass
        time.sleep(2)
    raise RuntimeError(f"{name} not ready after {deadline_s} s")


def _listed_model(port: int) -> str | None:
    try:
        return http(port, "/v1/models", timeout=10)["data"][0]["id"]
    except Exception:
        return None


# ---- load -------------------------------------------------------------------------
def prompt_text(words: int, seed: int) -> str:
    rng = random.Random(seed)
    return f"Request {seed}: " + " ".join(rng.choice(WORDS) for _ in range(words))


def request_body(args, model_id: str, seed: int) -> dict:
    body = dict(model=model_id, stream=True, temperature=0.0,
                stream_options={"include_usage": True},
                messages=[{"role": "user", "content": prompt_text(args.prompt_words, seed)}])
    if not args.no_max_tokens:
        body["max_tokens"] = args.max_tokens
    return body


async def one_request(http, args, model_id: str, seed: int) -> dict:
    """Send one streamed chat completion; times of its content events and token counts."""
    sent = time.perf_counter()
    events, usage, chunks = [], None, 0
    try:
        async with http.stream("POST", f"http://127.0.0.1:{args.port}/v1/chat/completions",
                               json=request_body(args, model_id, seed)) as resp:
            if resp.status_code != 200:
                return dict(error=f"HTTP {resp.status_code}")
            async for line in resp.aiter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                data = json.loads(line[6:])
                if "error" in data:  # a failure after the 200: the stream's error event
                    return dict(error=f"error event: {data['error'].get('message', '')[:80]}")
                usage = data.get("usage") or usage
                if any((c.get("delta") or {}).get("content") for c in data.get("choices", [])):
                    events.append(time.perf_counter())
                    chunks += 1
                    if args.no_max_tokens and chunks >= args.max_tokens:
                        break  # the stop button
    except Exception as e:  # a refused or dropped connection
        return dict(error=f"{type(e).__name__}: {e}")
    if not events:
        return dict(error="no content")
    tokens = (usage or {}).get("completion_tokens") or chunks
    return dict(sent=sent, events=events, tokens=tokens if not args.no_max_tokens else chunks)


async def closed_loop(http, args, model_id: str, clients: int, base: int,
                      per_client: int | None = None) -> list[dict]:
    async def client(c: int) -> list[dict]:
        return [await one_request(http, args, model_id, base + c * 1000 + r)
                for r in range(per_client or args.requests_per_client)]

    return [r for rs in await asyncio.gather(*(client(c) for c in range(clients))) for r in rs]


async def open_loop(http, args, model_id: str, clients: int, base: int) -> list[dict]:
    rng, tasks = random.Random(base), []
    for k in range(clients * args.requests_per_client):
        tasks.append(asyncio.create_task(one_request(http, args, model_id, base + k)))
        await asyncio.sleep(rng.expovariate(args.rate))
    return list(await asyncio.gather(*tasks))


async def load_levels(args, model_id: str) -> list[dict]:
    import httpx

    limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
    async with httpx.AsyncClient(timeout=httpx.Timeout(args.request_timeout),
                                 limits=limits) as http:
        await closed_loop(http, args, model_id, max(args.clients), 10 ** 7, 1)  # warm-up
        rows = []
        for level, clients in enumerate(args.clients):
            memory = MemoryWatch(http, args.port)
            start = time.perf_counter()
            if args.arrival == "poisson":
                results = await open_loop(http, args, model_id, clients, (level + 1) * 10 ** 6)
            else:  # one client: at least 3 requests, so one first-use stall is not the median
                results = await closed_loop(http, args, model_id, clients, (level + 1) * 10 ** 6,
                                            max(args.requests_per_client, 3 if clients == 1 else 1))
            rows.append(summarize(clients, results, time.perf_counter() - start))
            rows[-1].update(await memory.peaks())
            print(f"  {clients:>4} clients: {fmt_row(rows[-1])}", file=sys.stderr)
        return rows


class MemoryWatch:
    """Peaks of MLX's active and cached bytes during a level, read from an mlxserve's
    /metrics/json every half second (other servers have none: nothing is recorded)."""

    def __init__(self, http, port: int):
        self.http, self.url, self.peak = http, f"http://127.0.0.1:{port}/metrics/json", {}
        self.task = asyncio.create_task(self._poll())

    async def _poll(self) -> None:
        while True:
            try:
                stats = (await self.http.get(self.url, timeout=2.0)).json()["engine"]
                for key in ("mlx_active_bytes", "mlx_cache_bytes"):
                    self.peak[key] = max(self.peak.get(key, 0), int(stats[key]))
            except Exception:  # not an mlxserve, or busy: no sample this time
                pass
            await asyncio.sleep(0.5)

    async def peaks(self) -> dict:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
        return {f"peak_{k.replace('_bytes', '_gib')}": round(v / 2 ** 30, 2)
                for k, v in self.peak.items()}


# ---- numbers ----------------------------------------------------------------------
def pct(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 4) if values else None


def summarize(clients: int, results: list[dict], wall: float) -> dict:
    ok = [r for r in results if "error" not in r]
    ttft = [r["events"][0] - r["sent"] for r in ok]
    gaps, rates = [], []
    for r in ok:
        ev, per_event = r["events"], r["tokens"] / len(r["events"])
        gaps += [(b - a) / per_event for a, b in zip(ev, ev[1:])]
        if len(ev) > 1 and ev[-1] > ev[0]:
            rates.append((r["tokens"] - per_event) / (ev[-1] - ev[0]))
    tokens = sum(r["tokens"] for r in ok)
    errors = sorted({r["error"] for r in results if "error" in r})
    return dict(clients=clients, requests=len(results), errors=len(results) - len(ok),
                error_kinds=errors[:3], wall_s=round(wall, 3), output_tokens=tokens,
                aggregate_tps=round(tokens / wall, 1) if wall else 0.0,
                ttft_p10_s=pct(ttft, 10), ttft_p50_s=pct(ttft, 50), ttft_p99_s=pct(ttft, 99),
                itl_p50_s=pct(gaps, 50), itl_p99_s=pct(gaps, 99),
                stream_tps_p50=pct(rates, 50))


def fmt_row(row: dict) -> str:
    return (f"{row['aggregate_tps']:.1f} tok/s aggregate, per stream {row['stream_tps_p50']}, "
            f"TTFT p10 {row.get('ttft_p10_s')} p50 {row['ttft_p50_s']} p99 {row['ttft_p99_s']} "
            f"s, ITL p50 "
            f"{row['itl_p50_s']} s, errors {row['errors']}/{row['requests']}"
            + (f", MLX peak active {row['peak_mlx_active_gib']} / cached "
               f"{row.get('peak_mlx_cache_gib')} GiB" if "peak_mlx_active_gib" in row else ""))


def markdown(runs: list[dict]) -> str:
    """One table: a row per (model, server), a column group per client level."""
    levels = sorted({lv["clients"] for run in runs for srv in run["servers"]
                     for lv in srv["levels"]})
    head = "| model | server | " + " | ".join(f"{c} clients: tok/s, TTFT p50/p99 s"
                                              for c in levels) + " |"
    lines = [head, "|" + "---|" * (len(levels) + 2)]
    for run in runs:
        for srv in run["servers"]:
            by = {lv["clients"]: lv for lv in srv["levels"]}
            cells = [_cell(by.get(c)) for c in levels]
            lines.append(f"| {run['model']} | {srv['server']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _cell(level: dict | None) -> str:
    if level is None:
        return "—"
    cell = f"{level['aggregate_tps']:.1f}, {level['ttft_p50_s']}/{level['ttft_p99_s']}"
    return cell + (f" ({level['errors']} errors)" if level["errors"] else "")


def ratios(run: dict) -> dict:
    """mlxserve's aggregate over each peer's, per level (and over stream_generate)."""
    by = {s["server"]: {lv["clients"]: lv for lv in s["levels"]} for s in run["servers"]}
    mine, out = by.get("mlxserve", {}), {}
    for name, levels in by.items():
        if name != "mlxserve":
            out[name] = {c: round(mine[c]["aggregate_tps"] / lv["aggregate_tps"], 2)
                         for c, lv in levels.items()
                         if c in mine and lv["aggregate_tps"] and not lv["errors"]}
    ref = run.get("reference_tps")
    if ref and 1 in mine and mine[1]["stream_tps_p50"]:
        out["stream_generate_1_client"] = round(mine[1]["stream_tps_p50"] / ref, 3)
    return out


# ---- the reference ----------------------------------------------------------------
def reference_tps(model: Path, args) -> float | None:
    """mlx_lm.stream_generate's decode tok/s on one prompt like the load's (subprocess)."""
    code = ("import sys, json; from mlx_lm import load, stream_generate; "
            "m, t = load(sys.argv[1]); p = t.apply_chat_template([{'role': 'user', "
            "'content': sys.argv[2]}], add_generation_prompt=True); n = int(sys.argv[3]); "
            "list(stream_generate(m, t, p, max_tokens=8)); "
            "r = [x for x in stream_generate(m, t, p, max_tokens=n)][-1]; "
            "print(json.dumps(r.generation_tps))")
    out = subprocess.run([sys.executable, "-c", code, str(model),
                          prompt_text(args.prompt_words, 1), str(args.max_tokens)],
                         capture_output=True, text=True, timeout=args.ready_timeout)
    if out.returncode != 0:
        print(f"reference failed: {out.stderr[-500:]}", file=sys.stderr)
        return None
    return round(float(out.stdout.strip().splitlines()[-1]), 1)


# ---- main -------------------------------------------------------------------------
def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=None, help="an HF model folder (all servers load it)")
    ap.add_argument("--random-shape", default=None, help="a shape of benchmarks/engine.py")
    ap.add_argument("--dtype", default="bfloat16")
    ap.add_argument("--folder", default="/tmp/serve-load-model")
    ap.add_argument("--quantize", type=int, default=0,
                    help="also run the model quantized to this many bits (mlx-lm convert)")
    ap.add_argument("--quantized-only", action="store_true",
                    help="with --quantize: run only the quantized model")
    ap.add_argument("--servers", default="mlxserve,mlx_lm,vllm-mlx",
                    type=lambda s: s.split(","))
    ap.add_argument("--server-cmd", action="append", default=[],
                    help="NAME='COMMAND with {model} and {port}' (adds or replaces one)")
    ap.add_argument("--mlxserve-args", default="", help="extra mlxserve flags (one string)")
    ap.add_argument("--vllm-mlx-pythonpath", default="/tmp/peer")
    ap.add_argument("--clients", default="1,4,16", type=lambda s: [int(x) for x in s.split(",")])
    ap.add_argument("--requests-per-client", type=int, default=2)
    ap.add_argument("--arrival", choices=["fixed", "poisson"], default="fixed")
    ap.add_argument("--rate", type=float, default=4.0, help="requests/s (poisson)")
    ap.add_argument("--prompt-words", type=int, default=256)
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--no-max-tokens", action="store_true")
    ap.add_argument("--reference", action="store_true", help="time stream_generate too")
    ap.add_argument("--port", type=int, default=8531)
    ap.add_argument("--ready-timeout", type=float, default=600.0)
    ap.add_argument("--request-timeout", type=float, default=900.0)
    ap.add_argument("--machine", default=platform.node() or "unknown")
    ap.add_argument("--out", default=None)
    ap.add_argument("--merge", nargs="*", default=None, help="JSON files: print one table")
    args = ap.parse_args(argv)
    args.extra = {"mlxserve": shlex.split(args.mlxserve_args)}
    args.log_dir = Path(args.out).parent if args.out else Path(tempfile.gettempdir())
    return args


def run_model(folder: Path, label: str, args) -> dict:
    run = dict(model=label, folder=str(folder), machine=args.machine, arrival=args.arrival,
               prompt_words=args.prompt_words, max_tokens=args.max_tokens,
               no_max_tokens=args.no_max_tokens, requests_per_client=args.requests_per_client,
               load_average_1m_start=os.getloadavg()[0], servers=[])
    if args.reference:
        run["reference_tps"] = reference_tps(folder, args)
    for name, (command, env) in server_table(args).items():
        print(f"{label}: {name}", file=sys.stderr)
        run["servers"].append(run_server(name, command, env, folder, args))
    run["load_average_1m_end"] = os.getloadavg()[0]
    run["ratios"] = ratios(run)
    return run


def main(argv=None) -> list[dict]:
    args = parse_args(argv)
    if args.merge is not None:
        runs = [r for path in args.merge for r in json.loads(Path(path).read_text())["runs"]]
    else:
        folder = Path(args.model) if args.model else write_random_folder(
            args.random_shape, args.dtype, Path(args.folder))
        label = folder.name if args.model else f"{args.random_shape} {args.dtype}"
        runs = [] if args.quantized_only else [run_model(folder, label, args)]
        if args.quantize:
            runs.append(run_model(write_quantized_folder(folder, args.quantize),
                                  f"{label} {args.quantize}-bit", args))
    table = markdown(runs)
    print(table)
    for run in runs:
        print(f"{run['model']} ratios: {json.dumps(run.get('ratios'))}")
    if args.out and args.merge is None:
        Path(args.out).write_text(json.dumps(dict(runs=runs, table=table), indent=1))
    return runs


if __name__ == "__main__":
    main()
