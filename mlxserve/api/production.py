"""What a production deployment adds to the app: metrics, admission (load shedding and
draining), request limits at the HTTP level, CORS, the access log. ``build_app`` calls
``install_state`` first, then ``install_outer_middleware`` after its own guards."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from mlxserve.api.access_log import AccessLog
from mlxserve.api.guards import Admission, RequestGuard
from mlxserve.api.middleware import METRICS_PATHS, PUBLIC_PATHS
from mlxserve.api.system.health import engine_stats
from mlxserve.api.system.metrics import ServerMetrics
from mlxserve.config import ServerConfig
from mlxserve.serving.limits import RequestLimits


def request_limits(config: ServerConfig) -> RequestLimits:
    return config.request_limits or RequestLimits()


def public_paths(config: ServerConfig) -> tuple[str, ...]:
    """Paths open without an API key: probes always, metrics unless asked otherwise."""
    return PUBLIC_PATHS if config.metrics_require_api_key else PUBLIC_PATHS + METRICS_PATHS


def install_state(app: FastAPI, engine: Any, config: ServerConfig) -> None:
    """``app.state.admission`` and ``app.state.metrics`` (needs ``app.state.api``)."""
    state = app.state.api
    app.state.admission = Admission(config.max_concurrent_requests)
    app.state.metrics = ServerMetrics(lambda: engine_stats(state) if state.ready else None)


def install_outer_middleware(app: FastAPI, config: ServerConfig) -> None:
    """Outermost first: access log, CORS (only with --allowed-origins), request guard."""
    app.add_middleware(RequestGuard, admission=app.state.admission,
                       max_header_bytes=request_limits(config).max_header_bytes)
    if config.allowed_origins:
        app.add_middleware(CORSMiddleware, allow_origins=list(config.allowed_origins),
                           allow_methods=["*"], allow_headers=["*"],
                           expose_headers=["x-request-id", "retry-after"])
    app.add_middleware(AccessLog, log_prompts=config.log_prompts)
