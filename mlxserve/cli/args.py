"""argparse → frozen config records. Bad values raise CliError (one line, exit code 2)."""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, replace

from mlxserve.cli.media_args import MediaArgsError, add_media_args, media_config
from mlxserve.cli.specprefill_args import (SpecPrefillArgsError, add_specprefill_args,
                                           specprefill_config)
from mlxserve.cli.production_args import (ProductionArgsError, add_production_args,
                                          production_engine, production_options)
from mlxserve.config import EngineConfig, ModelConfig, ServerConfig

DEFAULT_MODEL = ModelConfig().model


class CliError(Exception):
    """A command-line or start-up problem, printed as one line; exit code 2."""


@dataclass(frozen=True)
class ServeConfigs:
    model: ModelConfig
    engine: EngineConfig
    server: ServerConfig


def add_model_args(parser: argparse.ArgumentParser, *, optional_model: bool) -> None:
    if optional_model:
        parser.add_argument("model", nargs="?", default=DEFAULT_MODEL,
                            help=f"HF folder, hub id, .gguf file or alias (default {DEFAULT_MODEL})")
    else:
        parser.add_argument("model", help="HF folder, hub id, .gguf file or alias")
    parser.add_argument("--revision", default=None)
    parser.add_argument("--chat-template", default=None, metavar="FILE",
                        help="Jinja file replacing the model's chat template")
    parser.add_argument("--max-model-len", type=int, default=None)
    parser.add_argument("--max-num-seqs", type=int, default=EngineConfig.max_num_seqs,
                        help="most requests running at once; default: from the KV budget "
                             "(its tokens / 256, within 8..1024)")
    parser.add_argument("--max-num-batched-tokens", type=int, default=None,
                        help="token budget of one engine step (prefill chunks + decodes); "
                             "default 8192 with a GPU, 2048 on CPU")
    parser.add_argument("--kv-cache-memory-gb", type=float, default=None,
                        help="KV-cache budget; default: a share of free device memory")
    parser.add_argument("--dtype", default=ModelConfig.dtype,
                        choices=["auto", "float32", "bfloat16", "float16"],
                        help="auto: float32 on a CPU-only machine, the checkpoint's on GPU")
    parser.add_argument("--keep-quantized", action="store_true",
                        help="keep quantized weights (default: dequantized at load on CPU, "
                             "and on CUDA when the 16-bit weights fit; Metal keeps them)")
    parser.add_argument("--trust-remote-code", action="store_true")
    parser.add_argument("--warmup", action=argparse.BooleanOptionalAction,
                        default=EngineConfig.warmup,
                        help="at start-up, run every batch path once and decode batch sizes "
                             "up to --warmup-max-batch (kernels compile now, not in traffic)")
    parser.add_argument("--warmup-max-batch", type=int, default=None,
                        help="largest decode batch warmed (powers of two up to it; default "
                             "max-num-seqs with a GPU, none on CPU)")
    parser.add_argument("--warmup-timeout", type=float, default=EngineConfig.warmup_timeout_s,
                        help="seconds the batch-size warm-up may take")
    parser.add_argument("--enable-prefix-caching", action=argparse.BooleanOptionalAction,
                        default=EngineConfig.enable_prefix_caching,
                        help="reuse the KV of earlier prompts and answers (plain-attention "
                             "models, text requests)")
    parser.add_argument("--prefix-cache-memory-gb", type=float, default=None,
                        help="prefix-cache size, taken from the KV-cache budget (at most "
                             "half of it); default: a quarter of it")
    parser.add_argument("--speculative-config", default=None, metavar="JSON",
                        help='speculative decoding, e.g. \'{"method": "ngram", '
                             '"num_speculative_tokens": 4}\' (methods: ngram, draft_model, '
                             'mtp)')
    parser.add_argument("--draft-model", default=None, metavar="SOURCE",
                        help='shortcut for --speculative-config \'{"method": "draft_model", '
                             '"model": SOURCE}\' (a model with the same vocabulary)')
    parser.add_argument("--enable-mtp", action="store_true",
                        help='shortcut for --speculative-config \'{"method": "mtp"}\' (the '
                             "checkpoint's own multi-token-prediction heads)")
    add_specprefill_args(parser)


