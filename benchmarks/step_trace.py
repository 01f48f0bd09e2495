"""Where a served load's time went, from an engine step trace (``MLXSERVE_STEP_TRACE``).

    MLXSERVE_STEP_TRACE=/tmp/steps.jsonl python benchmarks/serve_load.py ...
    python benchmarks/step_trace.py /tmp/steps.jsonl [--out summary.json]

A trace is split into bursts (runs of steps between idle moments: a step after which
nothing ran or waited). Per burst: its length, its steps by kind — ``prefill`` (prompt
chunks only), ``mixed`` (chunks and decode rows), ``decode`` (decode rows only) — with
their count, seconds and median ms, the prompt tokens prefilled (and their rate over the
steps that held them), and decode-only steps' median ms by rows (1, 2-8, 9-32, 33-64,
65-128, 129-256, more). The first step of a burst includes the idle gap before it and is
left out of the sums.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

ROW_BINS = ((1, 1), (2, 8), (9, 32), (33, 64), (65, 128), (129, 256), (257, 1 << 30))


def bursts(steps: list[dict]) -> list[list[dict]]:
    out, current = [], []
    for step in steps:
        current.append(step)
        if not (step["running"] or step["waiting"]):
            out.append(current)
            current = []
    return out + ([current] if current else [])


def kind(step: dict) -> str:
    if step["prefill"] and step["decode"]:
        return "mixed"
    return "prefill" if step["prefill"] else "decode"


def phase_seconds(steps: list[dict]) -> dict:
    """Seconds per phase of the steps' own time (traces from before phases: empty)."""
    total: dict[str, float] = {}
    for step in steps:
        for phase, ms in step.get("phases", {}).items():
            total[phase] = total.get(phase, 0.0) + ms
    return {phase: round(ms / 1000, 3) for phase, ms in total.items()}


def summarize(burst: list[dict]) -> dict:
    body = burst[1:]  # the first step's period holds the idle gap before the burst
    kinds = {}
    for name in ("prefill", "mixed", "decode"):
        ms = [s["ms"] for s in body if kind(s) == name]
        if ms:
            kinds[name] = dict(steps=len(ms), seconds=round(sum(ms) / 1000, 3),
                               ms_p50=round(float(np.median(ms)), 2),
                               phases_s=phase_seconds([s for s in body if kind(s) == name]))
    tokens = sum(s["tokens"] for s in burst)
    prefill_s = sum(s["ms"] for s in body if s["prefill"]) / 1000
    by_rows = {}
    for lo, hi in ROW_BINS:
        ms = [s["ms"] for s in body if kind(s) == "decode" and lo <= s["decode"] <= hi]
        if ms:
            label = str(lo) if lo == hi else f"{lo}-{hi}" if hi < 1 << 30 else f">{lo - 1}"
            by_rows[label] = dict(steps=len(ms), ms_p50=round(float(np.median(ms)), 2))
    return dict(start_s=burst[0]["t"], seconds=round(sum(s["ms"] for s in body) / 1000, 3),
                steps=len(burst), most_rows=max(s["decode"] for s in burst),
                prefill_tokens=tokens, by_kind=kinds, decode_ms_by_rows=by_rows,
                prefill_tokens_per_s=round(tokens / prefill_s) if prefill_s else None)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("trace")
    ap.add_argument("--min-steps", type=int, default=3, help="shorter bursts are left out")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    steps = [json.loads(line) for line in Path(args.trace).read_text().splitlines() if line]
    rows = [summarize(b) for b in bursts(steps) if len(b) >= args.min_steps]
    for r in rows:
        kinds = ", ".join(f"{k} {v['steps']} steps {v['seconds']} s (p50 {v['ms_p50']} ms)"
                          for k, v in r["by_kind"].items())
        decode = ", ".join(f"{k}: {v['ms_p50']} ms" for k, v in r["decode_ms_by_rows"].items())
        print(f"t={r['start_s']:.1f} s: {r['seconds']} s, up to {r['most_rows']} rows, "
              f"{r['prefill_tokens']} prompt tokens ({r['prefill_tokens_per_s']} tok/s in "
              f"steps with prefill); {kinds}; decode by rows {decode}")
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
