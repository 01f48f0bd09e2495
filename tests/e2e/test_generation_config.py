"""Server-side sampling defaults for the fields a request leaves out (vLLM's
``--generation-config`` / ``--override-generation-config``): the model folder's
generation_config.json (when it sets do_sample), the override over it, the request's own
fields over both. Real servers on a tiny model, the official openai client."""

from __future__ import annotations

import json
import shutil

import openai
import pytest
from server_process import start_server

from mlxserve.models.generation_defaults import server_sampling_defaults

POEM = [{"role": "user", "content": "Write a poem about rain."}]
ASK = dict(messages=POEM, max_tokens=16, extra_body={"ignore_eos": True})


@pytest.fixture(scope="module")
def greedy_folder(tiny_model_path, tmp_path_factory):
    """The tiny model whose generation_config.json suggests greedy sampling."""
    folder = tmp_path_factory.mktemp("gencfg") / "model"
    shutil.copytree(tiny_model_path, folder)
    config = folder / "generation_config.json"
    data = json.loads(config.read_text()) if config.exists() else {}
    config.write_text(json.dumps({**data, "do_sample": True, "temperature": 0.0}))
    return str(folder)


def _client(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.base_url}/v1", api_key="x", max_retries=0)


def _text(client, **fields) -> str:
    model = client.models.list().data[0].id
    return client.chat.completions.create(model=model, **ASK, **fields).choices[0].message.content


def test_the_folders_suggestion_fills_omitted_fields_and_requests_win(greedy_folder):
    server = start_server(greedy_folder)
    try:
        client = _client(server)
        greedy = _text(client, temperature=0)
        assert greedy and _text(client) == greedy and _text(client) == greedy
        sampled = {_text(client, temperature=1.5, seed=s) for s in (1, 2, 3)}
        assert sampled != {greedy}  # the request's temperature wins
    finally:
        server.stop()


def test_vllm_ignores_the_folder_and_the_override_wins(greedy_folder):
    server = start_server(greedy_folder, ["--generation-config", "vllm"])
    try:
        client = _client(server)
        greedy = _text(client, temperature=0)
        unseeded = {_text(client, seed=s) for s in (1, 2, 3)}  # temperature 1: the API's
        assert unseeded != {greedy}
    finally:
        server.stop()
    server = start_server(greedy_folder, ["--generation-config", "vllm",
                                          "--override-generation-config", '{"top_k": 1}'])
    try:
        client = _client(server)
        assert {_text(client, seed=s) for s in (1, 2)} == {_text(client, temperature=0)}
    finally:
        server.stop()


def test_defaults_merge_in_order(greedy_folder, tmp_path):
    assert server_sampling_defaults(greedy_folder) == {"temperature": 0.0}
    assert server_sampling_defaults(greedy_folder, "vllm") == {}
    assert server_sampling_defaults(greedy_folder, "auto", {"temperature": 0.7, "top_k": 20}
                                    ) == {"temperature": 0.7, "top_k": 20}
    (tmp_path / "generation_config.json").write_text(json.dumps(
        {"do_sample": False, "temperature": 0.2}))  # HF: the numbers apply only when sampling
    assert server_sampling_defaults(str(tmp_path)) == {}


@pytest.mark.parametrize("value,message", [
    ('{"temperature": -1}', "'temperature' must be between 0 and 2"),
    ('{"temp": 1}', "unknown field 'temp'"),
    ('{"top_k": 2.5}', "'top_k' must be an integer"),
    ('[1]', "must be a JSON object"),
])
def test_a_bad_override_is_one_error_line(value, message):
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "mlxserve.cli.main", "serve", "x",
                           "--override-generation-config", value],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("mlxserve: error: --override-generation-config") and message in last
