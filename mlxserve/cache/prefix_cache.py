"""The prefix store: cached KV of past token sequences, found by longest common prefix.
Pure bookkeeping (no MLX import): an entry's payload is opaque (the engine's per-layer
arrays) and its size is given by the caller.

Index: hashed fixed-size blocks. Every entry registers the chained hash of each of its
full blocks (block ``i``'s key hashes blocks ``0..i``), so the entries under one key all
share those first ``(i + 1) * BLOCK`` tokens. A lookup walks the query's block keys while
some entry has them (one dict probe per block, no per-token nodes), then compares tokens
against the candidates only for the one block past the shared ones, and compares the
winner's shared head once (a C tuple compare). Tokens are always compared, so a hash
collision can only cost a probe, never a wrong hit, and a lookup costs the same whether
one entry or hundreds share a long system prompt.

An entry holds the KV of one whole sequence (a request's prompt and output); a hit on
any prefix of it trims the payload (plain attention KV can be cut anywhere). A new entry
that extends an older one (the next turn of a chat) replaces it; one that is a prefix of
an existing entry is not stored. Entries in use are locked (a count) and never evicted;
the rest go least recently used first when the bytes would pass the budget. Pinned
entries (warm prompts) are never evicted, replaced or cleared; they count in the budget,
and a pin that would pass it is refused.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

BLOCK = 16  # tokens per hashed block


@dataclass
class PrefixEntry:
    tokens: tuple[int, ...]
    payload: Any
    nbytes: int
    locks: int = 0
    keys: list[int] = field(default_factory=list)  # its block keys, for removal
    pinned: bool = False

    @property
    def kept(self) -> bool:
        """Not evictable now: in use or pinned."""
        return bool(self.locks) or self.pinned


@dataclass
class PrefixMatch:
    """A locked entry and how many of the query's tokens it covers."""

    entry: PrefixEntry
    length: int


