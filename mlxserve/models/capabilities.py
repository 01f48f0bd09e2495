"""What a loaded model can do. Code outside models/ branches on this, never on names."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ModelCapabilities:
    model_type: str = ""  # informational only (logs, /v1/models); do not branch on it
    context_length: int = 4096
    vocab_size: int = 0
    has_vision: bool = False
    has_video: bool = False
    mrope: bool = False  # multimodal rotary positions (Qwen-VL family)
    cache_trimmable: bool = True  # False for hybrid SSM / gated-delta caches
    has_sliding_window: bool = False
    has_mtp: bool = False  # multi-token-prediction heads present in the weights
    template_has_tools: bool = False  # chat template renders a `tools` list
    template_has_thinking: bool = False  # chat template takes an enable_thinking switch
    template_has_reasoning_effort: bool = False  # chat template takes reasoning_effort
    template_opens_thinking: bool = False  # template ends the prompt inside <think>
    has_chat_template: bool = False
    quantization: str = "none"  # e.g. "none", "affine-4bit", "gguf-q4_1"
    dtype: str = "float32"  # compute dtype of the loaded weights
