"""The short form of benchmarks/soak.py in CI: the same mixed workload (chat, completions,
streaming, n > 1, logprobs, stops, tools, deadlines, clients leaving, bad requests) over
HTTP against the real server on the tiny model: no 5xx, every answer checks out, the idle
server's RSS at the end within 5% of its RSS idle after warm-up. The full form (2,000
requests on SmolLM2) is the benchmark."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import sys

SOAK_PATH = os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks", "soak.py")
REQUESTS = 400


def _soak_module():
    spec = importlib.util.spec_from_file_location("mlxserve_soak_benchmark", SOAK_PATH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it loads
    spec.loader.exec_module(module)
    return module


def test_short_mixed_soak(robust_server):
    soak = _soak_module()
    # A first round warms the allocators: the tiny model's quarter of 400 requests takes
    # ~1 s, before the process's heap has reached its working size (RSS +10% in round one,
    # then +0.1-0.2% per round).
    warm = soak.summarize(asyncio.run(soak.run_soak(
        robust_server.base_url, robust_server.process.pid, REQUESTS, concurrency=16, seed=3)))
    assert warm["responses_5xx"] == 0 and warm["problem_count"] == 0, warm["problems"]
    result = asyncio.run(soak.run_soak(robust_server.base_url, robust_server.process.pid,
                                       REQUESTS, concurrency=16, seed=7, warmup_fraction=0.25))
    summary = soak.summarize(result)
    print(json.dumps({k: summary[k] for k in ("statuses", "latency", "rss_max_over_warm",
                                               "rss_idle_end_over_warm")}))
    assert summary["requests"] == REQUESTS
    assert summary["responses_5xx"] == 0 and summary["problem_count"] == 0, summary["problems"]
    assert {"200", "400"} <= set(summary["statuses"])  # both kinds really ran
    assert summary["rss_idle_end_over_warm"] <= soak.RSS_TOLERANCE, summary
