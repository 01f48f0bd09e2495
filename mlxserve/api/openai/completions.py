"""POST /v1/completions."""

from __future__ import annotations

import time
import uuid

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from mlxserve.api.disconnect import ClientGone, unless_disconnected
from mlxserve.api.openai.chat_encode import ResponseMeta
from mlxserve.api.openai.completions_encode import (
    CompletionChunkEncoder, completion_event_stream, completion_response,
)
from mlxserve.api.openai.completions_schemas import CompletionRequest
from mlxserve.api.openai.logprobs_encode import TokenTexts
from mlxserve.api.sse import sse_response
from mlxserve.api.state import ready_state
from mlxserve.serving.streams import collect_all, merge_indexed, start_streams

router = APIRouter()

CLIENT_CLOSED = 499


@router.post("/v1/completions")
async def create_completion(body: CompletionRequest, request: Request) -> Response:
    state = ready_state(request)
    model = state.models.resolve(body.model)
    completion = body.to_completion_input()
    meta = ResponseMeta(f"cmpl-{uuid.uuid4().hex}", int(time.time()), model)
    service = state.service
    prompts = await service.prepare_completions(completion, meta.id)
    streams = [service.stream(r, p) for p in prompts for r in p.requests]
    echo_texts = [p.text if completion.echo else "" for p in prompts for _ in p.requests]
    texts = TokenTexts(service.tokenizer)
    asked = body.prompt_logprobs_asked()
    try:
        if body.stream:
            started = await unless_disconnected(request, start_streams(streams))
            encoder = CompletionChunkEncoder(meta, texts, body.include_usage())
            return sse_response(completion_event_stream(encoder, prompts, echo_texts,
                                                        merge_indexed(started), asked))
        results = await unless_disconnected(request, collect_all(streams))
    except ClientGone:
        return Response(status_code=CLIENT_CLOSED)
    return JSONResponse(completion_response(meta, prompts, results, echo_texts, texts, asked))
