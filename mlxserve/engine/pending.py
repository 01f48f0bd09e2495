"""A launched step piece waiting to be read back (MLX arrays; engine thread): the sampled
tokens of a decode batch or a prefill, their logprobs, a prefill's prompt logprobs, and,
for a batch with constrained rows, the masked sample that waits for its grammar masks."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import mlx.core as mx

from mlxserve.engine.prompt_logprobs import read_prompt_logprobs
from mlxserve.engine.request import TokenLogprob
from mlxserve.engine.row import Row
from mlxserve.engine.sampler import SampleResult


@dataclass
class TokenOutput:
    """One sampled token of one request, read back from the device."""

    request_id: str
    token_id: int
    logprob: TokenLogprob | None = None
    prompt_logprobs: list[TokenLogprob | None] | None = None  # with a request's first token


@dataclass
class MaskedSample:
    """A sample that waits for its rows' grammar masks (filled while the forward runs)."""

    logits: mx.array
    rows: list[Row]
    assign: Callable[[mx.array], None]  # hands the sampled tokens to their batch / row


@dataclass
class Pending:
    ids: list[str]
    result: SampleResult | None
    want_logprobs: list[int] = field(default_factory=list)  # top-k wanted per row, -1 = none
    prompt_logprobs: dict[str, list] = field(default_factory=dict)  # id -> its chunks
    masked: MaskedSample | None = None  # set until the masked sample is started

    def arrays(self) -> list:
        """What to start evaluating now (a masked sample: its logits only, for now)."""
        chunks = [c for cs in self.prompt_logprobs.values() for c in cs]
        lp = [a for c in chunks for a in c.arrays()]
        if self.masked is not None:
            return [self.masked.logits] + lp
        return result_arrays(self.result) + lp


def read_back(pending: Pending) -> list[TokenOutput]:
    result = pending.result
    tokens = result.tokens.tolist()
    chosen = result.logprobs.tolist() if result.logprobs is not None else None
    top_ids = result.top_ids.tolist() if result.top_ids is not None else None
    top_vals = result.top_logprobs.tolist() if result.top_logprobs is not None else None
    outputs = []
    for k, rid in enumerate(pending.ids):
        lp = None
        if chosen is not None and pending.want_logprobs[k] >= 0:
            n = pending.want_logprobs[k]
            top = list(zip(top_ids[k][:n], top_vals[k][:n])) if n and top_ids else []
            lp = TokenLogprob(tokens[k], chosen[k], top)
        chunks = pending.prompt_logprobs.get(rid)
        prompt_lp = read_prompt_logprobs(chunks) if chunks is not None else None
        outputs.append(TokenOutput(rid, tokens[k], lp, prompt_lp))
    return outputs


def result_arrays(result: SampleResult) -> list:
    return [a for a in (result.tokens, result.logprobs, result.top_ids, result.top_logprobs)
            if a is not None]
