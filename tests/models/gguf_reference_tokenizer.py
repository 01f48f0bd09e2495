"""An independent reference tokenizer for a byte-level GGUF vocabulary.

Built straight from the file's tokens and merges with the ``tokenizers`` library, and the
pre-tokenizer split llama.cpp uses for the file's ``tokenizer.ggml.pre`` value (regexes as
llama.cpp's llama-vocab.cpp defines them), so it shares no code with mlxserve's builder.
"""

from __future__ import annotations

_GPT2 = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)"
_QWEN2 = (
    r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+"
    r"|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
# llama.cpp applies these regexes one after another; each splits the previous pieces.
SPLITS = {"qwen2": [_QWEN2], "smollm": [r"\p{N}", _GPT2]}


def reference_tokenizer(gguf_path: str):
    from gguf import GGUFReader
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers

    reader = GGUFReader(gguf_path, "r")
    field = lambda key: reader.fields[key].contents()  # noqa: E731
    tokens, types = field("tokenizer.ggml.tokens"), field("tokenizer.ggml.token_type")
    merges = [tuple(m.split(" ", 1)) for m in field("tokenizer.ggml.merges")]
    vocab = {token: index for index, token in enumerate(tokens)}
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=merges, ignore_merges=False))
    splits = [pre_tokenizers.Split(Regex(r), behavior="isolated") for r in SPLITS[field("tokenizer.ggml.pre")]]
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        splits + [pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)]
    )
    tokenizer.decoder = decoders.ByteLevel()
    control = [t for t, kind in zip(tokens, types) if int(kind) == 3]
    tokenizer.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in control])
    return tokenizer
