"""Deltas a consumer has not read yet reach it folded into one (engine/delivery.coalesce)."""

from __future__ import annotations

import asyncio

from engine_support import run_with_engine

from mlxserve.engine.delivery import coalesce
from mlxserve.engine.request import (FINISH_ERROR, FINISH_LENGTH, EngineDelta, GenerateRequest,
                                     SamplingParams, StopParams, TokenLogprob)


def _delta(k: int, **extra) -> EngineDelta:
    return EngineDelta("r", [k], f"<{k}>", [TokenLogprob(k, -k / 10)], completion_tokens=k + 1,
                       prompt_tokens=5, **extra)


def test_folded_deltas_keep_every_token_text_and_logprob_in_order():
    first = _delta(0, queue_time_s=0.5, prompt_logprobs=[None])
    last = _delta(3, finish_reason=FINISH_LENGTH, stop_reason=None)
    [folded] = coalesce([first, _delta(1), _delta(2), last])
    assert folded.token_ids == [0, 1, 2, 3] and folded.text == "<0><1><2><3>"
    assert [lp.token_id for lp in folded.logprobs] == [0, 1, 2, 3]
    assert folded.prompt_logprobs == [None] and folded.queue_time_s == 0.5
    assert folded.finish_reason == FINISH_LENGTH
    assert (folded.prompt_tokens, folded.completion_tokens) == (5, 4)


def test_an_error_stays_its_own_delta_after_the_output_before_it():
    failed = EngineDelta("r", finish_reason=FINISH_ERROR, error="boom", completion_tokens=2)
    out = coalesce([_delta(0), _delta(1), failed])
    assert [d.token_ids for d in out] == [[0, 1], []]
    assert out[1] is failed


def test_deltas_without_logprobs_fold_to_none():
    plain = [EngineDelta("r", [k], str(k)) for k in range(3)]
    [folded] = coalesce(plain)
    assert folded.logprobs is None and folded.text == "012"


def test_a_consumer_that_falls_behind_reads_one_delta_with_all_it_missed(tiny_dir):
    """The consumer reads one delta, then waits until the engine has finished the request:
    everything since comes as one delta, equal token for token to a consumer that kept up."""
    def request(rid: str) -> GenerateRequest:
        return GenerateRequest(rid, [3, 4, 5, 6], SamplingParams(temperature=0.0, logprobs=True,
                                                                  top_logprobs=2),
                               StopParams(max_tokens=12, ignore_eos=True))

    async def body(engine):
        kept_up = [d async for d in engine.generate(request("fast"))]
        stream = engine.generate(request("slow"))
        behind = [await stream.__anext__()]
        while engine.stats().total_finished < 2:  # the engine finishes without us reading
            await asyncio.sleep(0.01)
        behind += [d async for d in stream]
        return kept_up, behind

    kept_up, behind = run_with_engine(tiny_dir("qwen3"), body)
    assert len(behind) <= 2  # the first read, then one delta with the 11 (or so) missed
    for field in ("token_ids", "logprobs"):
        fast = [x for d in kept_up for x in getattr(d, field)]
        slow = [x for d in behind for x in getattr(d, field)]
        assert fast == slow and len(fast) == 12
    assert "".join(d.text for d in kept_up) == "".join(d.text for d in behind)
    assert behind[-1].finish_reason == kept_up[-1].finish_reason == FINISH_LENGTH
    assert behind[-1].completion_tokens == 12
