"""POST /tokenize, POST /detokenize, GET /tokenizer_info in vLLM's shapes.

Evaluation harnesses use them to tokenize with the server's own tokenizer (lm-eval's
``local-completions`` finds them and needs no local tokenizer then)."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict

from mlxserve.api.state import ready_state

router = APIRouter()


class TokenizeRequest(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)
    model: str | None = None
    prompt: str
    add_special_tokens: bool = True


class DetokenizeRequest(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)
    model: str | None = None
    tokens: list[int]


@router.post("/tokenize")
async def tokenize(body: TokenizeRequest, request: Request) -> JSONResponse:
    state = ready_state(request)
    state.models.resolve(body.model)
    service = state.service
    ids = await asyncio.to_thread(service.tokenize, body.prompt, body.add_special_tokens)
    return JSONResponse({"count": len(ids), "max_model_len": service.settings.limits.context_length,
                         "tokens": ids, "token_strs": None})


@router.post("/detokenize")
async def detokenize(body: DetokenizeRequest, request: Request) -> JSONResponse:
    state = ready_state(request)
    state.models.resolve(body.model)
    text = await asyncio.to_thread(state.service.detokenize, body.tokens)
    return JSONResponse({"prompt": text})


@router.get("/tokenizer_info")
async def tokenizer_info(request: Request) -> JSONResponse:
    return JSONResponse(ready_state(request).service.tokenizer_info())