def add_serve_args(parser: argparse.ArgumentParser) -> None:
    add_model_args(parser, optional_model=True)
    defaults = ServerConfig()
    parser.add_argument("--host", default=defaults.host)
    parser.add_argument("--port", type=int, default=defaults.port)
    parser.add_argument("--served-model-name", nargs="+", default=[], metavar="NAME")
    parser.add_argument("--default-chat-template-kwargs", default=None, metavar="JSON")
    parser.add_argument("--generation-config", choices=["auto", "vllm"], default="auto",
                        help="auto: a request's omitted sampling fields take the model's "
                             "generation_config.json values (when it sets do_sample); "
                             "vllm: the API defaults (temperature 1)")
    parser.add_argument("--override-generation-config", default=None, metavar="JSON",
                        help='defaults for omitted sampling fields, over the model\'s, e.g. '
                             '\'{"temperature": 0.7, "top_p": 0.8, "repetition_penalty": 1.1}\'')
    parser.add_argument("--reasoning-parser", default=None, metavar="NAME|auto")
    parser.add_argument("--tool-call-parser", default=None, metavar="NAME|auto")
    parser.add_argument("--enable-auto-tool-choice", action="store_true")
    parser.add_argument("--api-key", action="append", default=[], metavar="KEY")
    parser.add_argument("--accept-vendor-model-names", action="store_true",
                        help="any claude-* or gpt-* model name means the served model "
                             "(for agents that hard-code hosted model names)")
    parser.add_argument("--max-request-bytes", type=int, default=defaults.max_request_bytes)
    parser.add_argument("--warm-prompts", default=None, metavar="FILE",
                        help="JSON list of message lists or strings: prefilled at start-up "
                             "and pinned in the prefix cache")
    add_media_args(parser)
    add_production_args(parser)
    parser.add_argument("--log-level", default=defaults.log_level,
                        choices=["critical", "error", "warning", "info", "debug"])


def _json_object(text: str | None, option: str) -> dict:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise CliError(f"{option} is not valid JSON: {e.msg}") from None
    if not isinstance(value, dict):
        raise CliError(f"{option} must be a JSON object")
    return value


def _positive(value: int | None, option: str) -> None:
    if value is not None and value <= 0:
        raise CliError(f"{option} must be a positive integer")


def model_and_engine_configs(args: argparse.Namespace) -> tuple[ModelConfig, EngineConfig]:
    _positive(args.max_model_len, "--max-model-len")
    _positive(args.max_num_seqs, "--max-num-seqs")
    _positive(args.max_num_batched_tokens, "--max-num-batched-tokens")
    if args.kv_cache_memory_gb is not None and not args.kv_cache_memory_gb > 0:
        raise CliError("--kv-cache-memory-gb must be positive")
    model = ModelConfig(model=args.model, revision=args.revision, dtype=args.dtype,
                        keep_quantized=args.keep_quantized,
                        chat_template=args.chat_template,
                        trust_remote_code=args.trust_remote_code)
    if args.prefix_cache_memory_gb is not None and not args.prefix_cache_memory_gb >= 0:
        raise CliError("--prefix-cache-memory-gb must not be negative")
    kv_bytes = None if args.kv_cache_memory_gb is None else int(args.kv_cache_memory_gb * 2**30)
    prefix_gb = args.prefix_cache_memory_gb
    engine = EngineConfig(max_num_seqs=args.max_num_seqs, max_model_len=args.max_model_len,
                          max_num_batched_tokens=args.max_num_batched_tokens,
                          kv_cache_memory_bytes=kv_bytes, warmup=args.warmup,
                          warmup_max_batch=args.warmup_max_batch,
                          warmup_timeout_s=args.warmup_timeout,
                          enable_prefix_caching=args.enable_prefix_caching,
                          prefix_cache_memory_bytes=None if prefix_gb is None
                          else int(prefix_gb * 2**30),
                          speculative=_speculative(args))
    return model, replace(engine, specprefill=_specprefill(args, engine))


