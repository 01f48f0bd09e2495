"""GET /health (503 until the model is loaded), GET /version, GET /metrics/json."""

from __future__ import annotations

import dataclasses
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

import mlxserve
from mlxserve.api.errors import error_response
from mlxserve.api.state import ApiState, api_state

router = APIRouter()


def engine_stats(state: ApiState) -> dict[str, Any]:
    stats = state.engine.stats()
    if dataclasses.is_dataclass(stats):
        return dataclasses.asdict(stats)
    if isinstance(stats, dict):
        return dict(stats)
    return {"running": getattr(stats, "running", 0), "waiting": getattr(stats, "waiting", 0)}


@router.get("/health")
async def health(request: Request) -> JSONResponse:
    state = api_state(request)
    if state.startup_error is not None:
        return error_response(503, "the model failed to load", None, "model_load_error")
    if not state.ready:
        return error_response(503, "the model is still loading", None, "model_not_ready")
    return JSONResponse({"status": "ok", "model": state.models.primary})


@router.get("/version")
async def version() -> dict:
    return {"version": mlxserve.__version__}


@router.get("/metrics/json")
async def metrics_json(request: Request) -> JSONResponse:
    state = api_state(request)
    if not state.ready:
        return error_response(503, "the model is still loading", None, "model_not_ready")
    return JSONResponse({"engine": engine_stats(state)})
