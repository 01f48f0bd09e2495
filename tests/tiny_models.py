"""Tiny random-weight models written as real Hugging Face folders, for tests.

``make_tiny_model(tmp_path, family)`` writes config.json, model.safetensors (float32
weights from the mlx-lm model class, seeded), tokenizer.json (byte-level BPE over the
256 bytes, a few merges and ChatML special tokens), tokenizer_config.json (with a ChatML
chat template) and generation_config.json (EOS ids), and returns the folder path.

Families: llama, qwen2, qwen3, gemma3 (sliding-window layers) and qwen3_next (hybrid:
gated-delta layers whose ArraysCache cannot be trimmed, plus full-attention layers).

Weights are scaled up from mlx's default init so the logits are peaked: greedy decoding
then produces varied tokens with clear margins, so equality tests mean something.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import mlxserve  # noqa: F401  (binds MLX to OpenBLAS before mlx.core loads)

SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
# A few merges so some tokens are multi-byte (stop strings then span tokens of any size).
_MERGE_PAIRS = [
    ("t", "h"), ("th", "e"), ("i", "n"), ("a", "n"), ("e", "r"), ("o", "n"),
    ("Ġ", "t"), ("Ġt", "h"), ("r", "e"), ("e", "n"), ("a", "t"), ("o", "r"),
    ("s", "t"), ("i", "s"), ("Ġ", "a"), ("Ġ", "s"), ("e", "s"), ("in", "g"),
]
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

_HIDDEN = 64
_COMMON = dict(
    hidden_size=_HIDDEN, num_hidden_layers=2, intermediate_size=128,
    num_attention_heads=4, num_key_value_heads=2, rms_norm_eps=1e-6,
    max_position_embeddings=4096, tie_word_embeddings=True,
)
FAMILIES: dict[str, dict] = {
    "llama": dict(_COMMON, model_type="llama", rope_theta=10000.0),
    "qwen2": dict(_COMMON, model_type="qwen2", rope_theta=10000.0),
    "qwen3": dict(_COMMON, model_type="qwen3", head_dim=16, rope_theta=10000.0),
    "gemma3": dict(
        _COMMON, model_type="gemma3_text", num_hidden_layers=3, head_dim=16,
        query_pre_attn_scalar=16, sliding_window=16, sliding_window_pattern=2,
        rope_theta=10000.0, rope_local_base_freq=10000.0,
    ),
    "qwen3_next": dict(
        _COMMON, model_type="qwen3_next", num_hidden_layers=4, head_dim=16,
        linear_num_value_heads=2, linear_num_key_heads=2, linear_key_head_dim=16,
        linear_value_head_dim=16, linear_conv_kernel_dim=4, num_experts=0,
        num_experts_per_tok=1, decoder_sparse_step=1, shared_expert_intermediate_size=0,
        mlp_only_layers=[0, 1, 2, 3], moe_intermediate_size=0, rope_theta=10000.0,
        partial_rotary_factor=0.5, full_attention_interval=2,
    ),
}
# Families whose mlx-lm model accepts ``input_embeddings`` (embedding-prefill tests).
EMBEDDING_FAMILIES = ("llama", "qwen2")


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character table (the byte-level alphabet)."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(
        range(0xAE, 0x100)
    )
    chars = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return {b: chr(c) for b, c in zip(printable, chars)}


def tokenizer_vocab_size() -> int:
    return 256 + len(_MERGE_PAIRS) + len(SPECIAL_TOKENS)


def _write_tokenizer(folder: Path) -> dict[str, int]:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    vocab = {ch: i for i, ch in enumerate(_bytes_to_unicode().values())}
    merges = []
    for a, b in _MERGE_PAIRS:
        merges.append((a, b))
        vocab[a + b] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(list(SPECIAL_TOKENS))
    tok.save(str(folder / "tokenizer.json"))
    special_ids = {s: tok.token_to_id(s) for s in SPECIAL_TOKENS}
    added = {
        str(i): {"content": s, "special": True, "lstrip": False, "rstrip": False,
                 "normalized": False, "single_word": False}
        for s, i in special_ids.items()
    }
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": None, "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>",
        "unk_token": None, "added_tokens_decoder": added,
        "chat_template": CHATML_TEMPLATE, "model_max_length": 4096,
    }, indent=1))
    return special_ids


def _random_weights(config: dict, seed: int, scale: float) -> dict:
    import mlx.core as mx
    from mlx.utils import tree_flatten, tree_map

    module = importlib.import_module(f"mlx_lm.models.{config['model_type']}")
    mx.random.seed(seed)
    # a copy: some ModelArgs rewrite nested dicts (rope_parameters) of what they are given
    model = module.Model(module.ModelArgs.from_dict(json.loads(json.dumps(config))))
    model.update(tree_map(lambda p: (p * scale).astype(mx.float32), model.parameters()))
    weights = dict(tree_flatten(model.parameters()))
    mx.eval(weights)
    return weights


def new_model_folder(folder: Path) -> list[int] | None:
    """Start a tiny model folder with its tokenizer; its EOS ids, or None when the folder
    already holds a model (nothing to write)."""
    if (folder / "model.safetensors").exists():
        return None
    folder.mkdir(parents=True, exist_ok=True)
    special_ids = _write_tokenizer(folder)
    return [special_ids["<|im_end|>"], special_ids["<|endoftext|>"]]


def save_model_folder(folder: Path, config: dict, weights: dict) -> str:
    import mlx.core as mx

    mx.save_safetensors(str(folder / "model.safetensors"), weights)
    (folder / "config.json").write_text(json.dumps(config, indent=1))
    (folder / "generation_config.json").write_text(
        json.dumps({"eos_token_id": config["eos_token_id"]}))
    return str(folder)


def make_tiny_model(tmp_path, family: str = "llama", *, seed: int = 0,
                    scale: float = 3.0, overrides: dict | None = None) -> str:
    """Write a tiny random ``family`` model as an HF folder under ``tmp_path``; return it."""
    if family not in FAMILIES:
        raise ValueError(f"unknown tiny family {family!r}; known: {sorted(FAMILIES)}")
    folder = Path(tmp_path) / f"tiny-{family}-{seed}"
    eos = new_model_folder(folder)
    if eos is None:
        return str(folder)
    config = dict(FAMILIES[family], vocab_size=tokenizer_vocab_size(), **(overrides or {}))
    config.update(eos_token_id=eos, bos_token_id=None, torch_dtype="float32")
    return save_model_folder(folder, config, _random_weights(config, seed, scale))
