"""Prefix cache side by side over HTTP: mlxserve and vllm-mlx (or any OpenAI-compatible
server started by a command) on the same model folder, the same GPU, in one run.

    python benchmarks/prefix_cache_servers.py --random-shape qwen3-8b --dtype bfloat16 \
        --folder /tmp/q8b --system-tokens 2048,6144,8192 --out r.json \
        --vllm-mlx-pythonpath /tmp/peer:/tmp/site

--random-shape writes a random model of that shape (benchmarks/engine.py) as an HF folder
with a byte-level tokenizer (one token per ASCII character; the vocabulary padded to the
model's with printable filler tokens, so every sampled id decodes); --model takes a folder.
Both servers start together (vllm-mlx 0.6.0 `serve FOLDER --continuous-batching`, its
prefix cache on by default), and each is ready once a chat completion succeeds.

Measured per server, interleaved (the server that goes first alternating):
1. Shared system prompt, per size: each repeat a new system message (nothing of it is
   cached), then system + question a (cold) and system + question b (a hit). The time of
   a non-streamed 1-token chat completion (greedy): prefill + one step + HTTP, i.e. TTFT.
2. Chat: --turns turns, each resending the history (system, the user turns, fixed
   assistant replies of --answer-chars) plus a new user turn; latency per turn and the
   cached tokens the server reports in usage (prompt_tokens_details.cached_tokens).
Medians (min/max) of the timed repeats; the first repeat is an untimed warm-up.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WORDS = ("the quick brown fox jumps over a lazy dog while seven tired wizards quietly "
         "count every golden star above the sleeping northern hills").split()
CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
          "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
SPECIALS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")


# ---- the model folder -------------------------------------------------------------
def write_tokenizer(folder: Path, vocab_size: int) -> None:
    """Byte-level BPE without merges, padded to ``vocab_size`` with filler tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    alphabet = list(pre_tokenizers.ByteLevel.alphabet())
    vocab = {ch: i for i, ch in enumerate(sorted(alphabet))}
    letters = "abcdefghijklmnopqrstuvwxyz"
    k = 0
    while len(vocab) < vocab_size - len(SPECIALS):
        name, n = "", k
        while True:
            name, n = letters[n % 26] + name, n // 26
            if not n:
                break
        vocab["\u0120w" + name] = len(vocab)  # decodes to " w<letters>"
        k += 1
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(list(SPECIALS))
    tok.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "PreTrainedTokenizerFast", "bos_token": None,
        "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>", "chat_template": CHATML,
        "model_max_length": 65536}))


def write_random_folder(shape: str, dtype: str, folder: Path) -> Path:
    import mlx.core as mx
    from mlx.utils import tree_flatten

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from engine import build_random_model

    if (folder / "model.safetensors").exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    model, config = build_random_model(shape, dtype)
    write_tokenizer(folder, config["vocab_size"])
    eos = config["vocab_size"] - 1  # <|im_end|>
    config.update(rms_norm_eps=1e-6, rope_theta=1_000_000.0, torch_dtype=dtype,
                  eos_token_id=eos, architectures=["Qwen3ForCausalLM"])
    mx.save_safetensors(str(folder / "model.safetensors"), dict(tree_flatten(model.parameters())),
                        metadata={"format": "mlx"})
    (folder / "config.json").write_text(json.dumps(config))
    del model
    mx.clear_cache()
    return folder


# ---- servers ----------------------------------------------------------------------
def server_commands(args, folder: Path) -> dict:
    py = sys.executable
    mine = [py, "-m", "mlxserve.cli.main", "serve", str(folder), "--port", str(args.port)]
    peer = [py, "-m", "vllm_mlx.cli", "serve", str(folder), "--continuous-batching",
            "--port", str(args.port + 1)]
    env_mine = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(REPO)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    env_peer = dict(os.environ, PYTHONPATH=args.vllm_mlx_pythonpath)
    servers = {"mlxserve": (mine + args.mlxserve_args, env_mine, args.port)}
    if args.vllm_mlx_pythonpath:
        servers["vllm-mlx"] = (peer + args.vllm_mlx_args, env_peer, args.port + 1)
    return servers


def start_servers(servers: dict, log_dir: Path) -> dict:
    procs = {}
    for name, (cmd, env, port) in servers.items():
        log = open(log_dir / f"server_{name}.log", "w")
        procs[name] = (subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                        start_new_session=True, cwd=str(REPO)), port)
    return procs


def stop_servers(procs: dict) -> None:
    for proc, _ in procs.values():
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
    for proc, _ in procs.values():
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def http(port: int, path: str, body: dict | None = None, timeout: float = 600.0) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return json.loads(resp.read())