@dataclass(frozen=True)
class PrefixCacheStats:
    entries: int = 0
    bytes: int = 0
    budget_bytes: int = 0
    hits: int = 0
    misses: int = 0
    tokens_saved: int = 0
    tokens_queried: int = 0
    evictions: int = 0
    locked: int = 0
    pinned: int = 0
    pinned_bytes: int = 0

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def iter_block_keys(tokens):
    """Chained hashes of the full blocks of ``tokens``, one at a time (a lookup stops at
    the first block no entry holds)."""
    previous = 0
    for i in range(len(tokens) // BLOCK):
        previous = hash((previous, tuple(tokens[i * BLOCK:(i + 1) * BLOCK])))
        yield previous


def block_keys(tokens) -> list[int]:
    """Chained hashes of every full block of ``tokens``."""
    return list(iter_block_keys(tokens))


def common_prefix(a, b) -> int:
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


class PrefixCache:
    def __init__(self, budget_bytes: int, exact: bool = False):
        """``exact``: entries are whole snapshots (state that cannot be cut, e.g. SSM
        layers): a hit covers a whole entry, never part of one."""
        self.budget_bytes = max(0, int(budget_bytes))
        self.exact = exact
        self._entries: OrderedDict[int, PrefixEntry] = OrderedDict()  # id -> entry, LRU first
        self._index: dict[int, set[int]] = {}  # block key -> ids of entries holding it
        self._next_id = 0
        self.bytes = 0
        self.hits = self.misses = self.tokens_saved = self.evictions = 0
        self.tokens_queried = 0
        self._changes = 0  # bumped by whatever changes what stats() counts
        self._stats: tuple[int, PrefixCacheStats] | None = None

    # ---- lookup -------------------------------------------------------------------
    def lookup(self, tokens: list[int], limit: int) -> PrefixMatch | None:
        """The entry sharing the longest prefix with ``tokens`` (at most ``limit`` tokens),
        locked for the caller (``release`` it); None (a miss) when nothing is shared."""
        best = self._best(tokens, limit)
        self.tokens_queried += len(tokens)
        self._changes += 1
        if best is None:
            self.misses += 1
            return None
        entry_id, length = best
        entry = self._entries[entry_id]
        self._entries.move_to_end(entry_id)
        entry.locks += 1
        self.hits += 1
        self.tokens_saved += length
        return PrefixMatch(entry, length)

    def _best(self, tokens: list[int], limit: int) -> tuple[int, int] | None:
        """(entry id, hit length) of the longest match. The candidates share the first
        ``shared`` tokens by their block keys, so only the next block's tokens rank them;
        the winner's first ``shared`` tokens are then compared (in C) before it is
        trusted, so a hash collision only moves on to the next candidate. Cost: one
        block per candidate plus one prompt-length compare, however many entries share a
        long system prompt."""
        shared, ids, _ = self._shared(tokens)
        tail = tuple(tokens[shared:shared + BLOCK])
        reach = {i: shared + common_prefix(self._entries[i].tokens[shared:shared + BLOCK], tail)
                 for i in ids}
        head = None
        for entry_id in sorted(ids, key=lambda i: (-reach[i], i)):  # ties: the oldest
            full = reach[entry_id]
            held = self._entries[entry_id].tokens
            length = min(limit, full)
            if length <= 0:
                break
            if self.exact and length < len(held):
                continue
            head = tuple(tokens[:shared]) if head is None else head
            if held[:shared] == head:
                return entry_id, length
        return None

    def _shared(self, tokens, keys: list[int] | None = None
                ) -> tuple[int, list[int], bool]:
        """(shared, ids, whole): the entries holding the most of ``tokens``' full blocks
        (by block key), how many tokens those blocks cover, and whether they are all of
        ``tokens``' full blocks. No entry holding its first block: the entries with the
        same first token (the shared part is then shorter than a block)."""
        found, blocks = None, 0
        for key in (iter_block_keys(tokens) if keys is None else keys):
            ids = self._index.get(key)
            if not ids:
                break
            found, blocks = ids, blocks + 1
        whole = blocks == len(tokens) // BLOCK
        if found is None:
            first = tuple(tokens[:1])
            return 0, [i for i, e in self._entries.items() if e.tokens[:1] == first], whole
        return blocks * BLOCK, list(found), whole

    def _starting_with(self, tokens: tuple[int, ...], keys: list[int],
                       same_length: bool = False):
        """Entries whose tokens begin with all of ``tokens`` (``same_length``: are exactly
        ``tokens``), one at a time: the short tail is compared first, the head only for
        an entry that passed it."""
        shared, ids, whole = self._shared(tokens, keys)
        if not whole:  # a full block of ``tokens`` is in no entry
            return
        tail, head = tokens[shared:], tokens[:shared]
        for entry_id in ids:
            held = self._entries[entry_id].tokens
            if same_length and len(held) != len(tokens):
                continue
            if held[shared:len(tokens)] == tail and held[:shared] == head:
                yield entry_id

    def release(self, match: PrefixMatch) -> None:
        match.entry.locks = max(0, match.entry.locks - 1)
        self._changes += 1

    # ---- insert and evict ---------------------------------------------------------
    def insert(self, tokens: list[int], payload: Any, nbytes: int, pin: bool = False) -> bool:
        """Store the KV of ``tokens`` (``pin``: never to be evicted); False when it is
        already covered (a pin then pins an entry of exactly these tokens) or cannot fit."""
        tokens = tuple(tokens)
        if not tokens or nbytes > self.budget_bytes:
            return False
        keys = block_keys(tokens)
        if pin and self._pin_existing(tokens, keys, pin):
            return True
        if not pin and not self.exact and self._covered(tokens, keys):
            return False
        if self.exact and self._pin_existing(tokens, keys, pin):
            return False
        for entry_id in self._extended_by(tokens, keys):
            self._remove(entry_id)
        if not self._make_room(nbytes):
            return False
        entry = PrefixEntry(tokens, payload, nbytes, keys=keys, pinned=pin)
        entry_id, self._next_id = self._next_id, self._next_id + 1
        self._entries[entry_id] = entry
        for key in entry.keys:
            self._index.setdefault(key, set()).add(entry_id)
        self.bytes += nbytes
        self._changes += 1
        return True

    def _covered(self, tokens: tuple[int, ...], keys: list[int]) -> bool:
        entry_id = next(self._starting_with(tokens, keys), None)
        if entry_id is None:
            return False
        self._entries.move_to_end(entry_id)
        return True

    def _pin_existing(self, tokens: tuple[int, ...], keys: list[int], pin: bool) -> bool:
        """Whether an entry holds exactly ``tokens`` (then pinned when ``pin``)."""
        entry_id = next(self._starting_with(tokens, keys, same_length=True), None)
        if entry_id is None:
            return False
        entry = self._entries[entry_id]
        entry.pinned = entry.pinned or pin
        self._changes += 1
        self._entries.move_to_end(entry_id)
        return True

    def _extended_by(self, tokens: tuple[int, ...], keys: list[int]) -> list[int]:
        """Evictable entries that are a prefix of ``tokens`` (the new entry covers them).
        Such an entry ends within a block of the shared blocks (a longer one would hold
        the next block too), so only that short tail is compared, then the head."""
        shared, ids, _ = self._shared(tokens, keys)
        out = []
        for entry_id in ids:
            entry = self._entries[entry_id]
            n = len(entry.tokens)
            if (not entry.kept and n - shared < BLOCK and n <= len(tokens)
                    and entry.tokens[shared:] == tokens[shared:n]
                    and entry.tokens[:shared] == tokens[:shared]):
                out.append(entry_id)
        return out

    def _make_room(self, nbytes: int) -> bool:
        """Evict unlocked entries, least recently used first, until ``nbytes`` fit (none
        when even evicting all of them would not make room)."""
        locked = sum(e.nbytes for e in self._entries.values() if e.kept)
        if locked + nbytes > self.budget_bytes:
            return False
        for entry_id in list(self._entries):
            if self.bytes + nbytes <= self.budget_bytes:
                break
            if not self._entries[entry_id].kept:
                self._remove(entry_id)
                self.evictions += 1
        return self.bytes + nbytes <= self.budget_bytes

    def _remove(self, entry_id: int) -> None:
        entry = self._entries.pop(entry_id)
        for key in entry.keys:
            ids = self._index.get(key)
            if ids is not None:
                ids.discard(entry_id)
                if not ids:
                    del self._index[key]
        self.bytes -= entry.nbytes
        self._changes += 1

    def clear(self) -> int:
        """Drop every entry not in use or pinned; returns how many were dropped."""
        doomed = [i for i, e in self._entries.items() if not e.kept]
        for entry_id in doomed:
            self._remove(entry_id)
        # fresh tables: a dict keeps its grown size after deletes
        self._entries, self._index = OrderedDict(self._entries), dict(self._index)
        return len(doomed)

    # ---- reporting ----------------------------------------------------------------
    def stats(self) -> PrefixCacheStats:
        """The counters (read after every engine step: the per-entry counts are only
        recounted after a change, so a store of many entries costs nothing per step)."""
        if self._stats is None or self._stats[0] != self._changes:
            self._stats = (self._changes, self._count())
        return self._stats[1]

    def _count(self) -> PrefixCacheStats:
        return PrefixCacheStats(
            entries=len(self._entries), bytes=self.bytes, budget_bytes=self.budget_bytes,
            hits=self.hits, misses=self.misses, tokens_saved=self.tokens_saved,
            tokens_queried=self.tokens_queried, evictions=self.evictions,
            locked=sum(1 for e in self._entries.values() if e.locks),
            pinned=sum(1 for e in self._entries.values() if e.pinned),
            pinned_bytes=sum(e.nbytes for e in self._entries.values() if e.pinned))
