"""One draft model for speculative decoding and SpecPrefill: a source both name is loaded
once (the proposer and the scorer hold the same model object, each with its own caches),
and greedy output with both on equals output with both off (keep 1.0, a prompt over the
SpecPrefill threshold), on tiny random models (float32 CPU)."""

from __future__ import annotations

import numpy as np
import pytest
from engine_support import collect, greedy, run_with_engine
from tiny_models import make_tiny_model

from mlxserve.config import EngineConfig, SpecPrefillConfig, SpeculativeConfig

PROMPT = [int(t) for t in np.random.default_rng(11).integers(3, 250, 400)]
NEW_TOKENS = 16
THRESHOLD = 256  # the prompt is over it: SpecPrefill is on for it by the server's default


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny-draft-share")
    target = make_tiny_model(root, "llama")
    draft = make_tiny_model(root, "qwen3", seed=1)  # same tokenizer, other weights
    return target, draft


def _both_on(draft: str, specprefill_draft: str | None) -> EngineConfig:
    speculative = SpeculativeConfig(method="draft_model", model=draft, num_speculative_tokens=3,
                                    options={"adaptive": False})  # verify every step
    specprefill = SpecPrefillConfig(enabled=True, draft_model=specprefill_draft,
                                    threshold=THRESHOLD, keep_pct=1.0)
    return EngineConfig(speculative=speculative, specprefill=specprefill,
                        enable_prefix_caching=False)


async def _generate_and_inspect(engine) -> dict:
    out = await collect(engine, greedy("r", PROMPT, NEW_TOKENS))
    core = engine._core  # the engine's two draft users, read once the request is done
    return dict(tokens=out["tokens"], prefilled=out["deltas"][-1].prefilled_tokens,
                stats=engine.stats(), drafts=dict(engine.model.drafts),
                proposer_model=id(core.speculation.proposer.model),
                scorer_model=id(core.specprefill.scorer.model))


# None: SpecPrefill's draft defaults to the speculative draft; "respelled": the same folder
# named another way (a trailing slash) still resolves to the one loaded draft
@pytest.mark.parametrize("spelling", [None, "respelled"])
def test_one_draft_serves_speculation_and_specprefill(pair, spelling):
    target, draft = pair
    plain = run_with_engine(target, lambda e: collect(e, greedy("p", PROMPT, NEW_TOKENS)),
                            EngineConfig(enable_prefix_caching=False))
    specprefill_draft = None if spelling is None else draft + "/"
    got = run_with_engine(target, _generate_and_inspect, _both_on(draft, specprefill_draft))

    assert len(got["drafts"]) == 1  # loaded once for both users
    [loaded_draft] = got["drafts"].values()
    assert got["proposer_model"] == id(loaded_draft.model)  # the same object, not a copy
    assert got["scorer_model"] == id(loaded_draft.model)
    assert got["tokens"] == plain["tokens"]
    assert got["prefilled"] == len(PROMPT)  # the sparse path ran, keeping every token
    assert got["stats"].specprefill_requests == 1
    assert got["stats"].spec_decode["draft_model"]["num_draft_tokens"] > 0
