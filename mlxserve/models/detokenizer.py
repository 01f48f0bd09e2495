"""Streaming detokenizers that keep the output's leading space.

mlx-lm's BPE and SPM streaming detokenizers drop a space at the very start of the output
(fine for a chat UI, wrong for an API): `/v1/completions` of "The capital of France is"
must return " Paris", as its token and logprob offsets say. These subclasses keep every
character; one prototype is built per model (building the token map is the slow part) and
each request gets a copy, as mlx-lm's TokenizerWrapper does.
"""

from __future__ import annotations

from mlx_lm.tokenizer_utils import BPEStreamingDetokenizer, SPMStreamingDetokenizer


class UntrimmedBPEDetokenizer(BPEStreamingDetokenizer):
    def _maybe_trim_space(self, current_text: str) -> str:
        return current_text


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
