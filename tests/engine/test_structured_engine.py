"""Grammar-constrained rows inside the continuous batch (tiny random model, real llguidance).

A constrained row's output matches its grammar, greedy or sampled; constrained and free
rows decoded together each give their lone greedy tokens; a grammar that fails mid-way
ends only its own request; max_tokens mid-object is "length"; EOS waits for the grammar.
"""

from __future__ import annotations

import asyncio
import json
import re

import jsonschema
import llguidance
import pytest
from engine_support import collect, run_with_engine

from mlxserve.engine.request import GenerateRequest, SamplingParams, StopParams
from mlxserve.structured.constraint import compile_constraint
from mlxserve.structured.spec import StructuredOutput
from mlxserve.structured.tokenizer import build_llg_tokenizer

SCHEMA = {
    "type": "object",
    "properties": {
        "word": {"type": "string", "pattern": "^[a-z]{1,6}$"},
        "n": {"type": "integer", "minimum": 0, "maximum": 99},
        "flags": {"type": "array", "items": {"type": "boolean"}, "maxItems": 2},
    },
    "required": ["word", "n", "flags"],
    "additionalProperties": False,
}
SPECS = {
    "json": StructuredOutput("json_schema", schema=SCHEMA),
    "regex": StructuredOutput("regex", regex=r"[a-z]{2,5}-\d{2}"),
    "choice": StructuredOutput("choice", choices=("alpha", "beta", "gamma")),
}
PROMPTS = ["answer in json", "the cat sat on", "pick one:"]


def _matches(kind: str, text: str) -> bool:
    if kind == "json":
        jsonschema.validate(json.loads(text), SCHEMA)
        return True
    if kind == "regex":
        return re.fullmatch(SPECS["regex"].regex, text) is not None
    return text in SPECS["choice"].choices


class _Setup:
    def __init__(self, engine):
        m = engine.model
        self.engine = engine
        self.tokenizer = m.tokenizer
        self.llg = build_llg_tokenizer(m.tokenizer, m.capabilities.vocab_size, m.eos_token_ids)

    def request(self, rid: str, text: str, kind: str | None, temperature: float = 0.0,
                max_tokens: int = 48, ignore_eos: bool = False, **sampling) -> GenerateRequest:
        constraint = compile_constraint(SPECS[kind], self.llg) if kind else None
        sampling.setdefault("seed", 7)
        return GenerateRequest(rid, self.tokenizer.encode(text),
                               SamplingParams(temperature=temperature, **sampling),
                               StopParams(max_tokens=max_tokens, ignore_eos=ignore_eos),
                               constraint=constraint)


def _run(tiny_dir, body):
    async def main(engine):
        return await body(_Setup(engine))

    return run_with_engine(tiny_dir("qwen2"), main)


def test_constrained_and_free_rows_together_equal_their_lone_answers(tiny_dir):
    rows = [(k, text) for k in SPECS for text in PROMPTS[:2]] + [(None, t) for t in PROMPTS]

    async def body(s: _Setup):
        lone = [await collect(s.engine, s.request(f"lone{i}", t, k)) for i, (k, t) in enumerate(rows)]
        together = await asyncio.gather(*(collect(s.engine, s.request(f"b{i}", t, k))
                                          for i, (k, t) in enumerate(rows)))
        return lone, together

    lone, together = _run(tiny_dir, body)
    for (kind, _), alone, batched in zip(rows, lone, together):
        assert batched["tokens"] == alone["tokens"]
        if kind is not None:
            assert alone["finish"] == "stop", alone
            assert _matches(kind, alone["text"]), alone["text"]


def test_sampled_constrained_rows_match_their_grammar(tiny_dir):
    async def body(s: _Setup):
        reqs = [s.request(f"s{k}{i}", p, k, temperature=1.0, top_p=0.95, seed=i)
                for k in SPECS for i, p in enumerate(PROMPTS)]
        return await asyncio.gather(*(collect(s.engine, r) for r in reqs))

    results = _run(tiny_dir, body)
    kinds = [k for k in SPECS for _ in PROMPTS]
    for kind, result in zip(kinds, results):
        assert result["finish"] == "stop", result
        assert _matches(kind, result["text"]), result["text"]


def test_eos_only_where_the_grammar_accepts(tiny_dir):
    """EOS pushed by +100 logit bias still waits until the JSON object is complete."""
    async def body(s: _Setup):
        eos = sorted(s.engine.model.eos_token_ids)
        req = s.request("eos", PROMPTS[0], "json", logit_bias={eos[0]: 100.0})
        free = s.request("free", PROMPTS[0], None, logit_bias={eos[0]: 100.0})
        return await asyncio.gather(collect(s.engine, req), collect(s.engine, free))

    constrained, free = _run(tiny_dir, body)
    assert free["text"] == "" and free["finish"] == "stop"  # the bias alone ends at once
    assert constrained["finish"] == "stop"
    assert _matches("json", constrained["text"])


def test_max_tokens_mid_object_is_length(tiny_dir):
    async def body(s: _Setup):
        return await collect(s.engine, s.request("short", PROMPTS[0], "json", max_tokens=4))

    result = _run(tiny_dir, body)
    assert result["finish"] == "length" and len(result["tokens"]) == 4
    assert result["text"] and '{"word": "'.startswith(result["text"])  # cut off: honest prefix


def test_grammar_failing_mid_generation_ends_only_its_request(tiny_dir):
    """An ambiguous nesting grammar under a tight Earley-item limit fails once its first
    token is in (bias keeps choosing "["); the free row beside it runs to its length."""
    nest = StructuredOutput("grammar",
                            grammar='start: item\nitem: "[" item "]" | "[" "x" "]" | item item')
    limits = llguidance.LLParserLimits(step_max_items=10, verbose_errors=False)

    async def body(s: _Setup):
        bracket = s.tokenizer.encode("[")[0]
        bad = s.request("nest", PROMPTS[0], None, logit_bias={bracket: 100.0})
        bad.constraint = compile_constraint(nest, s.llg, limits=limits)
        free = s.request("free", PROMPTS[1], None, max_tokens=20, ignore_eos=True)
        return await asyncio.gather(collect(s.engine, bad), collect(s.engine, free))

    failed, free = _run(tiny_dir, body)
    assert failed["finish"] == "error", failed["text"]
    assert "structured output" in failed["deltas"][-1].error
    assert "Too many items" in failed["deltas"][-1].error
    assert failed["text"] == "["  # the token emitted before the failure is delivered
    assert free["finish"] == "length" and len(free["tokens"]) == 20


def test_a_bad_grammar_is_rejected_before_the_batch(tiny_dir):
    async def body(s: _Setup):
        bad = StructuredOutput("json_schema", schema={"type": "object", "not": {}})
        with pytest.raises(Exception) as info:
            compile_constraint(bad, s.llg)
        return info.value

    error = _run(tiny_dir, body)
    assert getattr(error, "status", None) == 400 and "not" in error.message
