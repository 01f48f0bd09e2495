"""Hypothesis fuzz of chat message, content-part and tool shapes straight at the serving
layer (GenerationService.prepare_chat on a real engine with a real tiny model): every
input is either prepared or refused with a 4xx MlxserveError; nothing else escapes."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from mlxserve.config import EngineConfig, ModelConfig
from mlxserve.engine.client import AsyncEngine
from mlxserve.errors import MlxserveError
from mlxserve.serving.chat_input import ChatInput, GenerationOptions
from mlxserve.serving.generation import GenerationService, ServingSettings
from mlxserve.serving.params import ContextLimits
from robust_support import TINY_CONTEXT

JSON_SCALARS = st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats() | st.text(
    max_size=30)
JSON = st.recursive(JSON_SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
    st.text(max_size=8), inner, max_size=4), max_leaves=12)
ROLES = st.sampled_from(["system", "developer", "user", "assistant", "tool", "bot", ""]) | JSON
PART_TYPES = st.sampled_from(["text", "input_text", "image_url", "video_url", "video",
                              "input_audio", "file", "refusal"]) | JSON
PARTS = st.fixed_dictionaries({"type": PART_TYPES}, optional={
    "text": st.text(max_size=40) | JSON, "image_url": JSON | st.fixed_dictionaries(
        {"url": st.sampled_from(["data:image/png;base64,AAAA", "file:///etc/passwd",
                                 "http://127.0.0.1/x.png", ""]) | JSON})}) | JSON
CONTENT = st.text(max_size=60) | st.none() | st.lists(PARTS, max_size=4) | JSON
FUNCTION = st.fixed_dictionaries({"name": st.text(max_size=10) | JSON}, optional={
    "arguments": st.sampled_from(['{"a": 1}', "{", "[]", ""]) | JSON, "parameters": JSON})
TOOL_CALLS = st.lists(st.fixed_dictionaries({"function": FUNCTION | JSON}, optional={
    "id": st.text(max_size=6) | JSON, "type": st.just("function") | JSON}) | JSON, max_size=3)
MESSAGE = st.fixed_dictionaries({"role": ROLES}, optional={
    "content": CONTENT, "tool_calls": TOOL_CALLS | JSON, "tool_call_id": JSON,
    "name": JSON, "reasoning_content": JSON}) | JSON
TOOLS = st.none() | st.lists(st.fixed_dictionaries({"type": st.just("function") | JSON}, optional={
    "function": FUNCTION | JSON}) | JSON, max_size=3) | JSON
TOOL_CHOICE = st.none() | st.sampled_from(["none", "auto", "required", "x"]) | JSON


@pytest.fixture(scope="module")
def service(robust_model_path):
    engine = AsyncEngine(ModelConfig(model=robust_model_path),
                         EngineConfig(max_model_len=TINY_CONTEXT))
    asyncio.run(engine.start())
    yield GenerationService(engine, ServingSettings(limits=ContextLimits(TINY_CONTEXT)))
    asyncio.run(engine.shutdown())


@seed(11)
@settings(max_examples=250, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(messages=st.lists(MESSAGE, min_size=0, max_size=5) | JSON, tools=TOOLS,
       tool_choice=TOOL_CHOICE)
def test_any_message_tool_or_part_shape_is_prepared_or_a_4xx(service, messages, tools,
                                                             tool_choice):
    chat = ChatInput(messages=messages, options=GenerationOptions(max_tokens=8), tools=tools,
                     tool_choice=tool_choice)
    try:
        prepared = asyncio.run(service.prepare_chat(chat, "fuzz"))
    except MlxserveError as e:
        assert 400 <= e.status < 500 and e.message, (e.status, e.message)
        return
    assert prepared.token_ids and len(prepared.requests) == 1
