"""Frozen configuration records, built once by the CLI (or a test) and passed down.

Defaults are resolved here and nowhere else.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # a type name only: config imports nothing from the package at run time
    from mlxserve.multimodal.media_config import MediaConfig
    from mlxserve.serving.limits import RequestLimits


@dataclass(frozen=True)
class ModelConfig:
    # A local HF folder, a hub id, a .gguf path (or the first of split parts), or an alias
    # of an installed model package (see mlxserve.models.aliases).
    model: str = "smollm2-135m"
    revision: str | None = None
    # "auto": float32 on a CPU-only machine (fast BLAS path), the checkpoint's dtype on GPU.
    dtype: str = "auto"
    # Quantized weights are dequantized at load unless this is True: on CPU (to float32),
    # and on CUDA when the 16-bit weights fit (models/hf_folder.py); Metal keeps them.
    keep_quantized: bool = False
    chat_template: str | None = None  # path to a Jinja file overriding the model's template
    trust_remote_code: bool = False


@dataclass(frozen=True)
class SpeculativeConfig:
    """``--speculative-config`` (spec/settings.py parses and validates the JSON)."""

    method: str  # "ngram", "draft_model", "mtp" (spec/registry.py)
    num_speculative_tokens: int = 3  # most proposals verified per row per step
    prompt_lookup_min: int = 2  # ngram: shortest suffix n-gram looked up
    prompt_lookup_max: int = 5  # ngram: longest
    model: str | None = None  # draft_model: its source (anything --model takes)
    options: dict = field(default_factory=dict)  # other keys a method declares


@dataclass(frozen=True)
class SpecPrefillConfig:
    """SpecPrefill (spec/specprefill/): a small draft model scores the prompt's tokens,
    the target prefills only the chunks that matter (vllm-mlx's option names)."""

    enabled: bool = False  # --specprefill: on by default for prompts over the threshold
    draft_model: str | None = None  # --specprefill-draft-model; None: the spec draft's
    threshold: int = 8192  # uncached prompt tokens from which it is on by default
    keep_pct: float = 0.3  # share of the scored tokens the target prefills
    chunk_tokens: int = 32  # tokens are kept or dropped in whole chunks of this size
    sink_tokens: int = 32  # the prompt's first tokens, always kept (attention sinks)
    tail_tokens: int = 64  # the prompt's last tokens: always kept, their queries score


@dataclass(frozen=True)
class EngineConfig:
    # most requests in the running batch; None: from the KV budget (kv_budget.py)
    max_num_seqs: int | None = None
    # Token budget of one step (prefill chunks + decodes); None: token_budget() decides.
    max_num_batched_tokens: int | None = None
    prefill_chunk_size: int = 512  # longest prefill piece one request gets in one step
    kv_cache_memory_bytes: int | None = None  # None: derived from the device's memory
    kv_cache_memory_fraction: float = 0.5  # of free memory after weights, when derived
    max_model_len: int | None = None  # None: the model's context length
    max_queue_size: int = 1024  # waiting requests beyond this are rejected (503)
    seed: int = 0
    enable_prefix_caching: bool = True  # plain-KV models, text requests (engine/prefix.py)
    prefix_cache_memory_bytes: int | None = None  # None: a share of the KV budget
    # start-up warm-up (engine/warm_up.py): every batch path once, then decode batch sizes
    # in powers of two up to warmup_max_batch (None: max_num_seqs with a GPU, none on a
    # CPU, which compiles nothing on first use), within warmup_timeout_s
    # pad single-row prefill forwards to a bounded set of lengths (engine/prefill.py), so a
    # new prompt length costs no kernel compilation; None: on with a GPU, off on a CPU
    # (which compiles nothing and pays for the padding)
    bucket_prefill: bool | None = None
    warmup: bool = True
    warmup_max_batch: int | None = None
    warmup_timeout_s: float = 120.0
    speculative: SpeculativeConfig | None = None  # --speculative-config; None: off
    specprefill: SpecPrefillConfig = field(default_factory=SpecPrefillConfig)

    def specprefill_draft(self) -> str | None:
        """SpecPrefill's draft source: its own, else speculative decoding's draft model."""
        if self.specprefill.draft_model is not None:
            return self.specprefill.draft_model
        return self.speculative.model if self.speculative is not None else None

    def token_budget(self, cpu_only: bool) -> int:
        """8192 with a GPU: a burst of requests is admitted in one step, so their rows stay
        aligned and decode without masks (fused attention). 2048 on a CPU, where a step of
        8192 prompt tokens would freeze running streams for seconds."""
        if self.max_num_batched_tokens is not None:
            return self.max_num_batched_tokens
        return 2048 if cpu_only else 8192


@dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8000
    served_model_names: tuple[str, ...] = ()
    api_keys: tuple[str, ...] = ()
    max_request_bytes: int = 32 * 1024 * 1024
    max_n: int = 8  # bound on the `n` field
    max_tokens_cap: int | None = None  # None: the context length
    default_chat_template_kwargs: dict = field(default_factory=dict)
    # sampling for fields a request leaves out: "auto" the model's generation_config.json
    # (when it sets do_sample), "vllm" none; the override's fields win over both
    generation_config: str = "auto"
    override_generation_config: dict = field(default_factory=dict)
    reasoning_parser: str | None = None  # a registered name, "auto" or None
    tool_call_parser: str | None = None  # a registered name, "auto" or None
    enable_auto_tool_choice: bool = False
    accept_vendor_model_names: bool = False  # claude-* / gpt-* names mean the served model
    response_store_entries: int = 256  # Responses API: stored responses kept (LRU)
    log_level: str = "info"
    media: "MediaConfig | None" = None  # image/video limits; None: MediaConfig() defaults
    # Running in production (limits, load shedding, deadlines, draining, metrics, logs).
    request_limits: "RequestLimits | None" = None  # None: RequestLimits() defaults
    max_concurrent_requests: int | None = None  # requests in flight beyond this get 503
    request_timeout_s: float | None = None  # deadline of every request; None: none
    allowed_origins: tuple[str, ...] = ()  # CORS; empty: no CORS headers at all
    shutdown_grace_s: float = 30.0  # SIGTERM: how long requests in flight may finish
    metrics_require_api_key: bool = False  # /metrics and /metrics/json behind --api-key
    log_prompts: bool = False  # prompt text in the access log
    stream_ping_s: float = 5.0  # Anthropic streams: a ping after this long without an event
    # --warm-prompts: prefilled at start-up, pinned in the prefix cache (serving/warm_prompts.py)
    warm_prompts: tuple = ()
