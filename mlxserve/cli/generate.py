"""`mlxserve generate`: stream one answer to the terminal through the same engine."""

from __future__ import annotations

import argparse
import sys

from mlxserve.cli.args import CliError, add_model_args, model_and_engine_configs
from mlxserve.config import ServerConfig
from mlxserve.errors import MlxserveError
from mlxserve.models.generation_defaults import SamplingDefaults, sampling_defaults
from mlxserve.serving.chat_input import ChatInput, CompletionInput, GenerationOptions


def add_generate_args(parser: argparse.ArgumentParser) -> None:
    add_model_args(parser, optional_model=False)
    parser.add_argument("--prompt", required=True)
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--temperature", type=float, default=None,
                        help="default: the sampling values (temperature, top_p, top_k, "
                             "min_p) of the model's generation_config.json when it sets "
                             "do_sample, else greedy (temperature 0), as mlx_lm.generate")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--raw", action="store_true",
                        help="send the prompt as is, without the chat template")


def _options(args: argparse.Namespace, defaults: SamplingDefaults) -> GenerationOptions:
    """The command's options over the model's suggested sampling (or greedy)."""
    temperature = defaults.temperature if args.temperature is None else args.temperature
    return GenerationOptions(max_tokens=args.max_tokens, temperature=temperature,
                             top_p=defaults.top_p, top_k=defaults.top_k, min_p=defaults.min_p,
                             seed=args.seed)


async def _prepare(service, args: argparse.Namespace, options: GenerationOptions):
    if args.raw:
        prepared = await service.prepare_completions(
            CompletionInput(prompts=[args.prompt], options=options), "generate")
        return prepared[0]
    chat = ChatInput(messages=[{"role": "user", "content": args.prompt}], options=options)
    return await service.prepare_chat(chat, "generate")


async def generate(args: argparse.Namespace) -> None:
    from mlxserve.api.startup import build_service
    from mlxserve.engine.client import AsyncEngine

    model_config, engine_config = model_and_engine_configs(args)
    engine = AsyncEngine(model_config, engine_config)
    try:
        try:
            await engine.start()
            service = build_service(engine, ServerConfig())
        except MlxserveError as e:
            raise CliError(e.message) from None
        except Exception as e:  # noqa: BLE001 - a start-up failure is one line, exit 2
            raise CliError(f"cannot load the model: {type(e).__name__}: {e}") from None
        options = _options(args, sampling_defaults(engine.model.path))
        try:
            prepared = await _prepare(service, args, options)
            async for delta in service.stream(prepared.requests[0], prepared):
                sys.stdout.write(delta.reasoning + delta.content)
                sys.stdout.flush()
        except MlxserveError as e:
            raise CliError(e.message) from None
        sys.stdout.write("\n")
    finally:
        await engine.shutdown()
