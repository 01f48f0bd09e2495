"""`mlxserve serve`: the engine behind the HTTP API, under uvicorn."""

from __future__ import annotations

import asyncio
import logging
import os
import signal

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


log = logging.getLogger("mlxserve.serve")


def configure_logging(level: str) -> None:
    """mlxserve's loggers (the access log included) to stderr at ``level``."""
    logger = logging.getLogger("mlxserve")
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)
    logger.setLevel(level.upper())


def _draining_server(config, on_drain, on_exit):
    """A uvicorn.Server whose first SIGTERM calls ``on_drain`` (keeps listening, so new
    requests get a 503 while those in flight finish); SIGINT, or a second signal, calls
    ``on_exit`` (abort what runs) and stops at once. Both callbacks must be thread-safe."""
    import uvicorn

    class Server(uvicorn.Server):
        draining = False

        def handle_exit(self, sig, frame) -> None:
            if sig == signal.SIGTERM and not self.draining and not self.should_exit:
                self.draining = True
                on_drain()
                return
            on_exit()
            if self.draining:
                self.force_exit = True
            super().handle_exit(sig, frame)

    return Server(config)


async def drain(app, server, grace_s: float) -> None:
    """Refuse new requests, let those in flight finish for ``grace_s``, abort the rest,
    then stop the server."""
    admission, state = app.state.admission, app.state.api
    admission.draining = True
    log.info("draining: %d requests in flight, %g s grace", admission.in_flight, grace_s)
    if not await admission.wait_idle(grace_s):
        log.warning("shutdown grace over: aborting %d requests", admission.in_flight)
        if state.service is not None:
            state.service.abort_running()
        await admission.wait_idle(5.0)
    server.should_exit = True


# An idle connection stays open this long. uvicorn's default (5 s) equals the idle expiry
# of httpx's pool (the openai and anthropic SDKs'), so a client reusing a connection just
# as the server closes it gets a reset: 2 of 64 streams failed so (ReadError) on the H200
# when a burst followed a 5 s pause. Longer than common client pools, as nginx's 75 s.
KEEP_ALIVE_S = 75


def _uvicorn_config(app, configs: ServeConfigs):
    import uvicorn

    from mlxserve.api.production import request_limits

    server = configs.server
    return uvicorn.Config(
        app, host=server.host, port=server.port, log_level=server.log_level, lifespan="on",
        timeout_graceful_shutdown=5, access_log=False,  # mlxserve.access replaces it
        timeout_keep_alive=KEEP_ALIVE_S,
        http="h11",  # h11 lets headers up to --max-header-bytes reach the app (a clear 400)
        h11_max_incomplete_event_size=request_limits(server).max_header_bytes + 65536)


async def serve(configs: ServeConfigs, loader=None) -> None:
    """Run until stopped; raises CliError when start-up fails. ``loader`` replaces the
    model loader (fault tests load a real model whose forward fails on cue)."""
    from mlxserve.api.app import build_app
    from mlxserve.engine.client import AsyncEngine

    _check_chat_template_file(configs.model.chat_template)
    _check_model_source(configs.model.model)
    try:
        check_parser_names(configs.server.reasoning_parser, configs.server.tool_call_parser)
    except ServingSetupError as e:
        raise CliError(e.message) from None
    configure_logging(configs.server.log_level)
    engine = AsyncEngine(configs.model, configs.engine, loader=loader)
    app = build_app(engine, configs.server)
    state = app.state.api
    loop = asyncio.get_running_loop()

    def abort_running() -> None:  # in-flight requests end now, so shutdown does not wait
        if state.service is not None:
            state.service.abort_running()

    drains: list[asyncio.Future] = []  # referenced, so the drain task is not collected

    def start_drain() -> None:
        drains.append(asyncio.ensure_future(drain(app, server,
                                                  configs.server.shutdown_grace_s)))

    server = _draining_server(_uvicorn_config(app, configs),
                              lambda: loop.call_soon_threadsafe(start_drain),
                              lambda: loop.call_soon_threadsafe(abort_running))

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
