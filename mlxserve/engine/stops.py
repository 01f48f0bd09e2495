"""Per-request output text and stop conditions (pure Python around mlx-lm's detokenizer).

``OutputStream`` feeds each new token to the request's own streaming detokenizer (one per
request, reused for every token: no re-decoding), checks token stops (EOS, stop_token_ids),
stop strings, max_tokens and the context length, and yields the text that is safe to send.
Text that could still turn into a stop string is held back (only the longest suffix that is
a prefix of some stop string); a matched stop string and anything after it never reach the
output, also when the string spans several tokens.

Each step also says how many output tokens its text covers (``StepText.tokens``), so their
logprobs go out with that text: a token counts once text from where its own text starts
is released. Tokens of held-back text that a stop string then cuts, and token stops (EOS,
stop_token_ids), are never covered: logprobs describe exactly the returned text.
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass

from mlxserve.engine.request import FINISH_LENGTH, FINISH_STOP, GenerateRequest


@dataclass
class StepText:
    text: str
    finish_reason: str | None = None
    stop_reason: str | int | None = None
    tokens: int = 0  # output tokens, in order, whose text this step released


def _held_suffix_len(text: str, stops: tuple[str, ...]) -> int:
    """Length of the longest suffix of ``text`` that is a proper prefix of a stop string."""
    best = 0
    for stop in stops:
        for n in range(min(len(stop) - 1, len(text)), best, -1):
            if text.endswith(stop[:n]):
                best = n
                break
    return best


class NullDetokenizer:
    """For models loaded without a tokenizer (token ids only): produces no text."""

    last_segment = ""

    def reset(self) -> None:
        pass

    def add_token(self, token: int) -> None:
        pass

    def finalize(self) -> None:
        pass


class OutputStream:
    def __init__(self, request: GenerateRequest, detokenizer, eos_token_ids: set[int],
                 max_model_len: int):
        self.request = request
        self.detokenizer = detokenizer
        self.detokenizer.reset()
        stop = request.stop
        eos = set() if stop.ignore_eos else set(eos_token_ids)
        self.stop_ids = set(stop.stop_token_ids) | eos
        self.hidden = request.hidden_token_ids
        self.stop_strings = tuple(stop.stop)
        self.max_tokens = stop.max_tokens
        self.max_total = max_model_len
        self.num_tokens = 0
        self.held = ""  # detokenized text not sent yet
        self.text_len = 0  # characters detokenized so far (sent + held)
        self.sent_len = 0  # characters sent so far (a prefix of the detokenized text)
        # Per not yet covered token, ascending: 2 x where its text starts (covered once text
        # past that start is sent); a hidden token, which has no text, 2 x that - 1 (covered
        # once everything before it is sent), never below the token before it.
        self.token_starts: list[int] = []

    def add_token(self, token: int) -> StepText:
        """Account for one output token; returns the text to send and the finish, if any."""
        self.num_tokens += 1
        if token in self.stop_ids:
            return self._covering(StepText(self._flush_final(), FINISH_STOP, token))
        starts = self.token_starts
        if token in self.hidden:  # a special token kept out of the text
            starts.append(max(2 * self.text_len - 1, starts[-1] if starts else -1))
            segment = ""
        else:
            starts.append(2 * self.text_len)
            self.detokenizer.add_token(token)
            segment = self.detokenizer.last_segment
        self.text_len += len(segment)
        if self.stop_strings:
            self.held += segment
            out = self._release_checking_stops()
        else:  # nothing is ever held back
            out = StepText(segment)
        if out.finish_reason is None and (self.num_tokens >= self.max_tokens or (
            len(self.request.prompt_tokens) + self.num_tokens >= self.max_total
        )):
            out = StepText(out.text + self._flush_final(), FINISH_LENGTH)
        return self._covering(out)

    def _hold(self, segment: str) -> None:
        self.held += segment
        self.text_len += len(segment)

    def _covering(self, step: StepText) -> StepText:
        """``step`` with the count of tokens its text covers; at the end, the tokens whose
        text was never sent are dropped."""
        self.sent_len += len(step.text)
        starts = self.token_starts  # ascending: one bisection finds the covered ones
        covered = bisect_left(starts, 2 * self.sent_len) if starts else 0
        if covered:
            del starts[:covered]
        if step.finish_reason is not None:
            starts.clear()
        step.tokens = covered
        return step

    def _release_checking_stops(self) -> StepText:
        if not self.stop_strings:
            text, self.held = self.held, ""
            return StepText(text)
        hit = self._first_stop(self.held)
        if hit is not None:
            at, stop = hit
            text, self.held = self.held[:at], ""
            return StepText(text, FINISH_STOP, stop)
        keep = _held_suffix_len(self.held, self.stop_strings)
        cut = len(self.held) - keep
        text, self.held = self.held[:cut], self.held[cut:]
        return StepText(text)

    def _first_stop(self, text: str) -> tuple[int, str] | None:
        best = None
        for stop in self.stop_strings:
            at = text.find(stop)
            if at >= 0 and (best is None or at < best[0]):
                best = (at, stop)
        return best

    def _flush_final(self) -> str:
        """All remaining text (end of output): detokenizer tail plus held text."""
        self.detokenizer.finalize()
        self._hold(self.detokenizer.last_segment)
        text, self.held = self.held, ""
        if self.stop_strings:
            hit = self._first_stop(text)
            if hit is not None:
                text = text[: hit[0]]
        return text
