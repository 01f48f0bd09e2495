"""GET /metrics (Prometheus text, vLLM names under mlxserve:) counts what the requests did;
request deadlines (the `timeout` field) end a request with a clear error and free it."""

from __future__ import annotations

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from robust_support import TINY_NAME, assert_idle

HI = [{"role": "user", "content": "hi"}]
LABEL = {"model_name": TINY_NAME}


def scrape(server) -> dict[tuple[str, tuple], float]:
    """Every sample as {(name, sorted labels): value}."""
    response = httpx.get(f"{server.base_url}/metrics", timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(response.text)
            for s in family.samples}


def value(samples: dict, name: str, **labels) -> float:
    return samples.get((name, tuple(sorted({**LABEL, **labels}.items()))), 0.0)


@pytest.fixture()
def client(robust_server) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{robust_server.base_url}/v1", api_key="unused",
                         max_retries=0, timeout=60)


def test_metrics_count_tokens_outcomes_and_latencies(robust_server, client):
    assert_idle(robust_server)
    before = scrape(robust_server)
    replies = [client.chat.completions.create(model=TINY_NAME, messages=HI, max_tokens=12,
                                              temperature=0, extra_body={"ignore_eos": True})
               for _ in range(2)]
    stream = client.completions.create(model=TINY_NAME, prompt="a b c", max_tokens=5,
                                       stream=True, extra_body={"ignore_eos": True})
    assert sum(len(c.choices[0].text) >= 0 for c in stream) >= 1
    assert_idle(robust_server)
    after = scrape(robust_server)

    def grew(name: str, **labels) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    prompt = sum(r.usage.prompt_tokens for r in replies)
    assert grew("mlxserve:prompt_tokens_total") >= prompt + 1  # + the completion's prompt
    assert grew("mlxserve:generation_tokens_total") == 12 + 12 + 5
    assert grew("mlxserve:request_success_total", finished_reason="length") == 3
    for histogram in ("time_to_first_token_seconds", "e2e_request_latency_seconds",
                      "request_queue_time_seconds", "request_prompt_tokens",
                      "request_generation_tokens"):
        assert grew(f"mlxserve:{histogram}_count") == 3, histogram
    assert grew("mlxserve:request_generation_tokens_sum") == 29
    assert grew("mlxserve:inter_token_latency_seconds_count") == 11 + 11 + 4
    assert value(after, "mlxserve:num_requests_running") == 0
    assert value(after, "mlxserve:num_requests_waiting") == 0
    assert value(after, "mlxserve:kv_cache_usage_perc") == 0


def test_timeout_field_is_a_408_and_frees_the_request(robust_server, client):
    before = scrape(robust_server)
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(model=TINY_NAME, messages=HI, max_tokens=480, n=4,
                                       extra_body={"timeout": 0.1, "ignore_eos": True})
    assert caught.value.status_code == 408
    assert caught.value.body["code"] == "request_timeout"
    assert "timeout of 0.1 s" in caught.value.body["message"]
    assert_idle(robust_server)
    failed = value(scrape(robust_server), "mlxserve:request_failure_total", reason="timeout")
    # every choice that reached the engine ended as a timeout; on a loaded machine the
    # deadline can pass before all 4 started (those are cancelled unstarted, not counted)
    assert 1 <= failed - value(before, "mlxserve:request_failure_total", reason="timeout") <= 4


def test_timeout_mid_stream_is_an_error_event(robust_server):
    body = {"model": TINY_NAME, "messages": HI, "max_tokens": 480, "n": 4, "ignore_eos": True,
            "stream": True, "timeout": 0.3}
    with httpx.stream("POST", f"{robust_server.base_url}/v1/chat/completions", json=body,
                      timeout=60) as response:
        lines = [line for line in response.iter_lines() if line]
    if response.status_code == 408:  # timed out before the first token (a slow machine)
        return
    assert lines[-1] == "data: [DONE]" and "request_timeout" in lines[-2], lines[-3:]
    assert_idle(robust_server)


def test_a_bad_timeout_is_a_400(client):
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model=TINY_NAME, messages=HI, max_tokens=4,
                                       extra_body={"timeout": 0})
    assert caught.value.body["param"] == "timeout"
