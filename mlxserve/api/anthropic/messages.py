"""POST /v1/messages and POST /v1/messages/count_tokens (Anthropic Messages API)."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from mlxserve.api.anthropic.encode import (
    MessageEventEncoder, MessageMeta, collect_message,
)
from mlxserve.api.anthropic.schemas import CountTokensRequest, MessagesRequest
from mlxserve.api.disconnect import ClientGone, unless_disconnected
from mlxserve.api.errors import anthropic_error_body
from mlxserve.api.sse import encoded_events, named_sse, sse_event, sse_response, with_pings
from mlxserve.api.state import ready_state
from mlxserve.errors import MlxserveError

router = APIRouter()

CLIENT_CLOSED = 499
PING = {"type": "ping"}


def anthropic_error_events(e: MlxserveError) -> list[str]:
    return [sse_event("error", anthropic_error_body(e.status, e.message))]


@router.post("/v1/messages")
async def create_message(body: MessagesRequest, request: Request) -> Response:
    state = ready_state(request)
    state.models.resolve(body.model)
    service = state.service
    meta_id = f"msg_{uuid.uuid4().hex}"
    prepared = await service.prepare_chat(body.to_chat_input(), meta_id)
    meta = MessageMeta(meta_id, body.model or state.models.primary, len(prepared.token_ids))
    stream = service.stream(prepared.requests[0], prepared)
    encoder = MessageEventEncoder(meta)
    try:
        if body.stream:  # message_start goes out now; the prompt was checked already
            events = with_pings(encoded_events(encoder, stream),
                                state.server_config.stream_ping_s, PING)
            return sse_response(named_sse(events), anthropic_error_events)
        message = await unless_disconnected(request,
                                            collect_message(encoded_events(encoder, stream)))
    except ClientGone:
        return Response(status_code=CLIENT_CLOSED)
    return JSONResponse(message)


@router.post("/v1/messages/count_tokens")
async def count_tokens(body: CountTokensRequest, request: Request) -> dict:
    state = ready_state(request)
    state.models.resolve(body.model)
    return {"input_tokens": await state.service.count_chat_tokens(body.to_chat_input())}
