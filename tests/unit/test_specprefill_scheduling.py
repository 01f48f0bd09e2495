"""A sparse prefill is scheduled like any prefill (pure scheduler, no MLX): draft chunks
over the prompt within the token budget, beside running decodes, then (once scored) the
kept tokens, with the KV reservation lowered to them."""

from __future__ import annotations

from mlxserve.engine.scheduler import Scheduler, SeqState


def _scheduler() -> Scheduler:
    s = Scheduler(max_num_seqs=4, max_num_batched_tokens=300, prefill_chunk_size=256,
                  kv_tokens_total=10_000)
    s.sparse_prefill = lambda rid, cached: rid == "long"
    return s


def test_draft_then_kept_chunks_beside_a_running_decode():
    s = _scheduler()
    s.add(SeqState("short", 10, 50))
    s.schedule()  # short prefills whole
    s.add(SeqState("long", 1000, 20))
    kinds = []
    for _ in range(5):
        plan = s.schedule()
        assert plan.decodes == ["short"]  # the running stream never waits
        assert plan.num_tokens <= 300
        kinds += [(c.draft, c.start, c.length, c.is_last) for c in plan.prefills]
    assert kinds == [(True, 0, 256, False), (True, 256, 256, False), (True, 512, 256, False),
                     (True, 768, 232, True)]  # then it waits for its scores
    short = s.running["short"].reserved  # by use (admission by use); the sparse one: whole
    assert s.kv_tokens_used == short + 1020  # life, as it cannot be preempted
    s.sparse_selected("long", 300)
    assert s.kv_tokens_used == short + 320
    plans = [s.schedule() for _ in range(2)]
    chunks = [(c.draft, c.start, c.length, c.is_last) for p in plans for c in p.prefills]
    assert chunks == [(False, 0, 256, False), (False, 256, 44, True)]
    assert s.running["long"].prefill_done
    assert s.schedule().decodes == ["short", "long"]
