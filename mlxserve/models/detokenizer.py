"""Streaming detokenizers that keep the output's leading space.

mlx-lm's BPE and SPM streaming detokenizers drop a space at the very start of the output
(fine for a chat UI, wrong for an API): `/v1/completions` of "The capital of France is"
must return " Paris", as its token and logprob offsets say. These subclasses keep every
character; one prototype is built per model (building the token map is the slow part) and
each request gets a copy, as mlx-lm's TokenizerWrapper does.

``TokenBytes`` gives the raw bytes a token id stands for (OpenAI's logprob ``bytes``): a
token holding part of a UTF-8 character decodes to U+FFFD, but its bytes let a client
rebuild the character from consecutive tokens.
"""

from __future__ import annotations

from mlx_lm.tokenizer_utils import (
    BPEStreamingDetokenizer, SPMStreamingDetokenizer, _byte_decoder,
)

_SPM_SPACE = "\u2581".encode("utf-8")


class UntrimmedBPEDetokenizer(BPEStreamingDetokenizer):
    def _maybe_trim_space(self, current_text: str) -> str:
        return current_text

    def _decode_bytes(self, seq: str) -> str:
        # mlx-lm's tests the byte value for truth, so byte 0 ('Ā') came out as 'Ā'
        return _byte_level_bytes(seq).decode("utf-8", "replace")


def _byte_level_bytes(token: str) -> bytes:
    """A byte-level BPE token string → its bytes (characters outside GPT-2's byte table,
    as in added tokens, stay UTF-8)."""
    table = _byte_decoder()
    out = bytearray()
    for ch in token:
        byte = table.get(ch)
        if byte is None:
            out += ch.encode("utf-8")
        else:
            out.append(byte)
    return bytes(out)


def detokenizer_prototype(tokenizer):
    """A detokenizer to copy per request (None when the model has no tokenizer)."""
    if tokenizer is None:
        return None
    upstream = tokenizer.detokenizer
    if isinstance(upstream, BPEStreamingDetokenizer):
        return UntrimmedBPEDetokenizer(tokenizer)
    if isinstance(upstream, SPMStreamingDetokenizer):
        return SPMStreamingDetokenizer(tokenizer, trim_space=False)
    return upstream


class TokenBytes:
    """Raw bytes of single token ids, for one model's tokenizer (cached per id)."""

    def __init__(self, tokenizer):
        self._tokenizer = tokenizer
        detokenizer = getattr(tokenizer, "detokenizer", None)
        self._kind = ("bpe" if isinstance(detokenizer, BPEStreamingDetokenizer) else
                      "spm" if isinstance(detokenizer, SPMStreamingDetokenizer) else None)
        self._spm_map = detokenizer.tokenmap if self._kind == "spm" else None
        added = getattr(tokenizer, "added_tokens_decoder", None) or {}
        self._added = {int(i): str(t) for i, t in added.items()}
        self._cache: dict[int, bytes] = {}

    def __call__(self, token_id: int) -> bytes:
        raw = self._cache.get(token_id)
        if raw is None:
            raw = self._cache[token_id] = self._raw(token_id)
        return raw

    def _raw(self, token_id: int) -> bytes:
        if token_id in self._added:  # special and added tokens are plain text
            return self._added[token_id].encode("utf-8")
        if self._kind == "bpe":
            return _byte_level_bytes(self._tokenizer.convert_ids_to_tokens(token_id))
        if self._kind == "spm" and token_id < len(self._spm_map):
            return self._spm_map[token_id].replace(_SPM_SPACE, b" ")
        return self._tokenizer.decode([token_id]).encode("utf-8")
