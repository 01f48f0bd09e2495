"""GET /v1/models and GET /v1/models/{name}."""

from __future__ import annotations

import time

from fastapi import APIRouter, Request

from mlxserve.api.state import ready_state

router = APIRouter()


def _model_card(name: str, created: int, context_length: int) -> dict:
    return {"id": name, "object": "model", "created": created, "owned_by": "mlxserve",
            "max_model_len": context_length}


@router.get("/v1/models")
async def list_models(request: Request) -> dict:
    state = ready_state(request)
    created = int(time.time())
    limit = state.service.settings.limits.context_length
    return {"object": "list",
            "data": [_model_card(name, created, limit) for name in state.models.names]}


@router.get("/v1/models/{name:path}")
async def get_model(name: str, request: Request) -> dict:
    state = ready_state(request)
    resolved = state.models.resolve(name)
    return _model_card(resolved if name not in state.models.names else name, int(time.time()),
                       state.service.settings.limits.context_length)
