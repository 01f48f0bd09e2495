"""One request's grammar state: an llguidance matcher advanced on committed tokens.

The engine (engine thread only) uses exactly this surface:
  ``mask_words``          words of one mask row ((vocab + 31) // 32 int32)
  ``fill_mask(row)``      allowed next tokens as a bitmask into a numpy int32 row
  ``commit(token)``       the token sampled for this request was emitted
  ``error``               None, or why the request cannot go on (dead end, bad token)
``compile_constraint`` (serving, before the request enters the batch) raises
InvalidRequest for a grammar llguidance rejects, so a bad schema is a 400.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mlxserve.errors import InvalidRequest
from mlxserve.structured.grammar import grammar_for
from mlxserve.structured.spec import StructuredOutput


class GrammarConstraint:
    def __init__(self, matcher: Any, vocab_size: int):
        self.matcher = matcher
        self.vocab_size = vocab_size
        self.mask_words = (vocab_size + 31) // 32
        self._error: str | None = None

    def fork(self) -> "GrammarConstraint":
        """A fresh copy in the same (start) state, for another choice of the request."""
        return GrammarConstraint(self.matcher.deep_copy(), self.vocab_size)

    @property
    def error(self) -> str | None:
        if self._error is None and self.matcher.is_error():
            self._error = f"structured output: {self.matcher.get_error()}"
        return self._error

    def fill_mask(self, row: np.ndarray) -> None:
        self.matcher.unsafe_compute_mask_ptr(row.ctypes.data, row.nbytes)
        self.check_mask(row)

    def check_mask(self, row: np.ndarray) -> None:
        """After a mask was filled: no allowed token at all is a dead end."""
        if self.error is None and not row.any():
            self._error = ("structured output: the grammar reached a dead end (no token can "
                           "continue the output)")

    def commit(self, token: int) -> None:
        if self.error is not None:
            return
        if not self.matcher.consume_token(int(token)):
            self._error = self.error or f"structured output: token {token} is not allowed here"


def compile_constraint(spec: StructuredOutput, llg_tokenizer: Any, grammar: str | None = None,
                       limits: Any = None) -> GrammarConstraint:
    """Validate and compile ``spec`` (or a ready ``grammar`` text) for this tokenizer.
    ``limits``: llguidance.LLParserLimits (default: llguidance's, with short errors)."""
    import llguidance

    text = grammar if grammar is not None else grammar_for(spec)
    limits = limits or llguidance.LLParserLimits(verbose_errors=False)
    is_error, messages = llguidance.LLMatcher.validate_grammar_with_warnings(
        text, llg_tokenizer, limits=limits)
    if is_error:
        why = messages[0] if messages else "unknown error"
        raise InvalidRequest(f"'{spec.param}': unsupported or invalid {spec.kind}: {why}",
                             param=spec.param)
    matcher = llguidance.LLMatcher(llg_tokenizer, text, log_level=0, limits=limits)
    if matcher.is_error():
        raise InvalidRequest(f"'{spec.param}': {matcher.get_error()}", param=spec.param)
    return GrammarConstraint(matcher, llg_tokenizer.vocab_size)
