"""The `mlxserve` command: serve, generate."""

from __future__ import annotations

import argparse
import asyncio
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


if __name__ == "__main__":
    sys.exit(main())
