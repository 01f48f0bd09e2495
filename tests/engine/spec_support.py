"""A proposer for tests that knows the answer: it proposes a request's reference greedy
continuation (recorded from a run without speculation), corrupted at chosen places, so a
verify meets accepted runs, rejections at every offset and empty proposals."""

from __future__ import annotations

import zlib

from mlxserve.spec.proposer import NO_PROPOSAL, Proposal

# prompt (tuple) -> reference output ids; filled by the test before the engine starts
REFERENCES: dict[tuple, list[int]] = {}


class OracleProposer:
    method = "oracle"
    needs_hidden = False

    def __init__(self) -> None:
        self._asked: dict[str, int] = {}  # request id -> proposals asked of it

    def propose(self, rows):
        return [self._one(row) for row in rows]

    def _one(self, row):
        """Right, wrong at one offset, or no proposal, by the row's own count of asks (so
        a row gets the same proposals whatever else is in its batches: a seeded sampled
        request then repeats itself across runs of different batches)."""
        asked = self._asked[row.request_id] = self._asked.get(row.request_id, 0) + 1
        n = asked + zlib.crc32(row.request_id.encode())
        prompt = tuple(row.tokens[:row.prompt_len])
        reference = REFERENCES.get(prompt)
        done = len(row.tokens) - row.prompt_len
        if reference is None or n % 7 == 0:
            return NO_PROPOSAL
        tokens = list(reference[done:done + row.k])
        wrong = n % 4  # 0: all right; else the token at this offset is wrong
        if 0 < wrong <= len(tokens):
            tokens[wrong - 1] = (tokens[wrong - 1] + 1) % 200
        return Proposal(tokens)

    def commit(self, request_id, accepted):
        pass

    def drop(self, request_id):
        self._asked.pop(request_id, None)


class HiddenOracleProposer(OracleProposer):
    """The oracle, asking for the target's hidden states as an MTP head does."""

    needs_hidden = True
    seen: list = []  # (row had a hidden state, its shape) per proposal asked

    def _one(self, row):
        hidden = row.hidden
        HiddenOracleProposer.seen.append(None if hidden is None else tuple(hidden.shape))
        return super()._one(row)


def make_oracle_proposer(config, context):
    return HiddenOracleProposer() if config.options.get("hidden") else OracleProposer()
