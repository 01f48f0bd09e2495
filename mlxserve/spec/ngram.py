"""N-gram / prompt-lookup proposer: the continuation of the latest earlier occurrence of
the history's last n tokens (n from ``prompt_lookup_max`` down to ``prompt_lookup_min``),
copied from the prompt and the output so far. Pure Python, no model: it pays off where the
output repeats its input (editing a file, quoting, code refactors).

Each request keeps an index: n-gram → the position just after its latest occurrence,
extended by the tokens added since the last call, so a step costs O(new tokens x n sizes)
per row, not a scan of the whole history.
"""

from __future__ import annotations

from typing import Sequence

from mlxserve.config import SpeculativeConfig
from mlxserve.spec.proposer import NO_PROPOSAL, Proposal, ProposalRow


class _Index:
    def __init__(self) -> None:
        self.ends: dict[tuple[int, ...], int] = {}  # n-gram -> end of its latest occurrence
        self.indexed = 0  # n-grams ending at positions < this are in ``ends``


class NgramProposer:
    method = "ngram"
    needs_hidden = False

    def __init__(self, min_n: int = 2, max_n: int = 5):
        if not 1 <= min_n <= max_n:
            raise ValueError("n-gram sizes need 1 <= prompt_lookup_min <= prompt_lookup_max")
        self.min_n, self.max_n = min_n, max_n
        self._indexes: dict[str, _Index] = {}

    def propose(self, rows: Sequence[ProposalRow]) -> list[Proposal]:
        return [self._propose_one(row) for row in rows]

    def commit(self, request_id: str, accepted: Sequence[int]) -> None:
        pass  # the index catches up from the history at the next propose

    def drop(self, request_id: str) -> None:
        self._indexes.pop(request_id, None)

    def _propose_one(self, row: ProposalRow) -> Proposal:
        tokens = row.tokens
        index = self._indexes.setdefault(row.request_id, _Index())
        self._extend(index, tokens)
        total = len(tokens)
        for n in range(min(self.max_n, total - 1), self.min_n - 1, -1):
            end = index.ends.get(tuple(tokens[total - n:]))
            if end is not None:
                return Proposal(list(tokens[end:min(end + row.k, total)]))
        return NO_PROPOSAL

    def _extend(self, index: _Index, tokens: Sequence[int]) -> None:
        """Index the n-grams ``tokens[end - n:end]`` for every ``end`` up to the last
        position: the suffix itself (ending at ``len(tokens)``) is what a lookup searches
        for, so it must not find itself, and every indexed one has a continuation."""
        total = len(tokens)
        first = max(index.indexed, self.min_n)
        if first > total - 1:
            return
        base = max(0, first - self.max_n)
        window = list(tokens[base:total - 1])
        for end in range(first, total):
            for n in range(self.min_n, min(self.max_n, end) + 1):
                index.ends[tuple(window[end - n - base:end - base])] = end
        index.indexed = total


def make_ngram_proposer(config: SpeculativeConfig, context) -> NgramProposer:
    return NgramProposer(config.prompt_lookup_min, config.prompt_lookup_max)
