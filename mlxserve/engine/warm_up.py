"""Run every batch path of a runner once on tiny prompts, then forget it all (MLX's CUDA
back-end compiles some kernels on first use, which takes seconds)."""

from __future__ import annotations

from mlxserve.engine.request import GenerateRequest, SamplingParams, StopParams
from mlxserve.engine.scheduler import PrefillChunk, StepPlan


def warm_up(runner) -> None:
    greedy, sampled = SamplingParams(temperature=0.0), SamplingParams(
        temperature=1.0, top_k=4, top_p=0.9, min_p=0.01, seed=0)
    prompts = {"a": ([1, 2, 3], greedy), "b": ([4, 5], sampled), "c": ([6, 7, 8, 9], greedy),
               "d": ([1, 2], greedy), "e": ([3, 4], greedy)}
    for rid, (tokens, params) in prompts.items():
        runner.add(GenerateRequest(f"__warm_up_{rid}", tokens, params,
                                   StopParams(max_tokens=8)), seed=0)

    def step(decodes: str, prefills: str = "") -> None:
        plan = StepPlan(decodes=[f"__warm_up_{r}" for r in decodes])
        for r in prefills:
            n = len(prompts[r][0])
            plan.prefills.append(PrefillChunk(f"__warm_up_{r}", 0, n, is_last=True))
        _, failures = runner.run(plan)
        if failures:
            raise RuntimeError(failures[0].error)

    try:
        for decodes, prefills in (("", "ab"), ("ab", "c"), ("abc", ""), ("ac", ""),
                                  ("a", ""), ("", "de"), ("de", ""), ("d", ""), ("", "")):
            step(decodes, prefills)
        runner.collect()
    finally:
        runner.reset()
