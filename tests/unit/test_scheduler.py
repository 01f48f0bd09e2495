"""The scheduler's bookkeeping, without MLX."""

from __future__ import annotations

import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlxserve.engine.scheduler import Scheduler, SeqState
from mlxserve.errors import EngineOverloaded, InvalidRequest


def make(max_num_seqs=4, budget=16, chunk=8, kv=1000, queue=100) -> Scheduler:
    return Scheduler(max_num_seqs=max_num_seqs, max_num_batched_tokens=budget,
                     prefill_chunk_size=chunk, kv_tokens_total=kv, max_queue_size=queue)


def seq(rid: str, prompt: int, max_tokens: int = 4) -> SeqState:
    return SeqState(rid, prompt, max_tokens)


def test_scheduler_and_request_import_without_mlx():
    code = ("import sys, mlxserve.engine.scheduler, mlxserve.engine.request, "
            "mlxserve.engine.stops; assert 'mlx.core' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_short_prompt_is_prefilled_in_one_step_then_decodes():
    s = make()
    s.add(seq("a", 5, max_tokens=3))
    plan = s.schedule()
    assert [(c.request_id, c.start, c.length, c.is_last) for c in plan.prefills] == [
        ("a", 0, 5, True)]
    assert plan.decodes == []
    assert s.schedule().decodes == ["a"]
    assert s.schedule().decodes == ["a"]
    assert s.schedule().empty  # 3 outputs scheduled: prefill's token + two decodes


def test_long_prompt_is_chunked_and_never_freezes_running_decodes():
    s = make(budget=10, chunk=8)
    s.add(seq("run", 2, max_tokens=100))
    s.schedule()
    s.add(seq("long", 30))
    for _ in range(4):
        plan = s.schedule()
        assert "run" in plan.decodes
        assert plan.num_tokens <= 10
        assert all(c.length <= 8 for c in plan.prefills)
    assert s.running["long"].prefill_done


def test_chunks_cover_the_prompt_exactly_once():
    s = make(budget=7, chunk=5)
    s.add(seq("a", 23))
    covered = []
    while not s.running.get("a") or not s.running["a"].prefill_done:
        for c in s.schedule().prefills:
            covered.extend(range(c.start, c.start + c.length))
    assert covered == list(range(23))


def test_fifo_head_blocks_later_requests_that_would_fit():
    s = make(kv=100)
    s.add(seq("big0", 50, 40))
    s.schedule()
    s.add(seq("big1", 50, 40))  # does not fit while big0 runs
    s.add(seq("small", 2, 2))  # would fit, but must not overtake big1
    plan = s.schedule()
    assert [c.request_id for c in plan.prefills] == ["big0"]  # still reading its prompt
    assert [q.request_id for q in s.waiting] == ["big1", "small"]
    s.finish("big0")
    plan = s.schedule()
    assert [c.request_id for c in plan.prefills][0] == "big1"


def test_max_num_seqs_caps_the_running_set():
    s = make(max_num_seqs=2)
    for i in range(5):
        s.add(seq(f"r{i}", 1))
    s.schedule()
    assert list(s.running) == ["r0", "r1"]
    assert len(s.waiting) == 3


def test_kv_reservation_is_freed_on_finish_and_abort_of_waiting():
    s = make(kv=100)
    s.add(seq("a", 10, 10))
    s.add(seq("b", 10, 10))
    s.schedule()
    assert s.kv_tokens_used == 40
    s.finish("a")
    assert s.kv_tokens_used == 20
    s.add(seq("c", 10, 10))
    assert s.finish("c").request_id == "c"  # still waiting: just removed
    assert s.kv_tokens_used == 20
    assert s.finish("nope") is None


def test_request_that_can_never_fit_is_rejected_up_front():
    s = make(kv=64)
    with pytest.raises(InvalidRequest) as info:
        s.add(seq("huge", 60, 10))
    assert info.value.code == "context_length_exceeded"
    assert not s.waiting


def test_queue_limit_and_duplicate_ids():
    s = make(queue=2)
    s.add(seq("a", 1))
    s.add(seq("b", 1))
    with pytest.raises(EngineOverloaded):
        s.add(seq("c", 1))
    s2 = make()
    s2.add(seq("a", 1))
    with pytest.raises(InvalidRequest):
        s2.add(seq("a", 1))


def test_can_checks_have_no_side_effects():
    s = make()
    s.add(seq("a", 3))
    before = (list(s.waiting), dict(s.running), s.kv_tokens_used)
    assert s.can_admit(s.waiting[0])
    assert s.can_ever_fit(3, 4)
    s.check_request(3, 4)
    assert (list(s.waiting), dict(s.running), s.kv_tokens_used) == before


@settings(max_examples=60, deadline=None)
@given(
    prompts=st.lists(st.tuples(st.integers(1, 40), st.integers(1, 6)), min_size=1,
                     max_size=12),
    budget=st.integers(1, 20), chunk=st.integers(1, 16), seqs=st.integers(1, 5),
)
def test_every_request_completes_within_limits(prompts, budget, chunk, seqs):
    s = make(max_num_seqs=seqs, budget=budget, chunk=chunk, kv=10_000)
    for i, (p, m) in enumerate(prompts):
        s.add(seq(f"r{i}", p, m))
    outputs = {f"r{i}": 0 for i in range(len(prompts))}
    for _ in range(10_000):
        if not s.has_work():
            break
        plan = s.schedule()
        assert plan.num_tokens <= budget and len(s.running) <= seqs
        for c in plan.prefills:
            outputs[c.request_id] += c.is_last
        for rid in plan.decodes:
            outputs[rid] += 1
        for rid, st_ in list(s.running.items()):
            if st_.num_scheduled_output >= st_.max_tokens:
                s.finish(rid)
    assert not s.has_work() and s.kv_tokens_used == 0
    assert outputs == {f"r{i}": m for i, (_, m) in enumerate(prompts)}


def test_verify_steps_take_budget_and_commit_unschedules_rejected_tokens():
    """A row verifying k proposals computes k + 1 tokens (budget and max_tokens alike);
    committing fewer accepted tokens gives the rest back, so the request still produces
    exactly max_tokens."""
    s = make(budget=16)
    s.add(seq("a", 4, max_tokens=10))
    s.add(seq("b", 4, max_tokens=10))
    s.schedule()  # both prefills (each schedules its first output token)
    plan = s.schedule(proposals={"a": 3})
    assert plan.decodes == ["a", "b"] and plan.decode_tokens == {"a": 4}
    assert plan.num_tokens == 5
    s.commit("a", 1 + 2, computed=4)  # the prefill's token was committed before
    assert s.running["a"].num_scheduled_output == 1 + 3
    produced = 1 + 3  # the prefill's token and the accepted ones
    while s.running["a"].wants_decode:
        plan = s.schedule(proposals={"a": 5})
        width = plan.decode_tokens.get("a", 1)
        s.commit("a", width, computed=width)
        produced += width
    assert produced == 10 and s.running["a"].num_scheduled_output == 10


def test_admission_reserves_what_is_used_and_grows_by_blocks():
    s = make(budget=64, kv=1000)
    s.add(seq("a", 10, max_tokens=500))
    s.schedule()
    assert s.kv_tokens_used == 16 + 16  # 11 tokens, one block, plus headroom: not 510
    for _ in range(40):
        s.schedule()
    a = s.running["a"]
    held = a.prompt_len + a.num_scheduled_output
    assert held < a.reserved <= held + 2 * 16  # grown, a block at a time


def test_short_memory_preempts_the_newest_and_resumes_it_first():
    s = make(max_num_seqs=8, budget=64, chunk=64, kv=96)
    for rid in "abc":
        s.add(seq(rid, 10, max_tokens=60))
    s.schedule()  # a, b, c: 32 tokens each
    for rid in "abc":
        s.commit(rid, 1)
    preempted = []
    for _ in range(30):
        plan = s.schedule()
        preempted += plan.preempted
        for rid in plan.decodes:
            s.commit(rid, 1)
        if preempted:
            break
    assert preempted == ["c"]  # the newest goes, the older ones keep running
    assert s.waiting[0].request_id == "c" and list(s.running) == ["a", "b"]
    assert s.num_preemptions == 1 and s.kv_tokens_used <= 96
    s.commit("c", 1)  # its token that was in flight is still its output
    done = s.waiting[0].num_committed
    s.finish("a")
    plan = s.schedule()
    chunk = next(c for c in plan.prefills if c.request_id == "c")
    assert (chunk.start, chunk.length) == (0, 10 + done)  # prompt + output so far again
    assert s.running["c"].num_scheduled_output == done + 1


def test_pinned_requests_reserve_their_whole_life_and_are_never_preempted():
    s = make(max_num_seqs=8, budget=64, kv=120)
    s.add(SeqState("pin", 10, 50, pinned=True))
    s.add(seq("b", 10, max_tokens=100))
    s.schedule()
    assert s.running["pin"].reserved == 60
    for _ in range(100):
        plan = s.schedule()
        assert "pin" not in plan.preempted
        for rid in plan.decodes:
            s.commit(rid, 1)
    assert s.num_preemptions >= 1 and s.kv_tokens_used <= 120


@settings(max_examples=60, deadline=None)
@given(
    prompts=st.lists(st.tuples(st.integers(1, 40), st.integers(1, 60)), min_size=1,
                     max_size=10),
    budget=st.integers(1, 40), chunk=st.integers(1, 16), kv=st.integers(110, 300),
    pinned=st.lists(st.booleans(), min_size=10, max_size=10),
)
def test_every_request_completes_under_preemption(prompts, budget, chunk, kv, pinned):
    """Tokens come back one step late (as the runner pipelines), also for requests
    preempted meanwhile; every request still produces exactly max_tokens."""
    s = make(max_num_seqs=6, budget=budget, chunk=chunk, kv=kv)
    for i, (p, m) in enumerate(prompts):
        s.add(SeqState(f"r{i}", p, m, pinned=pinned[i] and p + m <= kv // 3))
    produced = {f"r{i}": 0 for i in range(len(prompts))}
    in_flight: list[str] = []
    for _ in range(20_000):
        if not s.has_work():
            break
        plan = s.schedule()
        assert plan.num_tokens <= budget and s.kv_tokens_used <= kv
        for rid in in_flight:  # the previous step's tokens are read back now
            s.commit(rid, 1)
            produced[rid] += 1
            if produced[rid] == prompts[int(rid[1:])][1]:
                s.finish(rid)
        in_flight = [c.request_id for c in plan.prefills if c.is_last] + plan.decodes
    assert not s.has_work() and s.kv_tokens_used == 0
    assert produced == {f"r{i}": m for i, (_, m) in enumerate(prompts)}
