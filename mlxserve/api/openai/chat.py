"""POST /v1/chat/completions."""

from __future__ import annotations

import time
import uuid

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from mlxserve.api.disconnect import ClientGone, unless_disconnected
from mlxserve.api.openai.chat_encode import (
    ChatChunkEncoder, ResponseMeta, chat_event_stream, chat_response,
)
from mlxserve.api.openai.chat_schemas import ChatCompletionRequest
from mlxserve.api.openai.logprobs_encode import TokenTexts
from mlxserve.api.openai.prompt_logprobs_encode import vllm_prompt_logprobs
from mlxserve.api.sse import sse_response
from mlxserve.api.state import ready_state
from mlxserve.serving.streams import collect_all, merge_indexed, start_streams

router = APIRouter()

CLIENT_CLOSED = 499


@router.post("/v1/chat/completions")
async def create_chat_completion(body: ChatCompletionRequest, request: Request) -> Response:
    state = ready_state(request)
    model = state.models.resolve(body.model)
    chat = body.to_chat_input()
    meta = ResponseMeta(f"chatcmpl-{uuid.uuid4().hex}", int(time.time()), model)
    service = state.service
    prepared = await service.prepare_chat(chat, meta.id)
    streams = [service.stream(r, prepared) for r in prepared.requests]
    texts = TokenTexts(service.tokenizer)
    try:
        if body.stream:
            started = await unless_disconnected(request, start_streams(streams))
            encoder = ChatChunkEncoder(meta, texts, body.include_usage())
            return sse_response(chat_event_stream(encoder, len(started), merge_indexed(started)))
        messages = await unless_disconnected(request, collect_all(streams))
    except ClientGone:
        return Response(status_code=CLIENT_CLOSED)
    response = chat_response(meta, messages, texts)
    if body.prompt_logprobs is not None:  # vLLM's shape: once per response, not per choice
        response["prompt_logprobs"] = vllm_prompt_logprobs(messages[0].prompt_logprobs,
                                                           body.prompt_logprobs, texts)
    return JSONResponse(response)
