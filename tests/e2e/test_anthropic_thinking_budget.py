"""thinking.budget_tokens is enforced: on a tiny random model behind the DeepSeek-R1
reasoning parser (everything before ``</think>`` is reasoning, and a random model never
writes the tag), reasoning stops after the budget and the rest of max_tokens is the answer;
without a budget all of it stays reasoning. Bad budgets are Anthropic 400s."""

from __future__ import annotations

import anthropic
import pytest

from anthropic_support import assert_anthropic_error, post
from server_process import start_server

BUDGET = 1024
MAX_TOKENS = BUDGET + 64
QUESTION = [{"role": "user", "content": "think"}]
GREEDY = {"temperature": 0, "ignore_eos": True}  # a random model may write EOS anywhere


@pytest.fixture(scope="module")
def thinking_server(tiny_model_path):
    server = start_server(tiny_model_path, ["--served-model-name", "tiny-thinker",
                                            "--max-model-len", "4096",
                                            "--reasoning-parser", "deepseek_r1"])
    yield server
    server.stop()


@pytest.fixture()
def claude(thinking_server) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=thinking_server.base_url, api_key="x",
                               max_retries=0, timeout=300)


def think(claude, thinking: dict | None, stream: bool = False):
    fields = dict(model="tiny-thinker", max_tokens=MAX_TOKENS, messages=QUESTION,
                  extra_body={**GREEDY, "thinking": thinking} if thinking else GREEDY)
    if not stream:
        return claude.messages.create(**fields)
    with claude.messages.stream(**fields) as events:
        return events.get_final_message()


def blocks(message) -> dict[str, str]:
    return {b.type: b.thinking if b.type == "thinking" else b.text for b in message.content}


def test_reasoning_is_closed_after_the_budget(claude, thinking_server):
    free = think(claude, None)
    assert [b.type for b in free.content] == ["thinking"], "the model closed its reasoning"
    assert free.stop_reason == "max_tokens" and free.usage.output_tokens == MAX_TOKENS
    budgeted = think(claude, {"type": "enabled", "budget_tokens": BUDGET})
    assert [b.type for b in budgeted.content] == ["thinking", "text"]
    assert budgeted.stop_reason == "max_tokens" and budgeted.usage.output_tokens == MAX_TOKENS
    reasoning, answer = blocks(budgeted)["thinking"], blocks(budgeted)["text"]
    assert reasoning and answer and "</think>" not in reasoning + answer
    # the same greedy reasoning up to the budget (the free run's goes on past it)
    assert blocks(free)["thinking"].startswith(reasoning)
    streamed = think(claude, {"type": "enabled", "budget_tokens": BUDGET}, stream=True)
    assert blocks(streamed) == blocks(budgeted)
    assert streamed.usage.output_tokens == budgeted.usage.output_tokens


@pytest.mark.parametrize("thinking, mentions", [
    ({"type": "enabled"}, "budget_tokens"),
    ({"type": "enabled", "budget_tokens": 1023}, "at least 1024"),
    ({"type": "enabled", "budget_tokens": MAX_TOKENS}, "greater than thinking.budget_tokens"),
    ({"type": "enabled", "budget_tokens": "2000"}, "integer"),
])
def test_bad_budgets_are_anthropic_400(thinking_server, thinking, mentions):
    body = {"model": "tiny-thinker", "max_tokens": MAX_TOKENS, "messages": QUESTION,
            "thinking": thinking}
    message = assert_anthropic_error(post(thinking_server, "/v1/messages", body), 400,
                                     "invalid_request_error")
    assert mentions in message
