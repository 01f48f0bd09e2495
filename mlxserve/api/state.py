"""What the app keeps on app.state: the engine, the config, and what start-up derived."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from fastapi import Request

from mlxserve.config import ServerConfig
from mlxserve.errors import MlxserveError, ModelNotFound
from mlxserve.serving.generation import GenerationService


class ServerNotReady(MlxserveError):
    status = 503
    code = "model_not_ready"


@dataclass(frozen=True)
class ServedModels:
    names: tuple[str, ...]  # shown in /v1/models; the first is used in responses
    accepted: frozenset[str]  # also the model's path and the alias it was loaded by
    # --accept-vendor-model-names: any claude-* / gpt-* name means the served model, for
    # agents that hard-code the names of hosted models
    vendor_prefixes: tuple[str, ...] = ()

    @property
    def primary(self) -> str:
        return self.names[0]

    def resolve(self, requested: str | None) -> str:
        if requested is None or requested == "" or requested in self.accepted:
            return self.primary
        if self.vendor_prefixes and requested.startswith(self.vendor_prefixes):
            return self.primary
        raise ModelNotFound(f"The model '{requested}' does not exist", param="model",
                            code="model_not_found")


@dataclass
class ApiState:
    engine: Any
    server_config: ServerConfig
    service: GenerationService | None = None
    models: ServedModels | None = None
    startup_error: str | None = None
    startup_finished: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def ready(self) -> bool:
        return self.service is not None and bool(getattr(self.engine, "ready", True))


def api_state(request: Request) -> ApiState:
    return request.app.state.api


def ready_state(request: Request) -> ApiState:
    """The state of a server that can take requests; 503 while the model loads."""
    state: ApiState = request.app.state.api
    if not state.ready:
        raise ServerNotReady("the model is still loading" if state.startup_error is None
                             else "the model failed to load")
    return state
