"""Structured outputs on the real SmolLM2-135M (its GGUF-built tokenizer): the schema
corpus greedy and sampled, mixed batches, JSON mode, regex and choice, streaming."""

from __future__ import annotations

import asyncio
import json
import re

import openai
import pytest

from structured_schemas import SCHEMAS
from structured_support import run_corpus, schema_format, validate

pytestmark = [pytest.mark.slow, pytest.mark.real_model]
MODEL = "smollm2-135m"


def test_every_corpus_answer_validates_greedy_and_sampled(default_server):
    problems = run_corpus(f"{default_server.base_url}/v1", MODEL)
    assert not problems, "\n".join(problems)
