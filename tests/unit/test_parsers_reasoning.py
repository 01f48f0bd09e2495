"""Reasoning parsers on the output shapes of each family."""

from __future__ import annotations

import mlxserve  # noqa: F401  (package first, as everywhere)
import pytest

from mlxserve.parsers.merge import parse_chunks
from mlxserve.parsers.reasoning.think_tags import GenericReasoningParser, prompt_ends_inside_reasoning
from mlxserve.parsers.registry import make_reasoning_parser


def parse(name: str, text: str, *, step: int | None = None, opened: bool = False):
    parser = make_reasoning_parser(name, prompt_opens_reasoning=opened)
    step = step or max(1, len(text))
    merged = parse_chunks(parser, [text[i : i + step] for i in range(0, len(text), step)])
    return merged.reasoning, merged.content


@pytest.mark.parametrize("step", [None, 1, 3])
def test_qwen3_think_block_then_answer(step):
    text = "<think>\nThe user greets me.\nI should greet back.\n</think>\n\nHello! How can I help?"
    assert parse("qwen3", text, step=step) == (
        "The user greets me.\nI should greet back.",
        "Hello! How can I help?",
    )


def test_qwen3_without_think_is_all_content():
    assert parse("qwen3", "Just an answer.") == ("", "Just an answer.")


def test_qwen3_empty_think_block_of_disabled_thinking():
    assert parse("qwen3", "<think>\n\n</think>\n\nAnswer") == ("", "Answer")


def test_qwen3_truncated_in_reasoning_keeps_it_as_reasoning():
    assert parse("qwen3", "<think>\nstill thinking about <thi", step=2) == ("still thinking about <thi", "")


def test_qwen3_prompt_opened_think_tag():
    text = "Okay, 2+2 is 4.\n</think>\n\nThe answer is 4."
    assert parse("qwen3", text, opened=True, step=4) == ("Okay, 2+2 is 4.", "The answer is 4.")


def test_deepseek_r1_output_with_only_closing_tag():
    text = "First, consider the question.</think>\n\nParis."
    assert parse("deepseek_r1", text, step=5) == ("First, consider the question.", "Paris.")


def test_deepseek_r1_with_both_tags():
    assert parse("deepseek_r1", "<think>\nhmm\n</think>\nok") == ("hmm", "ok")


def test_deepseek_r1_cut_off_while_thinking_is_reasoning():
    assert parse("deepseek_r1", "Let me think", step=1) == ("Let me think", "")


def test_text_that_looks_like_a_tag_but_is_not_is_content():
    assert parse("qwen3", "<b>bold</b>", step=1) == ("", "<b>bold</b>")
    assert parse("qwen3", "<thinking>x", step=1) == ("", "<thinking>x")


def test_whitespace_inside_reasoning_is_kept_only_in_the_middle():
    assert parse("qwen3", "<think>a \n b  </think>c", step=1) == ("a \n b", "c")


def test_generic_with_custom_tags():
    parser = GenericReasoningParser(start_tag="<reasoning>", end_tag="</reasoning>")
    chunks = ["<reas", "oning>why</reas", "oning>what"]
    merged = parse_chunks(parser, chunks)
    assert (merged.reasoning, merged.content) == ("why", "what")


def test_generic_default_tags():
    assert parse("generic", "<think>r</think>c") == ("r", "c")


@pytest.mark.parametrize("step", [None, 1, 5])
def test_gpt_oss_analysis_then_final(step):
    text = (
        "<|channel|>analysis<|message|>User asks a capital. Answer Paris.<|end|>"
        "<|start|>assistant<|channel|>final<|message|>The capital is Paris.<|return|>"
    )
    assert parse("gpt_oss", text, step=step) == ("User asks a capital. Answer Paris.", "The capital is Paris.")


def test_gpt_oss_final_without_return_token():
    text = "<|channel|>analysis<|message|>x<|end|><|start|>assistant<|channel|>final<|message|>Done"
    assert parse("gpt_oss", text, step=2) == ("x", "Done")


def test_gpt_oss_plain_text_without_harmony_is_content():
    assert parse("gpt_oss", "plain answer <| not a marker", step=3) == ("", "plain answer <| not a marker")


def test_gpt_oss_keeps_tool_call_markup_in_content_for_the_tool_parser():
    text = (
        "<|channel|>analysis<|message|>need a tool<|end|>"
        "<|start|>assistant<|channel|>commentary to=functions.get_weather <|constrain|>json"
        '<|message|>{"city":"Paris"}<|call|>'
    )
    reasoning, content = parse("gpt_oss", text, step=4)
    assert reasoning == "need a tool"
    assert content == (
        "<|start|>assistant<|channel|>commentary to=functions.get_weather <|constrain|>json"
        '<|message|>{"city":"Paris"}<|call|>'
    )


def test_prompt_ends_inside_reasoning():
    assert prompt_ends_inside_reasoning("<|im_start|>assistant\n<think>\n")
    assert not prompt_ends_inside_reasoning("<|im_start|>assistant\n<think>\n\n</think>\n\n")
    assert not prompt_ends_inside_reasoning("<|im_start|>assistant\n")


def test_magistral_think_brackets():
    assert parse("magistral", "[THINK]check units[/THINK]42 km", step=3) == ("check units", "42 km")
