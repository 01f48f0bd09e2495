"""`mlxserve serve`: the engine behind the HTTP API, under uvicorn."""

from __future__ import annotations

import asyncio
import os

from mlxserve.cli.args import CliError, ServeConfigs
from mlxserve.serving.parser_setup import ServingSetupError, check_parser_names


def _check_chat_template_file(path: str | None) -> None:
    if path and not os.path.isfile(path):
        raise CliError(f"--chat-template: no such file: {path}")


async def serve(configs: ServeConfigs) -> None:
    """Run until stopped; raises CliError when start-up fails."""
    import uvicorn

    from mlxserve.api.app import build_app
    from mlxserve.engine.client import AsyncEngine

    _check_chat_template_file(configs.model.chat_template)
    try:
        check_parser_names(configs.server.reasoning_parser, configs.server.tool_call_parser)
    except ServingSetupError as e:
        raise CliError(e.message) from None
    engine = AsyncEngine(configs.model, configs.engine)
    app = build_app(engine, configs.server)
    server = uvicorn.Server(uvicorn.Config(
        app, host=configs.server.host, port=configs.server.port,
        log_level=configs.server.log_level, lifespan="on", timeout_graceful_shutdown=5,
    ))
    state = app.state.api

    async def stop_on_failed_start() -> None:
        await state.startup_finished.wait()
        if state.startup_error is not None:
            server.should_exit = True

    watcher = asyncio.create_task(stop_on_failed_start())
    try:
        await server.serve()
    except SystemExit:
        raise CliError(f"cannot listen on {configs.server.host}:{configs.server.port}") from None
    finally:
        watcher.cancel()
    if state.startup_error is not None:
        raise CliError(state.startup_error)
    if not server.started:
        raise CliError(f"cannot listen on {configs.server.host}:{configs.server.port}")
