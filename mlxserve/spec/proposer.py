"""The one interface every speculative-decoding proposer implements (n-gram, draft model,
MTP heads). The engine calls it on its own thread (MLX work allowed), once per step:

1. ``propose(rows)``: for each row (a request that may speculate this step), up to
   ``row.k`` tokens that should follow ``row.tokens``. A proposal may be shorter or empty
   (nothing to propose: the row decodes one token as usual).
2. The engine verifies all proposals in one target forward, then ``commit(request_id,
   accepted)`` for every row it asked: ``accepted`` is the prefix of that row's proposal
   the target kept (possibly empty). The token the target itself produced after them (the
   correction or bonus token) is not in ``accepted``: it shows up as ``tokens[-1]`` of the
   row's next ``propose``. A proposer with its own caches trims or advances them here.
3. ``drop(request_id)`` when a request leaves (finished, aborted, failed): free its state.
   A request may be dropped without ever being proposed for, and dropped twice.

Rows come and go between steps, and a row may skip steps (no proposal asked, e.g. when
speculation backs off): a proposer must treat ``row.tokens`` as the truth each time and
catch up (a draft model prefills what its cache lacks) rather than assume every step saw
every row.

Lossless sampling needs, for a sampled row, the distribution each proposed token was
drawn from: ``Proposal.probs`` ((n, V) float32, rows summing to 1). ``None`` means the
proposer is deterministic (n-gram lookup; a greedy draft), i.e. a point mass on each
token; the engine's acceptance rule (spec/acceptance.py) handles both. Greedy rows are
verified by exact match whatever ``probs`` is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, Sequence, runtime_checkable

if TYPE_CHECKING:  # a record from the engine boundary; spec/ sits below engine/
    from mlxserve.engine.request import SamplingParams


@dataclass(frozen=True)
class ProposalRow:
    """What a proposer sees of one request."""

    request_id: str
    tokens: Sequence[int]  # prompt + output ids so far; the last is the newest output
    # token, sampled by the target but not yet in the target's cache
    k: int  # the most tokens to propose for this row this step (>= 1)
    sampling: "SamplingParams"  # the request's params (a draft samples with them)
    prompt_len: int = 0  # tokens[:prompt_len] is the prompt
    # the target's last-layer hidden state (hidden,) at the position whose logits gave
    # tokens[-1]; set only for proposers with ``needs_hidden`` and only when the engine
    # computed it (after a decode / verify step of this row; None right after prefill)
    hidden: Any = None


@dataclass(frozen=True)
class Proposal:
    tokens: list[int]  # proposed continuation, at most ``row.k`` tokens, may be empty
    probs: Any = None  # mx.array (len(tokens), V) the draft distributions; None: point mass


NO_PROPOSAL = Proposal([])


@runtime_checkable
class Proposer(Protocol):
    method: str  # "ngram", "draft_model", "mtp": the name counters are reported under
    needs_hidden: bool  # the engine computes and passes ``ProposalRow.hidden``

    def propose(self, rows: Sequence[ProposalRow]) -> list[Proposal]:
        """One ``Proposal`` per row, in the order of ``rows``."""
        ...

    def commit(self, request_id: str, accepted: Sequence[int]) -> None:
        """The target kept ``accepted`` (a prefix of the last proposal for the request)."""
        ...

    def drop(self, request_id: str) -> None:
        """The request left the engine: forget it."""
        ...


class TokenHistory(Sequence[int]):
    """Prompt + output ids as one read-only sequence, without copying either list (the
    engine hands one per row per step; the lists keep growing under it)."""

    def __init__(self, prompt: Sequence[int], output: Sequence[int]):
        self.prompt, self.output = prompt, output

    def __len__(self) -> int:
        return len(self.prompt) + len(self.output)

    def __getitem__(self, index):
        n = len(self.prompt)
        if isinstance(index, slice):
            start, stop, step = index.indices(len(self))
            if step != 1:
                return [self[i] for i in range(start, stop, step)]
            return (list(self.prompt[start:min(stop, n)])
                    + list(self.output[max(start - n, 0):max(stop - n, 0)]))
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(index)
        return self.prompt[index] if index < n else self.output[index - n]
