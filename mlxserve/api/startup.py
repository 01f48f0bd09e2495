"""Start-up: start the engine (loads the model), then derive what requests need."""

from __future__ import annotations

import logging
from typing import Any

from mlxserve.api.state import ApiState, ServedModels
from mlxserve.api.system.metrics import ServerMetrics
from mlxserve.config import ServerConfig
from mlxserve.errors import MlxserveError
from mlxserve.multimodal.media_config import MediaConfig
from mlxserve.serving.generation import GenerationService, ServingSettings
from mlxserve.serving.limits import RequestLimits
from mlxserve.serving.params import ContextLimits
from mlxserve.serving.parser_setup import ServingSetupError, resolve_parser_settings
from mlxserve.serving.warm_prompts import warm_prefix_cache

log = logging.getLogger("mlxserve.api")

VENDOR_MODEL_PREFIXES = ("claude-", "gpt-")


def context_length(engine: Any) -> int:
    """The model's context, or the engine's --max-model-len when it is smaller."""
    length = engine.model.capabilities.context_length
    engine_config = getattr(engine, "engine_config", None)
    limit = getattr(engine, "max_model_len", None) or getattr(engine_config, "max_model_len", None)
    return min(length, limit) if limit else length


def read_chat_template(path: str | None) -> str | None:
    if not path:
        return None
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError as e:
        raise ServingSetupError(f"cannot read the chat template file: {e.strerror}") from None


def served_models(engine: Any, config: ServerConfig) -> ServedModels:
    model = engine.model
    names = tuple(config.served_model_names) or (model.name,)
    model_config = getattr(engine, "model_config", None)
    accepted = set(names) | {model.name, model.path}
    if model_config is not None and getattr(model_config, "model", None):
        accepted.add(model_config.model)
    prefixes = VENDOR_MODEL_PREFIXES if config.accept_vendor_model_names else ()
    return ServedModels(names, frozenset(a for a in accepted if a), prefixes)


def build_service(engine: Any, config: ServerConfig, observer: Any = None
                  ) -> GenerationService:
    model_config = getattr(engine, "model_config", None)
    template = read_chat_template(getattr(model_config, "chat_template", None))
    parsers = resolve_parser_settings(config.reasoning_parser, config.tool_call_parser,
                                      config.enable_auto_tool_choice, engine.model.tokenizer,
                                      template)
    limits = ContextLimits(context_length(engine), config.max_tokens_cap)
    settings = ServingSettings(limits=limits, max_n=config.max_n, chat_template=template,
                               default_chat_template_kwargs=dict(
                                   config.default_chat_template_kwargs),
                               parsers=parsers, media=config.media or MediaConfig(),
                               request_limits=config.request_limits or RequestLimits(),
                               request_timeout_s=config.request_timeout_s,
                               sampling_defaults=_sampling_defaults(engine, config))
    return GenerationService(engine, settings, observer)


def _sampling_defaults(engine: Any, config: ServerConfig) -> dict:
    from mlxserve.models.generation_defaults import server_sampling_defaults

    folder = getattr(engine.model, "path", None)
    defaults = server_sampling_defaults(folder if isinstance(folder, str) else None,
                                        config.generation_config,
                                        config.override_generation_config)
    if defaults:
        log.info("sampling for fields a request leaves out: %s", defaults)
    return defaults


async def start_serving(state: ApiState, observer: ServerMetrics | None = None) -> None:
    """Start the engine and fill ``state``; a failure is recorded, never raised."""
    try:
        if not getattr(state.engine, "ready", False):
            await state.engine.start()
        state.models = served_models(state.engine, state.server_config)
        if observer is not None:  # the metrics' model label: the served name
            observer.serve_model(state.models.primary)
        service = build_service(state.engine, state.server_config, observer)
        await warm_prefix_cache(service, state.engine, state.server_config.warm_prompts)
        state.service = service  # ready (/ready is 200) once the warm prompts are in
        log.info("serving %s", ", ".join(state.models.names))
    except MlxserveError as e:
        state.startup_error = e.message
    except Exception as e:  # noqa: BLE001 - reported as one line by the CLI
        state.startup_error = f"{type(e).__name__}: {e}"
    finally:
        state.startup_finished.set()
