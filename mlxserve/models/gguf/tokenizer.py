"""The tokenizer a GGUF describes, rebuilt with transformers' GGUF tokenizer builders.

transformers' own ``from_pretrained(gguf_file=...)`` needs torch to read the file, so the
metadata is read here (gguf package) and handed to its builders. Where its choice of
pre-tokenizer differs from llama.cpp's for a vocabulary, it is corrected here.
"""

from __future__ import annotations

from mlxserve.errors import ModelLoadError
from mlxserve.models.gguf.reader import GGUFFile

_DICT_KEYS = {
    "tokenizer.ggml.model": "tokenizer_type",
    "tokenizer.ggml.pre": "pre_tokenizer_type",
    "tokenizer.ggml.tokens": "tokens",
    "tokenizer.ggml.scores": "scores",
    "tokenizer.ggml.token_type": "token_type",
    "tokenizer.ggml.merges": "merges",
    "tokenizer.ggml.bos_token_id": "bos_token_id",
    "tokenizer.ggml.eos_token_id": "eos_token_id",
    "tokenizer.ggml.unknown_token_id": "unk_token_id",
    "tokenizer.ggml.padding_token_id": "pad_token_id",
    "tokenizer.ggml.add_space_prefix": "add_prefix_space",
}
_SPECIAL = {
    "bos_token": "tokenizer.ggml.bos_token_id",
    "eos_token": "tokenizer.ggml.eos_token_id",
    "unk_token": "tokenizer.ggml.unknown_token_id",
    "pad_token": "tokenizer.ggml.padding_token_id",
}


def _tokenizer_dict(file: GGUFFile) -> dict:
    meta = file.metadata
    if not meta.get("tokenizer.ggml.tokens"):
        raise ModelLoadError("GGUF file has no tokenizer (tokenizer.ggml.tokens is missing)")
    return {name: meta[key] for key, name in _DICT_KEYS.items() if key in meta}


def _fix_pre_tokenizer(backend, pre_type: str | None) -> None:
    """SmolLM's vocabulary splits every digit alone before byte-level BPE (llama.cpp's
    "smollm" pre-type); transformers' GPT-2 default keeps digit runs together."""
    from tokenizers import pre_tokenizers

    if pre_type == "smollm":
        backend.pre_tokenizer = pre_tokenizers.Sequence(
            [
                pre_tokenizers.Digits(individual_digits=True),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
            ]
        )


def _special_tokens(file: GGUFFile) -> dict:
    tokens = file.metadata["tokenizer.ggml.tokens"]
    out = {}
    for name, key in _SPECIAL.items():
        index = file.metadata.get(key)
        if index is not None and 0 <= int(index) < len(tokens):
            out[name] = tokens[int(index)]
    return out


def build_tokenizer(file: GGUFFile):
    """A transformers PreTrainedTokenizerFast equivalent to the GGUF's tokenizer."""
    from transformers import PreTrainedTokenizerFast
    from transformers.integrations.gguf.gguf_tokenizer_mapping import convert_gguf_tokenizer

    tokenizer_dict = _tokenizer_dict(file)
    try:
        backend, _ = convert_gguf_tokenizer(file.architecture, tokenizer_dict)
    except (ValueError, KeyError) as e:
        raise ModelLoadError(f"cannot build the GGUF's tokenizer: {e}") from None
    _fix_pre_tokenizer(backend, tokenizer_dict.get("pre_tokenizer_type"))
    meta = file.metadata
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        add_bos_token=bool(meta.get("tokenizer.ggml.add_bos_token", False)),
        add_eos_token=bool(meta.get("tokenizer.ggml.add_eos_token", False)),
        clean_up_tokenization_spaces=False,
        **_special_tokens(file),
    )
    template = meta.get("tokenizer.chat_template")
    if isinstance(template, str) and template:
        tokenizer.chat_template = template
    return tokenizer
