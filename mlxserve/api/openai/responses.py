"""POST /v1/responses, GET and DELETE /v1/responses/{id} (the OpenAI Responses API)."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from mlxserve.api.disconnect import ClientGone, unless_disconnected
from mlxserve.api.openai.responses_encode import (
    ResponseEventEncoder, ResponseHeader, collect_response,
)
from mlxserve.api.openai.responses_schemas import ResponsesRequest
from mlxserve.api.openai.responses_store import ResponseStore, StoredResponse, listed_item
from mlxserve.api.sse import encoded_events, named_sse, sse_event, sse_response
from mlxserve.api.state import api_state, ready_state
from mlxserve.errors import InvalidRequest, MlxserveError
from mlxserve.serving.streams import start_streams

router = APIRouter()

CLIENT_CLOSED = 499


class ResponseNotFound(MlxserveError):
    status = 404
    code = "not_found"


def response_store(request: Request) -> ResponseStore:
    store = getattr(request.app.state, "responses", None)
    if store is None:
        store = ResponseStore(api_state(request).server_config.response_store_entries)
        request.app.state.responses = store
    return store


def _earlier_items(body: ResponsesRequest, store: ResponseStore) -> list[dict]:
    if body.previous_response_id is None:
        return []
    stored = store.get(body.previous_response_id)
    if stored is None:
        raise ResponseNotFound(f"Previous response with id '{body.previous_response_id}' not "
                               "found.", param="previous_response_id",
                               code="previous_response_not_found")
    return stored.items


def _echoed(body: ResponsesRequest) -> dict:
    """The request fields the response object shows."""
    return {"instructions": body.instructions, "max_output_tokens": body.max_output_tokens,
            "previous_response_id": body.previous_response_id,
            "tools": body.tools or [], "tool_choice": body.tool_choice or "auto",
            "temperature": body.temperature, "top_p": body.top_p,
            "parallel_tool_calls": body.parallel_tool_calls is not False,
            "reasoning": body.reasoning or {"effort": None, "summary": None},
            "text": body.text or {"format": {"type": "text"}}, "store": body.store is not False,
            "metadata": body.metadata or {}, "truncation": "disabled", "background": False}


async def _stored_after(events: AsyncIterator[dict], encoder: ResponseEventEncoder,
                        conversation: list[dict], store: ResponseStore | None
                        ) -> AsyncIterator[dict]:
    """``events``; the finished response is stored before its final event goes out."""
    async for event in events:
        if encoder.final is not None and store is not None and encoder.final["status"] in (
                "completed", "incomplete"):
            store.put(encoder.header.id, StoredResponse(
                encoder.final, [listed_item(i) for i in conversation] + encoder.output,
                input_count=len(conversation)))
            store = None
        yield event


@router.post("/v1/responses")
async def create_response(body: ResponsesRequest, request: Request) -> Response:
    state = ready_state(request)
    model = state.models.resolve(body.model)
    store = response_store(request)
    conversation = _earlier_items(body, store) + body.items()
    tools = body.tool_set()
    header = ResponseHeader(f"resp_{uuid.uuid4().hex}", int(time.time()), model,
                            _echoed(body))
    prepared = await state.service.prepare_chat(body.to_chat_input(conversation, tools),
                                                header.id)
    stream = state.service.stream(prepared.requests[0], prepared)
    encoder = ResponseEventEncoder(header, tools.namespaces)
    keep = store if body.store is not False else None
    try:
        if body.stream:
            (started,) = await unless_disconnected(request, start_streams([stream]))
            events = _stored_after(encoded_events(encoder, started), encoder, conversation,
                                   keep)
            return sse_response(named_sse(events), lambda e: [
                sse_event("response.failed", encoder.failed(e))])
        await unless_disconnected(request, collect_response(_stored_after(
            encoded_events(encoder, stream), encoder, conversation, keep)))
    except ClientGone:
        return Response(status_code=CLIENT_CLOSED)
    return JSONResponse(encoder.final)


def _stored(request: Request, response_id: str) -> StoredResponse:
    stored = response_store(request).get(response_id)
    if stored is None:
        raise ResponseNotFound(f"No response with id '{response_id}' found.",
                               param="response_id")
    return stored


@router.get("/v1/responses/{response_id}")
async def get_response(response_id: str, request: Request) -> dict:
    return _stored(request, response_id).response


@router.delete("/v1/responses/{response_id}")
async def delete_response(response_id: str, request: Request) -> dict:
    _stored(request, response_id)
    response_store(request).delete(response_id)
    return {"id": response_id, "object": "response", "deleted": True}


def _page(items: list[dict], after: str | None, limit: int) -> list[dict]:
    """The ``limit`` items after the one with id ``after`` (from the start without it)."""
    if not 1 <= limit <= 100:
        raise InvalidRequest("limit must be between 1 and 100", param="limit")
    start = 0
    if after is not None:
        ids = [item.get("id") for item in items]
        if after not in ids:
            raise InvalidRequest(f"No input item with id '{after}' in this response.",
                                 param="after")
        start = ids.index(after) + 1
    return items[start:start + limit + 1]  # one more: has_more


@router.get("/v1/responses/{response_id}/input_items")
async def list_input_items(response_id: str, request: Request, after: str | None = None,
                           limit: int = 20, order: str = "desc") -> dict:
    """The items the model read for this response (earlier turns of a
    previous_response_id chain included), OpenAI's list shape, newest first by default."""
    if order not in ("asc", "desc"):
        raise InvalidRequest("order must be 'asc' or 'desc'", param="order")
    stored = _stored(request, response_id)
    items = stored.items[:stored.input_count]
    page = _page(items if order == "asc" else items[::-1], after, limit)
    data = page[:limit]
    return {"object": "list", "data": data, "has_more": len(page) > limit,
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None}