def _speculative(args: argparse.Namespace):
    from mlxserve.spec.settings import parse_speculative_config

    text = getattr(args, "speculative_config", None)
    shortcut = _speculative_shortcut(args)
    if text and shortcut:
        raise CliError("give --speculative-config or --draft-model / --enable-mtp, not both")
    text = text or shortcut
    try:
        return parse_speculative_config(text) if text else None
    except ValueError as e:
        raise CliError(str(e)) from None


def _specprefill(args: argparse.Namespace, engine: EngineConfig):
    spec_draft = engine.speculative.model if engine.speculative is not None else None
    try:
        return specprefill_config(args, spec_draft)
    except SpecPrefillArgsError as e:
        raise CliError(str(e)) from None


def _speculative_shortcut(args: argparse.Namespace) -> str | None:
    """--draft-model / --enable-mtp as the --speculative-config JSON they stand for."""
    import json

    draft, mtp = getattr(args, "draft_model", None), getattr(args, "enable_mtp", False)
    if draft and mtp:
        raise CliError("--draft-model and --enable-mtp are two methods: pick one")
    if draft:
        return json.dumps({"method": "draft_model", "model": draft})
    return json.dumps({"method": "mtp"}) if mtp else None


def serve_configs(args: argparse.Namespace) -> ServeConfigs:
    model, engine = model_and_engine_configs(args)
    if not 0 <= args.port <= 65535:
        raise CliError("--port must be between 0 and 65535")
    _positive(args.max_request_bytes, "--max-request-bytes")
    if args.enable_auto_tool_choice and not args.tool_call_parser:
        raise CliError("--enable-auto-tool-choice needs --tool-call-parser")
    production, engine = _production(args, engine)
    server = ServerConfig(
        host=args.host, port=args.port, served_model_names=tuple(args.served_model_name),
        api_keys=tuple(args.api_key), max_request_bytes=args.max_request_bytes,
        default_chat_template_kwargs=_json_object(args.default_chat_template_kwargs,
                                                  "--default-chat-template-kwargs"),
        generation_config=args.generation_config,
        override_generation_config=_override_generation(args.override_generation_config),
        reasoning_parser=args.reasoning_parser, tool_call_parser=args.tool_call_parser,
        enable_auto_tool_choice=args.enable_auto_tool_choice, log_level=args.log_level,
        accept_vendor_model_names=args.accept_vendor_model_names,
        media=_media_config(args), warm_prompts=_warm_prompts(args.warm_prompts),
        **production,
    )
    return ServeConfigs(model, engine, server)


def _override_generation(text: str | None) -> dict:
    from mlxserve.errors import InvalidRequest
    from mlxserve.models.generation_defaults import checked_override
    from mlxserve.serving.chat_input import GenerationOptions
    from mlxserve.serving.params import resolve_sampling

    values = _json_object(text, "--override-generation-config")
    try:
        checked = checked_override(values)
        resolve_sampling(GenerationOptions(), checked)  # the ranges a request would meet
        return checked
    except (ValueError, InvalidRequest) as e:
        raise CliError(f"--override-generation-config: {getattr(e, 'message', e)}") from None


def _warm_prompts(path: str | None) -> tuple:
    from mlxserve.serving.warm_prompts import read_warm_prompts

    try:
        return read_warm_prompts(path) if path else ()
    except ValueError as e:
        raise CliError(f"--warm-prompts: {e}") from None


def _media_config(args: argparse.Namespace):
    try:
        return media_config(args)
    except MediaArgsError as e:
        raise CliError(str(e)) from None


def _production(args: argparse.Namespace, engine: EngineConfig) -> tuple[dict, EngineConfig]:
    try:
        return production_options(args), production_engine(engine, args)
    except ProductionArgsError as e:
        raise CliError(str(e)) from None
