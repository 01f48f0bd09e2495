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


def batch_sizes(max_num_seqs: int, largest: int) -> list[int]:
    """Decode batch sizes to warm: powers of two up to ``largest`` (at most max_num_seqs),
    and that size itself."""
    top = min(largest, max_num_seqs)
    sizes = [1 << k for k in range(top.bit_length()) if 1 << k <= top]
    return sizes + ([top] if top and top not in sizes else [])


def warm_up_batches(runner, sizes: list[int], budget_s: float) -> list[int]:
    """Prefill ``n`` tiny prompts together and decode them, aligned (one length) and
    masked (one row longer), for each size in ``sizes`` while ``budget_s`` lasts: the
    batch sizes live traffic reaches then find their kernels compiled. Returns the sizes
    warmed."""
    import time

    deadline, done = time.monotonic() + budget_s, []
    for n in sizes:
        if time.monotonic() > deadline:
            break
        for longer in (0, 1):
            _decode_batch(runner, n, longer)
        done.append(n)
    return done


def _decode_batch(runner, n: int, longer: int) -> None:
    ids = [f"__warm_up_b{n}_{k}" for k in range(n)]
    lengths = [3 + (longer if k == n - 1 else 0) for k in range(n)]
    requests = [GenerateRequest(rid, [1, 2, 3, 4][:m], SamplingParams(temperature=0.0),
                                StopParams(max_tokens=4)) for rid, m in zip(ids, lengths)]
    plans = [StepPlan(prefills=[PrefillChunk(rid, 0, m, is_last=True)
                                for rid, m in zip(ids, lengths)])]
    _run_and_forget(runner, requests, plans + [StepPlan(decodes=list(ids)) for _ in range(2)])


def prefill_buckets(chunk_size: int) -> list[int]:
    """Every length a bucketed prefill forward of at most ``chunk_size`` tokens pads to."""
    from mlxserve.engine.prefill import bucket_length

    return sorted({bucket_length(n) for n in range(1, chunk_size + 1)})


def warm_up_prefills(runner, buckets: list[int], deadline: float) -> list[int]:
    """One prompt of ``b + 1`` tokens per bucket ``b`` (its head forward is that bucket)."""
    import time

    done = []
    for b in buckets:
        if time.monotonic() > deadline:
            break
        _prefill_once(runner, [f"__warm_up_p{b}"], b + 1)
        done.append(b)
    return done


def group_shapes(buckets: list[int], budget: int, max_rows: int) -> list[tuple[int, int]]:
    """(rows, width) of the bucketed groups a step of ``budget`` prompt tokens forms from
    prompts of similar lengths: rows a power of two from 2 up to ``max_rows``
    (``prefill.group_sizes``), width a prefill bucket, rows x width within the budget.
    A group outside these (a long prompt among short ones) meets its shape on first use."""
    rows = [1 << k for k in range(1, max_rows.bit_length())]
    return [(r, w) for r in rows for w in buckets if r * w <= budget]


def warm_up_groups(runner, shapes: list[tuple[int, int]], deadline: float) -> list[tuple]:
    """One group prefill per (rows, width) shape: ``rows`` prompts of ``width + 1`` tokens
    (their heads pad to that bucket), in order, while the deadline lasts."""
    import time

    done = []
    for rows, width in shapes:
        if time.monotonic() > deadline:
            break
        _prefill_once(runner, [f"__warm_up_g{rows}_{k}" for k in range(rows)], width + 1)
        done.append((rows, width))
    return done


def _prefill_once(runner, ids: list[str], length: int) -> None:
    """Prefill prompts of ``length`` tokens for ``ids`` in one step."""
    requests = [GenerateRequest(rid, [1 + k % 7 for k in range(length)],
                                SamplingParams(temperature=0.0), StopParams(max_tokens=2))
                for rid in ids]
    _run_and_forget(runner, requests, [StepPlan(prefills=[PrefillChunk(rid, 0, length, True)
                                                          for rid in ids])])


def _run_and_forget(runner, requests: list[GenerateRequest], plans: list[StepPlan]) -> None:
    """Add ``requests``, run ``plans``, read everything back, then forget it all."""
    for request in requests:
        runner.add(request, seed=0)
    try:
        for plan in plans:
            _, failures = runner.run(plan)
            if failures:
                raise RuntimeError(failures[0].error)
        runner.collect()
    finally:
        runner.reset()
