"""Prompt logprobs through the real server: OpenAI's legacy echo + logprobs (also with
max_tokens 0 and token-id prompts), vLLM's prompt_logprobs on completions and chat, the
tokenizer endpoints, and the 400s. Values are checked against one full mlx-lm forward of
the same tiny model (float32 CPU)."""

from __future__ import annotations

from types import SimpleNamespace

import httpx
import mlx.core as mx
import numpy as np
import openai
import pytest

from e2e_support import TINY_NAME

TEXT = "the cat sat on the mat and then"
ATOL = 1e-3  # float32, logits up to ~60 on the tiny models: a few ulps


@pytest.fixture(scope="module")
def reference(tiny_model_path):
    from mlx_lm.utils import load

    return load(tiny_model_path)


def full_forward_logprobs(model, prompt: list[int]) -> np.ndarray:
    logits = model(mx.array(prompt, dtype=mx.uint32)[None])[0, :-1].astype(mx.float32)
    return np.array(logits - mx.logsumexp(logits, axis=-1, keepdims=True))


def _tokenize(server, text: str) -> list[int]:
    r = httpx.post(f"{server.base_url}/tokenize", json={"prompt": text})
    assert r.status_code == 200
    return r.json()["tokens"]


def test_echo_logprobs_of_token_ids_equal_a_full_forward(tiny_client, tiny_server, reference):
    model, tok = reference
    prompt = tok.encode(TEXT)
    # logprobs=1: the legacy top_logprobs dicts are keyed by token text, which the tiny
    # byte-level vocabulary repeats ("\ufffd"); vLLM's id-keyed shape is checked below
    echoed = tiny_client.completions.create(model=TINY_NAME, prompt=prompt, echo=True,
                                            logprobs=1, max_tokens=4, temperature=0)
    plain = tiny_client.completions.create(model=TINY_NAME, prompt=prompt, logprobs=1,
                                           max_tokens=4, temperature=0)
    lp, gen = echoed.choices[0].logprobs, plain.choices[0].logprobs
    n = len(prompt)
    assert len(lp.tokens) == n + 4
    assert lp.token_logprobs[0] is None and lp.top_logprobs[0] is None
    ref = full_forward_logprobs(model, prompt)
    np.testing.assert_allclose(lp.token_logprobs[1:n], [ref[i, prompt[i + 1]] for i in range(n - 1)],
                               atol=ATOL)
    for i in range(1, n):  # the best alternative and the prompt token (OpenAI: up to k + 1)
        assert len(lp.top_logprobs[i]) in (1, 2) and lp.tokens[i] in lp.top_logprobs[i]
        assert max(lp.top_logprobs[i].values()) == pytest.approx(ref[i - 1].max(), abs=ATOL)
    assert lp.tokens[:n] == [tok.decode([t]) for t in prompt]
    # the generated part is the same as without echo, values included
    assert lp.tokens[n:] == gen.tokens
    assert lp.token_logprobs[n:] == gen.token_logprobs
    assert echoed.choices[0].text == tok.decode(prompt) + plain.choices[0].text
    assert lp.text_offset[0] == 0
    assert lp.text_offset[n:] == [o + len(tok.decode(prompt)) for o in gen.text_offset]
    assert echoed.usage.prompt_tokens == n


def _best_per_text(tok, row: np.ndarray, token: int, k: int) -> tuple[dict[str, float], int]:
    """The legacy top_logprobs a position should have: the k best ids and the prompt token,
    keyed by text, each key holding the highest logprob of its ids; and how many ids."""
    ids = {int(t) for t in np.argsort(row)[::-1][:k]} | {token}
    best: dict[str, float] = {}
    for t in ids:
        best[tok.decode([t])] = max(float(row[t]), best.get(tok.decode([t]), -np.inf))
    return best, len(ids)


def test_echo_top_logprobs_keep_the_best_value_of_tokens_with_equal_text(tiny_client, reference):
    """Legacy top_logprobs are keyed by text, and the tiny byte-level vocabulary decodes many
    ids to "\ufffd": a shared key holds the highest logprob of its ids (never a lower
    alternative's nor the prompt token's over a better one), so max(values) stays the
    position's best, which lm-eval's is_greedy compares with the token's own logprob."""
    model, tok = reference
    prompt = tok.encode(TEXT)
    k = 5
    out = tiny_client.completions.create(model=TINY_NAME, prompt=prompt, echo=True, logprobs=k,
                                         max_tokens=0)
    lp, ref = out.choices[0].logprobs, full_forward_logprobs(model, prompt)
    shared = 0
    for i in range(1, len(prompt)):
        expected, ids = _best_per_text(tok, ref[i - 1], prompt[i], k)
        shared += len(expected) < ids
        assert lp.top_logprobs[i].keys() == expected.keys()
        for text, value in expected.items():
            assert lp.top_logprobs[i][text] == pytest.approx(value, abs=ATOL)
        assert max(lp.top_logprobs[i].values()) == pytest.approx(ref[i - 1].max(), abs=ATOL)
        assert lp.token_logprobs[i] == pytest.approx(ref[i - 1, prompt[i]], abs=ATOL)
    assert shared > 0  # the prompt has positions where distinct ids share a text


