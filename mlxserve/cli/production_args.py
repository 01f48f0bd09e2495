"""Command-line options for running in production → ServerConfig fields (and the engine's
queue bound): request limits, load shedding, deadlines, CORS, draining, metrics, logs."""

from __future__ import annotations

import argparse
import math
from dataclasses import replace
from typing import Any

from mlxserve.config import EngineConfig, ServerConfig
from mlxserve.serving.limits import LIMIT_NAMES, RequestLimits, limit_option


class ProductionArgsError(ValueError):
    """A bad option (the CLI reports it as one line)."""


def add_production_args(parser: argparse.ArgumentParser) -> None:
    server, engine = ServerConfig(), EngineConfig()
    group = parser.add_argument_group("running in production")
    group.add_argument("--max-concurrent-requests", type=int, default=None, metavar="N",
                       help="requests in flight beyond N get 503 with Retry-After")
    group.add_argument("--max-queue-size", type=int, default=engine.max_queue_size,
                       metavar="N", help="waiting engine requests beyond N get 503")
    group.add_argument("--request-timeout", type=float, default=None, metavar="SECONDS",
                       help="deadline of every request (a request's `timeout` may be shorter)")
    group.add_argument("--allowed-origins", nargs="+", default=[], metavar="ORIGIN",
                       help="CORS: browser origins allowed to call the API (off by default)")
    group.add_argument("--shutdown-grace-seconds", type=float, default=server.shutdown_grace_s,
                       help="on SIGTERM, how long requests in flight may finish")
    group.add_argument("--metrics-require-api-key", action="store_true",
                       help="/metrics and /metrics/json need the --api-key too")
    group.add_argument("--stream-ping-seconds", type=float, default=server.stream_ping_s,
                       metavar="SECONDS", help="Anthropic streams: a ping event after this "
                       "long without one (queue wait, long prefill), so clients and proxies "
                       "keep the connection")
    group.add_argument("--log-prompts", action="store_true",
                       help="log prompt text (the access log never has it otherwise)")
    limits = parser.add_argument_group("request limits (each refused with a 400 naming it)")
    for name in LIMIT_NAMES:
        limits.add_argument(limit_option(name), type=int, default=getattr(RequestLimits(), name),
                            metavar="N")


def _positive(value: float | None, option: str) -> None:
    if value is not None and not (math.isfinite(value) and value > 0):
        raise ProductionArgsError(f"{option} must be positive")


def production_options(args: argparse.Namespace) -> dict[str, Any]:
    """ServerConfig keyword arguments from the parsed options."""
    _positive(args.max_concurrent_requests, "--max-concurrent-requests")
    _positive(args.request_timeout, "--request-timeout")
    _positive(args.stream_ping_seconds, "--stream-ping-seconds")
    if not (math.isfinite(args.shutdown_grace_seconds) and args.shutdown_grace_seconds >= 0):
        raise ProductionArgsError("--shutdown-grace-seconds must be 0 or more")
    for name in LIMIT_NAMES:
        _positive(getattr(args, name), limit_option(name))
    return dict(
        request_limits=RequestLimits(**{name: getattr(args, name) for name in LIMIT_NAMES}),
        max_concurrent_requests=args.max_concurrent_requests,
        request_timeout_s=args.request_timeout, allowed_origins=tuple(args.allowed_origins),
        shutdown_grace_s=args.shutdown_grace_seconds,
        metrics_require_api_key=args.metrics_require_api_key, log_prompts=args.log_prompts,
        stream_ping_s=args.stream_ping_seconds)


def production_engine(engine: EngineConfig, args: argparse.Namespace) -> EngineConfig:
    _positive(args.max_queue_size, "--max-queue-size")
    return replace(engine, max_queue_size=args.max_queue_size)
