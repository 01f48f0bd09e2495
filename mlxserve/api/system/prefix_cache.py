"""GET /v1/cache/stats (the prefix cache's entries, bytes, hits, misses, tokens saved,
evictions) and DELETE /v1/cache (drops every entry not in use). Both behind --api-key
like the other /v1 routes. A server without a prefix cache (turned off, or a model kind
it does not serve) answers ``{"enabled": false}`` and drops nothing."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from mlxserve.api.errors import error_response
from mlxserve.api.state import api_state

router = APIRouter()


def _not_ready(request: Request) -> JSONResponse | None:
    if api_state(request).ready:
        return None
    return error_response(503, "the model is still loading", None, "model_not_ready")


@router.get("/v1/cache/stats")
async def cache_stats(request: Request) -> JSONResponse:
    refused = _not_ready(request)
    if refused is not None:
        return refused
    stats = getattr(api_state(request).engine.stats(), "prefix_cache", None)
    return JSONResponse({"enabled": stats is not None, **(stats or {})})


@router.delete("/v1/cache")
async def clear_cache(request: Request) -> JSONResponse:
    refused = _not_ready(request)
    if refused is not None:
        return refused
    clear = getattr(api_state(request).engine, "clear_prefix_cache", None)
    dropped = await clear() if clear is not None else 0
    return JSONResponse({"dropped_entries": dropped})