def test_score_only_with_max_tokens_0(tiny_client, tiny_server):
    prompt_ids = _tokenize(tiny_server, TEXT)
    scored = tiny_client.completions.create(model=TINY_NAME, prompt=TEXT, echo=True, logprobs=1,
                                            max_tokens=0)
    generated = tiny_client.completions.create(model=TINY_NAME, prompt=TEXT, echo=True,
                                               logprobs=1, max_tokens=3, temperature=0)
    choice = scored.choices[0]
    assert choice.text == TEXT
    assert choice.finish_reason == "length"
    assert scored.usage.completion_tokens == 0 and scored.usage.prompt_tokens == len(prompt_ids)
    n = len(prompt_ids)
    assert len(choice.logprobs.tokens) == n
    assert choice.logprobs.token_logprobs == generated.choices[0].logprobs.token_logprobs[:n]
    assert choice.logprobs.top_logprobs[1:] == generated.choices[0].logprobs.top_logprobs[1:n]


def test_echo_logprobs_streamed_equal_the_collected_answer(tiny_client):
    request = dict(model=TINY_NAME, prompt=[TEXT, "hello there"], echo=True, logprobs=1,
                   max_tokens=3, temperature=0, n=2)
    full = tiny_client.completions.create(**request)
    texts: dict[int, str] = {}
    logprobs: dict[int, list] = {}
    for chunk in tiny_client.completions.create(stream=True, **request):
        for c in chunk.choices:
            texts[c.index] = texts.get(c.index, "") + c.text
            if c.logprobs is not None:
                logprobs.setdefault(c.index, []).extend(c.logprobs.token_logprobs)
    assert len(full.choices) == 4  # echo with n > 1: every choice carries its prompt
    for choice in full.choices:
        assert texts[choice.index] == choice.text
        assert logprobs[choice.index] == choice.logprobs.token_logprobs
        assert choice.logprobs.token_logprobs[0] is None
    assert full.choices[0].logprobs.token_logprobs == full.choices[1].logprobs.token_logprobs


def _check_vllm_positions(positions, prompt: list[int], ref: np.ndarray, k: int):
    assert len(positions) == len(prompt) and positions[0] is None
    for i, position in enumerate(positions[1:]):
        token = str(prompt[i + 1])
        entries = list(position.items())
        assert entries[0][0] == token  # the prompt token first, then the k best
        assert entries[0][1]["logprob"] == pytest.approx(ref[i, prompt[i + 1]], abs=ATOL)
        chosen, rank = ref[i, prompt[i + 1]], entries[0][1]["rank"]  # 1 + how many are likelier
        assert 1 + np.sum(ref[i] > chosen + ATOL) <= rank <= 1 + np.sum(ref[i] > chosen - ATOL)
        best = [e for e in entries if e[1]["rank"] <= k]
        assert sorted(e[1]["rank"] for e in best) == list(range(1, k + 1))
        assert len(position) == k + (rank > k)
        np.testing.assert_allclose([e[1]["logprob"] for e in sorted(best, key=lambda e: e[1]["rank"])],
                                   np.sort(ref[i])[::-1][:k], atol=ATOL)
        assert all(isinstance(e[1]["decoded_token"], str) for e in entries)


def test_vllm_prompt_logprobs_on_completions(tiny_client, reference):
    model, tok = reference
    prompt = tok.encode(TEXT)
    out = tiny_client.completions.create(model=TINY_NAME, prompt=prompt, max_tokens=2,
                                         temperature=0, extra_body={"prompt_logprobs": 2})
    _check_vllm_positions(out.choices[0].prompt_logprobs, prompt,
                          full_forward_logprobs(model, prompt), k=2)
    assert out.choices[0].logprobs is None  # the legacy field stays for echo + logprobs


