"""GET /health (live), GET /ready (ready for new requests), GET /version, GET /metrics/json.

- ``/health``: is this process well? 200 while it loads the model (``"status": "loading"``)
  and while it serves (``"ok"``); 503 when the model failed to load (restart it) and once
  it drains for shutdown (it is going away).
- ``/ready``: should it get new requests? 200 only when the model is loaded and it is not
  draining; 503 otherwise (with the reason). Point load balancers / readiness probes here.
"""

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


def _draining(request: Request) -> bool:
    admission = getattr(request.app.state, "admission", None)
    return bool(admission is not None and admission.draining)


def _not_serving(request: Request, state: ApiState) -> JSONResponse | None:
    """The 503 for a server that failed to load or drains; None otherwise."""
    if state.startup_error is not None:
        return error_response(503, "the model failed to load", None, "model_load_error")
    if _draining(request):
        return error_response(503, "the server is shutting down", None,
                              "server_shutting_down")
    return None


@router.head("/health", include_in_schema=False)  # probes and checks send HEAD
@router.get("/health")
async def health(request: Request) -> JSONResponse:
    state = api_state(request)
    refused = _not_serving(request, state)
    if refused is not None:
        return refused
    if not state.ready:
        return JSONResponse({"status": "loading"})
    return JSONResponse({"status": "ok", "model": state.models.primary})


@router.head("/ready", include_in_schema=False)  # probes and checks send HEAD
@router.get("/ready")
async def ready(request: Request) -> JSONResponse:
    state = api_state(request)
    refused = _not_serving(request, state)
    if refused is not None:
        return refused
    if not state.ready:
        return error_response(503, "the model is still loading", None, "model_not_ready")
    return JSONResponse({"status": "ready", "model": state.models.primary})


@router.get("/version")
async def version() -> dict:
    return {"version": mlxserve.__version__}


@router.get("/metrics/json")
async def metrics_json(request: Request) -> JSONResponse:
    state = api_state(request)
    if not state.ready:
        return error_response(503, "the model is still loading", None, "model_not_ready")
    return JSONResponse({"engine": engine_stats(state)})
