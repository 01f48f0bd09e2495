"""The draft-model and MTP proposers' own caches, driven directly (the engine's part
simulated): a draft equal to the target must propose exactly the target's greedy
continuation after any number of accepted tokens, skipped steps and rows of different k
(its per-row catch-up and trim are right); MTP proposals of a row do not depend on the
other rows of its batch."""

from __future__ import annotations

import mlx.core as mx
import pytest
from mlx_lm.models.cache import make_prompt_cache
from tiny_models import make_tiny_model
from tiny_mtp import make_tiny_mtp_model

from mlxserve.config import ModelConfig, SpeculativeConfig
from mlxserve.engine.request import SamplingParams
from mlxserve.models.hidden import logits_and_hidden
from mlxserve.models.loader import load_model
from mlxserve.spec.draft import DraftProposer
from mlxserve.spec.proposer import ProposalRow
from mlxserve.spec.registry import ProposerContext, build_proposer

PROMPTS = {"a": [5, 17, 42, 8], "b": [9, 3, 100, 11, 12, 13, 77], "c": [1, 2]}
K = {"a": 3, "b": 2, "c": 4}
GREEDY = SamplingParams(temperature=0.0)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("tiny-proposers")


def _greedy_reference(model, prompt: list[int], n: int) -> list[int]:
    cache = make_prompt_cache(model)
    logits = model(mx.array(prompt)[None], cache=cache)
    out = []
    for _ in range(n):
        out.append(int(mx.argmax(logits[0, -1])))
        logits = model(mx.array([[out[-1]]]), cache=cache)
    return out


def test_a_draft_equal_to_the_target_proposes_its_continuation(root):
    target = load_model(ModelConfig(model=make_tiny_model(root, "qwen3")))
    refs = {rid: _greedy_reference(target.model, p, 64) for rid, p in PROMPTS.items()}
    proposer = DraftProposer(target.model, 277)
    history = {rid: list(p) + [refs[rid][0]] for rid, p in PROMPTS.items()}
    for step in range(10):
        skipped = "b" if step in (2, 3) else None  # backed off: one plain token each
        rows = [ProposalRow(rid, history[rid], K[rid], GREEDY) for rid in PROMPTS
                if rid != skipped]
        for row, proposal in zip(rows, proposer.propose(rows)):
            rid = row.request_id
            done = len(history[rid]) - len(PROMPTS[rid])
            assert proposal.tokens == refs[rid][done:done + row.k], (step, rid)
            kept = (step + len(rid)) % (row.k + 1)  # the verify kept 0..k of them
            proposer.commit(rid, proposal.tokens[:kept])
            history[rid] += refs[rid][done:done + kept + 1]
        if skipped:
            done = len(history[skipped]) - len(PROMPTS[skipped])
            history[skipped].append(refs[skipped][done])
    proposer.drop("a")
    proposer.drop("a")  # dropping twice is allowed
    assert set(proposer.rows.batch.ids) == {"b", "c"}


def _mtp_run(target, folder, rids: list[str]) -> dict[str, list[list[int]]]:
    """Drive the MTP proposer with the target's real hidden states (plain decode: the
    engine verified nothing, so each step commits no drafted token)."""
    proposer = build_proposer(SpeculativeConfig(method="mtp", num_speculative_tokens=3),
                              ProposerContext(target, ModelConfig(model=folder)))
    state, out = {}, {rid: [] for rid in rids}
    for rid in rids:
        cache = make_prompt_cache(target.model)
        logits, hidden = logits_and_hidden(target.model, mx.array(PROMPTS[rid])[None], cache)
        state[rid] = (cache, PROMPTS[rid] + [int(mx.argmax(logits[0, -1]))], hidden[0, -1])
    for step in range(5):
        rows = [ProposalRow(rid, state[rid][1], K[rid], GREEDY, hidden=state[rid][2])
                for rid in rids]
        for row, proposal in zip(rows, proposer.propose(rows)):
            cache, tokens, _ = state[row.request_id]
            out[row.request_id].append(proposal.tokens)
            proposer.commit(row.request_id, [])
            logits, hidden = logits_and_hidden(target.model, mx.array([[tokens[-1]]]), cache)
            tokens.append(int(mx.argmax(logits[0, -1])))
            state[row.request_id] = (cache, tokens, hidden[0, -1])
    return out


def test_mtp_proposals_of_a_row_do_not_depend_on_its_batch(root):
    folder = make_tiny_mtp_model(root, "qwen3_5")
    target = load_model(ModelConfig(model=folder))
    together = _mtp_run(target, folder, list(PROMPTS))
    for rid in PROMPTS:
        alone = _mtp_run(target, folder, [rid])[rid]
        assert together[rid] == alone
        assert [len(p) for p in alone] == [K[rid]] * 5