def test_vllm_prompt_logprobs_on_chat(tiny_client, tiny_server, reference):
    model, _ = reference
    messages = [{"role": "user", "content": TEXT}]
    out = tiny_client.chat.completions.create(model=TINY_NAME, messages=messages, max_tokens=2,
                                              temperature=0, extra_body={"prompt_logprobs": 0})
    positions = out.prompt_logprobs
    assert len(positions) == out.usage.prompt_tokens
    prompt = [None] + [int(next(iter(p))) for p in positions[1:]]
    assert all(len(p) == 1 for p in positions[1:])  # 0 alternatives: only the prompt token
    first = _tokenize(tiny_server, "<|im_start|>")[0]
    prompt[0] = first
    _check_vllm_positions(positions, prompt, full_forward_logprobs(model, prompt), k=0)
    plain = tiny_client.chat.completions.create(model=TINY_NAME, messages=messages, max_tokens=2,
                                                temperature=0)
    assert getattr(plain, "prompt_logprobs", None) is None
    assert plain.choices[0].message.content == out.choices[0].message.content
    two = tiny_client.chat.completions.create(model=TINY_NAME, messages=messages, max_tokens=2,
                                              temperature=0, n=2, extra_body={"prompt_logprobs": 0})
    assert len(two.choices) == 2 and two.prompt_logprobs == positions  # once per response


def test_tokenizer_endpoints(tiny_server, reference):
    _, tok = reference
    base = tiny_server.base_url
    ids = _tokenize(tiny_server, TEXT)
    assert ids == tok.encode(TEXT)
    r = httpx.post(f"{base}/detokenize", json={"tokens": ids})
    assert r.status_code == 200 and r.json() == {"prompt": TEXT}
    info = httpx.get(f"{base}/tokenizer_info").json()
    assert info["eos_token"] == "<|im_end|>" and "im_start" in info["chat_template"]
    bad = httpx.post(f"{base}/detokenize", json={"tokens": [-1]})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "prompt"


@pytest.mark.parametrize("request_fields, param", [
    (dict(prompt=TEXT, echo=True, logprobs=21), "logprobs"),
    (dict(prompt=TEXT, extra_body={"prompt_logprobs": -1}), "prompt_logprobs"),
    (dict(prompt=TEXT, extra_body={"prompt_logprobs": 21}), "prompt_logprobs"),
    (dict(prompt=TEXT, max_tokens=0), "max_tokens"),
])
def test_bad_prompt_logprob_requests_are_400(tiny_client, request_fields, param):
    fields = {"model": TINY_NAME, "max_tokens": 2, **request_fields}
    with pytest.raises(openai.BadRequestError) as err:
        tiny_client.completions.create(**fields)
    assert err.value.status_code == 400
    assert err.value.body["param"] == param and err.value.body["type"] == "invalid_request_error"


def test_prompt_logprobs_with_stream_is_400_on_both_endpoints(tiny_client):
    with pytest.raises(openai.BadRequestError) as err:
        tiny_client.completions.create(model=TINY_NAME, prompt=TEXT, max_tokens=2, stream=True,
                                       extra_body={"prompt_logprobs": 1})
    assert err.value.body["param"] == "prompt_logprobs"
    with pytest.raises(openai.BadRequestError) as err:
        tiny_client.chat.completions.create(model=TINY_NAME, max_tokens=2, stream=True,
                                            messages=[{"role": "user", "content": TEXT}],
                                            extra_body={"prompt_logprobs": -2})
    assert err.value.body["param"] == "prompt_logprobs"


@pytest.mark.parametrize("force_eos", [False, True])
def test_lm_eval_loglikelihood_request_shape(tiny_server, reference, force_eos):
    """lm-eval's local-completions payload (echo, logprobs 1, max_tokens 1) read back by
    lm-eval's own parser: it drops the last entry as the generated token, so that entry
    must be there also when the generated token is EOS (forced here with logit_bias)."""
    api = pytest.importorskip("lm_eval.models.openai_completions")
    model, tok = reference
    context, continuation = tok.encode("the cat sat"), tok.encode(" on the mat")
    prompt = context + continuation
    client = SimpleNamespace(model=TINY_NAME)  # _create_payload reads only .model
    payload = api.LocalCompletionsAPI._create_payload(client, [prompt], generate=False)
    assert payload["echo"] and payload["max_tokens"] == 1 and payload["logprobs"] == 1
    if force_eos:
        eos = _tokenize(tiny_server, httpx.get(f"{tiny_server.base_url}/tokenizer_info")
                        .json()["eos_token"])[0]
        payload["logit_bias"] = {str(eos): 100}
    out = httpx.post(f"{tiny_server.base_url}/v1/completions", json=payload, timeout=60).json()
    choice = out["choices"][0]
    assert choice["finish_reason"] == ("stop" if force_eos else "length")
    assert len(choice["logprobs"]["token_logprobs"]) == len(prompt) + 1
    ((served, greedy),) = api.LocalCompletionsAPI.parse_logprobs(out, [prompt], [len(context)])
    ref = full_forward_logprobs(model, prompt)
    rows = range(len(context) - 1, len(prompt) - 1)
    assert served == pytest.approx(sum(ref[j, prompt[j + 1]] for j in rows), abs=ATOL)
    assert greedy == all(int(np.argmax(ref[j])) == prompt[j + 1] for j in rows)
