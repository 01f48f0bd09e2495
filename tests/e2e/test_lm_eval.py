"""lm-eval 0.4.13's own local-completions client (through benchmarks/eval.py) scores the
shipped multiple-choice task against the real SmolLM2 and Qwen2.5-Coder-0.5B servers; each
item's per-choice loglikelihoods, greedy flags and accuracy equal an independent reference:
mlx-lm's own load of the same converted weights and one full forward per choice."""

from __future__ import annotations

import importlib.util
import os

import mlx.core as mx
import numpy as np
import pytest

from server_process import REPO_ROOT

pytestmark = [pytest.mark.slow, pytest.mark.real_model]
pytest.importorskip("lm_eval", reason="lm-eval is not installed (the test extra has it)")

LL_ATOL = 2e-3  # a sum of a few float32 logprobs from chunked vs one full forward


def _eval_module():
    spec = importlib.util.spec_from_file_location(
        "mlxserve_benchmark_eval", os.path.join(REPO_ROOT, "benchmarks", "eval.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _reference_model(alias: str):
    """mlx-lm's load of the folder the server converted (float32 on CPU)."""
    from mlx_lm.utils import load

    from mlxserve.config import ModelConfig
    from mlxserve.models.loader import materialize
    from mlxserve.models.source import resolve_source

    folder, _ = materialize(resolve_source(alias), ModelConfig(model=alias))
    return load(folder)


def _encode_pair(tok, context: str, continuation: str) -> tuple[list[int], int]:
    """lm-eval's causal split: trailing spaces move to the continuation; the whole text
    is tokenized once and the context's token count marks the split."""
    spaces = len(context) - len(context.rstrip())
    if spaces:
        context, continuation = context[:-spaces], context[-spaces:] + continuation
    whole = tok.encode(context + continuation, add_special_tokens=False)
    return whole, len(tok.encode(context, add_special_tokens=False))


def reference_loglikelihood(model, tok, context: str, continuation: str) -> tuple[float, bool]:
    tokens, ctxlen = _encode_pair(tok, context, continuation)
    logits = model(mx.array(tokens, dtype=mx.uint32)[None])[0].astype(mx.float32)
    logprobs = np.array(logits - mx.logsumexp(logits, axis=-1, keepdims=True))
    rows = range(ctxlen - 1, len(tokens) - 1)  # row j predicts token j + 1
    total = float(sum(logprobs[j, tokens[j + 1]] for j in rows))
    greedy = all(int(np.argmax(logprobs[j])) == tokens[j + 1] for j in rows)
    return total, greedy


@pytest.mark.parametrize("server_fixture, alias", [("default_server", "smollm2-135m"),
                                                   ("qwen_server", "qwen2.5-coder-0.5b")])
def test_lm_eval_multiple_choice_matches_mlx_lm(request, server_fixture, alias):
    server = request.getfixturevalue(server_fixture)
    bench = _eval_module()
    results = bench.evaluate(server.base_url, alias, "completions", (bench.MULTIPLE_CHOICE_TASK,))
    samples = results["samples"][bench.MULTIPLE_CHOICE_TASK]
    model, tok = _reference_model(alias)
    accuracies = []
    for sample in samples:
        pairs = [(context, continuation) for context, continuation in sample["arguments"]]
        served = [(float(r[0][0]), str(r[0][1]) == "True") for r in sample["resps"]]
        expected = [reference_loglikelihood(model, tok, c, x) for c, x in pairs]
        np.testing.assert_allclose([s[0] for s in served], [e[0] for e in expected], atol=LL_ATOL)
        assert [s[1] for s in served] == [e[1] for e in expected]
        scores = [e[0] for e in expected]
        reference_acc = float(int(np.argmax(scores)) == int(sample["doc"]["answer"]))
        margin = sorted(scores)[-1] - sorted(scores)[-2]
        assert sample["acc"] == reference_acc, f"doc {sample['doc_id']}, margin {margin:.4f}"
        accuracies.append(reference_acc)
    assert len(accuracies) == 12
    acc = results["results"][bench.MULTIPLE_CHOICE_TASK]["acc,none"]
    assert acc == pytest.approx(np.mean(accuracies))
