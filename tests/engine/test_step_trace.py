"""The engine's step trace (MLXSERVE_STEP_TRACE, engine/step_trace.py) and its summary
(benchmarks/step_trace.py): a real engine writes a line per step that adds up to the
work it was given."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

from engine_support import collect, greedy, run_with_engine

from tiny_models import make_tiny_model

REPO = Path(__file__).resolve().parents[2]


def test_a_trace_line_per_step_accounts_for_every_token(tmp_path, monkeypatch):
    trace = tmp_path / "steps.jsonl"
    monkeypatch.setenv("MLXSERVE_STEP_TRACE", str(trace))
    path = str(make_tiny_model(tmp_path, "qwen3"))
    prompts = [[1 + k] * (5 + 3 * k) for k in range(3)]

    async def body(engine):
        return await asyncio.gather(*(collect(engine, greedy(f"r{k}", p, 6))
                                      for k, p in enumerate(prompts)))

    results = run_with_engine(path, body)
    assert all(len(r["tokens"]) == 6 for r in results)
    steps = [json.loads(line) for line in trace.read_text().splitlines()]
    assert {"t", "ms", "decode", "verify", "prefill", "tokens", "running", "waiting"} <= set(steps[0])
    # every prompt token prefilled once; each request's first token comes from its prefill,
    # the other five from decode rows
    assert sum(s["tokens"] for s in steps) == sum(len(p) for p in prompts)
    assert sum(s["prefill"] for s in steps) >= len(prompts)
    assert sum(s["decode"] for s in steps) == 5 * len(prompts)
    assert all(s["ms"] >= 0 for s in steps) and steps[-1]["running"] == steps[-1]["waiting"] == 0
    for s in steps:  # where each step's own time went
        assert {"plan", "launch", "collect", "deliver"} <= set(s["phases"])
        assert all(v >= 0 for v in s["phases"].values())
    times = [s["t"] for s in steps]
    assert times == sorted(times)

    summary = tmp_path / "summary.json"
    out = subprocess.run([sys.executable, str(REPO / "benchmarks" / "step_trace.py"),
                          str(trace), "--min-steps", "1", "--out", str(summary)],
                         capture_output=True, text=True, check=True)
    bursts = json.loads(summary.read_text())
    assert sum(b["prefill_tokens"] for b in bursts) == sum(len(p) for p in prompts)
    assert "prompt tokens" in out.stdout
