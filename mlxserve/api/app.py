"""build_app(engine, server_config): the FastAPI application."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI

import mlxserve
from mlxserve.api import production
from mlxserve.api.anthropic import messages
from mlxserve.api.errors import install_error_handlers
from mlxserve.api.guards import JsonDepthLimit
from mlxserve.api.middleware import ApiKeyCheck, BodySizeLimit
from mlxserve.api.openai import chat, completions, models, responses
from mlxserve.api.startup import start_serving
from mlxserve.api.state import ApiState
from mlxserve.api.system import health, metrics, prefix_cache, tokenizer
from mlxserve.config import ServerConfig


def build_app(engine: Any, server_config: ServerConfig) -> FastAPI:
    """The app; its lifespan starts ``engine`` (in the background) and shuts it down."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state: ApiState = app.state.api
        starting = asyncio.create_task(start_serving(state, app.state.metrics))
        try:
            yield
        finally:
            starting.cancel()
            await asyncio.gather(starting, return_exceptions=True)
            shutdown = getattr(engine, "shutdown", None)
            if shutdown is not None:
                await shutdown()

    app = FastAPI(title="mlxserve", version=mlxserve.__version__, lifespan=lifespan,
                  docs_url=None, redoc_url=None, openapi_url=None)
    app.state.api = ApiState(engine=engine, server_config=server_config)
    production.install_state(app, engine, server_config)
    install_error_handlers(app)
    for router in (chat.router, completions.router, models.router, health.router,
                   metrics.router, tokenizer.router, messages.router, responses.router,
                   prefix_cache.router):
        app.include_router(router)
    app.add_middleware(JsonDepthLimit,
                       max_depth=production.request_limits(server_config).max_json_depth)
    app.add_middleware(ApiKeyCheck, api_keys=tuple(server_config.api_keys),
                       public_paths=production.public_paths(server_config))
    app.add_middleware(BodySizeLimit, max_bytes=server_config.max_request_bytes)
    production.install_outer_middleware(app, server_config)
    return app