def wait_ready(name: str, proc, port: int, deadline_s: float) -> str:
    """The model id, once a chat completion succeeds."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with {proc.returncode} (see its log)")
        try:
            model = http(port, "/v1/models", timeout=10)["data"][0]["id"]
            complete(port, model, [{"role": "user", "content": "hi"}])
            return model
        except (urllib.error.URLError, ConnectionError, KeyError, IndexError, OSError):
            time.sleep(2)
    raise RuntimeError(f"{name} not ready after {deadline_s} s")


def complete(port: int, model: str, messages: list) -> tuple[float, int | None, int]:
    """(seconds, cached tokens reported or None, prompt tokens) of a 1-token answer."""
    body = dict(model=model, messages=messages, max_tokens=1, temperature=0.0)
    start = time.perf_counter()
    out = http(port, "/v1/chat/completions", body)
    took = time.perf_counter() - start
    usage = out.get("usage") or {}
    cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens")
    return took, cached, usage.get("prompt_tokens", 0)


# ---- workloads --------------------------------------------------------------------
def text_of(n_chars: int, tag: str) -> str:
    words, k = [f"Session {tag}."], 0
    while sum(len(w) + 1 for w in words) < n_chars:
        words.append(WORDS[k % len(WORDS)])
        k += 1
    return " ".join(words)[:n_chars]


def spread(values: list[float]) -> dict:
    return dict(min=min(values), median=statistics.median(values), max=max(values),
                runs=[round(v, 4) for v in values])


def shared_prefix(ready: dict, size: int, repeats: int) -> dict:
    got = {n: dict(cold=[], hit=[], cached=[], prompt_tokens=0) for n in ready}
    for r in range(repeats + 1):
        order = list(ready) if r % 2 == 0 else list(reversed(ready))
        for name in order:
            port, model = ready[name]
            system = {"role": "system", "content": text_of(size, f"{size}-{r}-{name}")}
            a, _, _ = complete(port, model, [system, {"role": "user", "content": "Why?"}])
            b, cached, prompt = complete(port, model, [system,
                                                       {"role": "user", "content": "How?"}])
            print(f"  {name} {size}: repeat {r}: cold {a:.4f} s, hit {b:.4f} s "
                  f"(cached {cached})", file=sys.stderr, flush=True)
            if r:
                g = got[name]
                g["cold"].append(a)
                g["hit"].append(b)
                g["cached"].append(cached)
                g["prompt_tokens"] = prompt
    return {n: dict(system_chars=size, prompt_tokens=g["prompt_tokens"],
                    cold_s=spread(g["cold"]), hit_s=spread(g["hit"]),
                    cold_over_hit=statistics.median(g["cold"]) / statistics.median(g["hit"]),
                    cached_tokens=g["cached"]) for n, g in got.items()}


def chat(ready: dict, args) -> dict:
    turns = {n: [] for n in ready}
    for name in ready:
        port, model = ready[name]
        messages = [{"role": "system", "content": text_of(args.chat_system_chars,
                                                          f"chat-{name}")}]
        for t in range(args.turns):
            messages.append({"role": "user", "content": f"Turn {t}: what happened next?"})
            took, cached, prompt = complete(port, model, messages)
            turns[name].append(dict(latency_s=took, cached_tokens=cached,
                                    prompt_tokens=prompt))
            messages.append({"role": "assistant",
                             "content": text_of(args.answer_chars, f"answer {t}")})
    out = {}
    for name, rows in turns.items():
        reported = all(r["cached_tokens"] is not None for r in rows)
        prefilled = (sum(r["prompt_tokens"] - r["cached_tokens"] for r in rows)
                     if reported else None)
        out[name] = dict(per_turn=rows, latency_total_s=sum(r["latency_s"] for r in rows),
                         prompt_tokens_total=sum(r["prompt_tokens"] for r in rows),
                         prefilled_tokens_total=prefilled)
    return out


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", default=None, help="an HF model folder")
    src.add_argument("--random-shape", default=None, help="a shape of benchmarks/engine.py")
    ap.add_argument("--dtype", default="bfloat16")
    ap.add_argument("--folder", default="/tmp/prefix-bench-model")
    ap.add_argument("--system-tokens", default="2048",
                    type=lambda s: [int(x) for x in s.split(",")],
                    help="system prompt sizes, in characters (= tokens with the byte-level "
                         "tokenizer of --random-shape)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--turns", type=int, default=10)
    ap.add_argument("--chat-system-chars", type=int, default=2048)
    ap.add_argument("--answer-chars", type=int, default=256)
    ap.add_argument("--port", type=int, default=8431)
    ap.add_argument("--vllm-mlx-pythonpath", default="",
                    help="PYTHONPATH for vllm-mlx (empty: mlxserve alone)")
    ap.add_argument("--mlxserve-args", nargs="*", default=[])
    ap.add_argument("--vllm-mlx-args", nargs="*", default=[])
    ap.add_argument("--ready-timeout", type=float, default=420.0)
    ap.add_argument("--out", default=None)
    return ap.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    folder = Path(args.model) if args.model else write_random_folder(
        args.random_shape, args.dtype, Path(args.folder))
    log_dir = Path(args.out).parent if args.out else Path(".")
    procs = start_servers(server_commands(args, folder), log_dir)
    try:
        ready = {n: (port, wait_ready(n, proc, port, args.ready_timeout))
                 for n, (proc, port) in procs.items()}
        result = dict(model=args.model or args.random_shape, dtype=args.dtype,
                      servers=list(ready), load_average_1m_start=os.getloadavg()[0])
        result["shared_prefix"] = [shared_prefix(ready, s, args.repeats)
                                   for s in args.system_tokens]
        if args.turns:
            result["chat"] = chat(ready, args)
    finally:
        stop_servers(procs)
    result["load_average_1m_end"] = os.getloadavg()[0]
    report(result)
    print(json.dumps(result, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1))
    return result


def report(result: dict) -> None:
    for row in result["shared_prefix"]:
        for name, r in row.items():
            print(f"{name:>9} {r['prompt_tokens']:>6} prompt tokens: cold "
                  f"{r['cold_s']['median']:.4f} s, hit {r['hit_s']['median']:.4f} s, "
                  f"cold/hit {r['cold_over_hit']:.1f}x", file=sys.stderr)
    for name, c in result.get("chat", {}).items():
        print(f"{name:>9} chat: {c['prompt_tokens_total']} prompt tokens, prefilled "
              f"{c['prefilled_tokens_total']}, latency sum {c['latency_total_s']:.3f} s",
              file=sys.stderr)


if __name__ == "__main__":
    main()
