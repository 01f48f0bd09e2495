"""The llguidance view of a model's tokenizer, built once per model (about 1 s for a 49k
vocabulary, 4-5 s for Qwen's 152k on a 2-core CPU), on first use.

The vocabulary size is the model's logits width (Qwen pads its embedding past the
tokenizer's vocabulary), so masks line up with the logits; the EOS ids are the model's
own stop ids, allowed exactly where the grammar accepts.
"""

from __future__ import annotations

import threading
from typing import Any

from mlxserve.errors import InvalidRequest


def fast_tokenizer(tokenizer: Any) -> Any:
    """The transformers fast tokenizer inside mlx-lm's wrapper (or a processor), or None."""
    from transformers import PreTrainedTokenizerFast

    for _ in range(4):  # wrappers delegate attributes, so look at the type, not hasattr
        if tokenizer is None or isinstance(tokenizer, PreTrainedTokenizerFast):
            return tokenizer
        inner = vars(tokenizer) if hasattr(tokenizer, "__dict__") else {}
        tokenizer = inner.get("_tokenizer") or inner.get("tokenizer")
    return None


def build_llg_tokenizer(tokenizer: Any, vocab_size: int, eos_token_ids: set[int]) -> Any:
    import llguidance.hf

    fast = fast_tokenizer(tokenizer)
    if fast is None:
        raise InvalidRequest("structured outputs need a model with a fast (tokenizers) "
                             "tokenizer", param="response_format")
    eos = sorted(eos_token_ids) or None
    return llguidance.hf.from_tokenizer(fast, n_vocab=vocab_size, eos_token=eos)


def special_tokens(tokenizer: Any, llg_tokenizer: Any) -> dict[str, int]:
    """Text -> id of the vocabulary's special (control) tokens, as llguidance sees them."""
    fast = fast_tokenizer(tokenizer)
    added = getattr(fast, "added_tokens_decoder", None) or {}
    return {str(getattr(t, "content", t)): int(i) for i, t in added.items()
            if int(i) < llg_tokenizer.vocab_size and llg_tokenizer.is_special_token(int(i))}


class LazyGrammarTokenizer:
    """Builds the llguidance tokenizer on first ``get()`` (thread-safe), then keeps it."""

    def __init__(self, tokenizer: Any, vocab_size: int, eos_token_ids: set[int]):
        self._source = (tokenizer, vocab_size, set(eos_token_ids))
        self._built: Any = None
        self._special: dict[str, int] = {}
        self._lock = threading.Lock()

    def get(self) -> Any:
        with self._lock:
            if self._built is None:
                self._built = build_llg_tokenizer(*self._source)
                self._special = special_tokens(self._source[0], self._built)
            return self._built

    def special_tokens(self) -> dict[str, int]:
        self.get()
        return self._special
