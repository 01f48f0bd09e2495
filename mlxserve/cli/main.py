"""The `mlxserve` command: serve, generate."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys

import mlxserve
from mlxserve.cli.args import CliError, add_serve_args, serve_configs
from mlxserve.cli.generate import add_generate_args, generate
from mlxserve.errors import MlxserveError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mlxserve", description=mlxserve.__doc__)
    parser.add_argument("--version", action="version", version=mlxserve.__version__)
    commands = parser.add_subparsers(dest="command", required=True)
    add_serve_args(commands.add_parser("serve", help="run the OpenAI-compatible server"))
    add_generate_args(commands.add_parser("generate", help="stream one answer to the terminal"))
    return parser


def _run(args: argparse.Namespace) -> None:
    if args.command == "serve":
        from mlxserve.cli.serve import serve

        asyncio.run(serve(serve_configs(args)))
    elif args.command == "generate":
        asyncio.run(generate(args))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        _run(args)
    except (CliError, MlxserveError) as e:
        print(f"mlxserve: error: {getattr(e, 'message', None) or e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


def exit_process(code: int) -> None:
    """Leave the process with ``code`` once everything is shut down, skipping interpreter
    finalization. Why: MLX's Python bindings keep thread-local state whose destructors
    take the GIL; a thread (the engine's) runs them natively *after* ``join()`` returned,
    and if the interpreter is finalizing by then CPython ends that thread with
    pthread_exit, whose forced unwind meets a noexcept frame: std::terminate, SIGABRT
    ("terminate called without an active exception", exit -6) now and then at exit."""
    logging.shutdown()  # flush and close every handler
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # closed or broken pipe: nothing more to write
            pass
    os._exit(code)


def run() -> None:
    """The console entry point: ``main`` as a process."""
    exit_process(main())


if __name__ == "__main__":
    run()
