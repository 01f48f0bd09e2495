"""`mlxserve serve`: the engine behind the HTTP API, under uvicorn."""

from __future__ import annotations

import asyncio
import os

from mlxserve.cli.args import CliError, ServeConfigs
from mlxserve.serving.parser_setup import ServingSetupError, check_parser_names


def _check_chat_template_file(path: str | None) -> None:
    if path and not os.path.isfile(path):
        raise CliError(f"--chat-template: no such file: {path}")


def _check_model_source(spec: str) -> None:
    """Fail before the HTTP server starts when the model cannot be found (no MLX here);
    what needs the weights (a corrupt file, an unsupported architecture) fails at load."""
    from mlxserve.errors import MlxserveError
    from mlxserve.models import resolve_source
    from mlxserve.models.loader import check_folder_servable
    from mlxserve.models.source import KIND_HF_FOLDER

    try:
        source = resolve_source(spec)
        if source.kind == KIND_HF_FOLDER:
            check_folder_servable(source.paths[0], source.name)
    except MlxserveError as e:
        raise CliError(e.message) from None


def _server_aborting_on_exit(config, on_exit):
    """A uvicorn.Server that calls ``on_exit`` (thread-safe) when told to stop (SIGINT,
    SIGTERM), before its graceful shutdown waits for open connections."""
    import uvicorn

    class Server(uvicorn.Server):
        def handle_exit(self, sig, frame) -> None:
            on_exit()
            super().handle_exit(sig, frame)

    return Server(config)


async def serve(configs: ServeConfigs) -> None:
    """Run until stopped; raises CliError when start-up fails."""
    import uvicorn

    from mlxserve.api.app import build_app
    from mlxserve.engine.client import AsyncEngine

    _check_chat_template_file(configs.model.chat_template)
    _check_model_source(configs.model.model)
    try:
        check_parser_names(configs.server.reasoning_parser, configs.server.tool_call_parser)
    except ServingSetupError as e:
        raise CliError(e.message) from None
    engine = AsyncEngine(configs.model, configs.engine)
    app = build_app(engine, configs.server)
    state = app.state.api
    loop = asyncio.get_running_loop()

    def abort_running() -> None:  # in-flight requests end now, so shutdown does not wait
        if state.service is not None:
            state.service.abort_running()

    server = _server_aborting_on_exit(uvicorn.Config(
        app, host=configs.server.host, port=configs.server.port,
        log_level=configs.server.log_level, lifespan="on", timeout_graceful_shutdown=5,
    ), lambda: loop.call_soon_threadsafe(abort_running))

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
