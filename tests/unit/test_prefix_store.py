"""The prefix store's bookkeeping (cache/prefix_cache.py, no MLX): longest prefix, locks,
LRU eviction under the byte budget, chat turns replacing their predecessor."""

from __future__ import annotations

from mlxserve.cache.prefix_cache import BLOCK, PrefixCache


def _seq(start: int, n: int) -> list[int]:
    return list(range(start, start + n))


def test_lookup_finds_the_longest_shared_prefix_token_exact():
    store = PrefixCache(10_000)
    a = _seq(0, 3 * BLOCK + 5)
    b = a[:BLOCK + 2] + _seq(500, 40)
    store.insert(a, "A", 100)
    store.insert(b, "B", 100)
    query = a[:2 * BLOCK + 3] + [999]
    match = store.lookup(query, len(query) - 1)
    assert (match.entry.payload, match.length) == ("A", 2 * BLOCK + 3)
    match = store.lookup(b[:BLOCK + 7] + [999], 100)
    assert (match.entry.payload, match.length) == ("B", BLOCK + 7)
    short = store.lookup([0, 1, 2, 77], 3)  # shorter than one block
    assert (short.entry.payload, short.length) == ("A", 3)
    assert store.lookup([42, 1, 2], 2) is None
    stats = store.stats()
    assert (stats.hits, stats.misses) == (3, 1)
    assert stats.tokens_saved == 2 * BLOCK + 3 + BLOCK + 7 + 3


def test_limit_caps_a_fully_cached_prompt():
    store = PrefixCache(10_000)
    prompt = _seq(0, 40)
    store.insert(prompt, "P", 10)
    assert store.lookup(prompt, len(prompt) - 1).length == 39


def test_locked_entries_survive_eviction_and_bytes_stay_in_budget():
    store = PrefixCache(250)
    store.insert(_seq(0, 20), "old", 100)
    held = store.lookup(_seq(0, 20) + [7], 20)  # in use: locked
    store.insert(_seq(100, 20), "mid", 100)
    assert store.insert(_seq(200, 20), "new", 100)  # evicts "mid", not the locked "old"
    assert store.bytes <= 250 and store.stats().evictions == 1
    assert store.lookup(_seq(0, 20) + [7], 20).entry.payload == "old"
    assert store.lookup(_seq(100, 5), 5) is None
    store.insert(_seq(300, 20), "x", 100)  # "new" goes; "old" stays locked
    assert not store.insert(_seq(400, 20), "too much", 200)  # only locked bytes left to free
    assert store.bytes <= 250
    store.release(held)
    store.release(held)
    assert store.clear() == 2 and store.stats().entries == 0


def test_a_next_turn_replaces_its_prefix_and_a_covered_sequence_is_not_stored():
    store = PrefixCache(10_000)
    turn1 = _seq(0, 30)
    turn2 = turn1 + _seq(900, 30)
    store.insert(turn1, "t1", 60)
    assert store.insert(turn2, "t2", 120)
    assert store.stats().entries == 1 and store.bytes == 120
    assert not store.insert(turn1[:20], "again", 40)  # already covered by t2
    assert store.lookup(turn1 + [5], 30).entry.payload == "t2"


def test_an_entry_larger_than_the_budget_is_refused():
    store = PrefixCache(50)
    assert not store.insert(_seq(0, 10), "big", 51)
    assert store.stats().entries == 0


def test_cli_flags_reach_the_engine_config():
    import argparse

    import pytest

    from mlxserve.cli.args import CliError, add_serve_args, model_and_engine_configs

    parser = argparse.ArgumentParser()
    add_serve_args(parser)
    _, on = model_and_engine_configs(parser.parse_args(["--prefix-cache-memory-gb", "0.5"]))
    assert on.enable_prefix_caching and on.prefix_cache_memory_bytes == 1 << 29
    _, off = model_and_engine_configs(parser.parse_args(["--no-enable-prefix-caching"]))
    assert not off.enable_prefix_caching and off.prefix_cache_memory_bytes is None
    with pytest.raises(CliError):
        model_and_engine_configs(parser.parse_args(["--prefix-cache-memory-gb", "-1"]))


def test_pinned_entries_survive_eviction_clear_and_extension_within_the_budget():
    store = PrefixCache(300)
    system = _seq(0, 2 * BLOCK)
    assert store.insert(system, "SYS", 100, pin=True)
    for k in range(6):  # unpinned traffic that needs evictions
        assert store.insert(_seq(1000 * (k + 1), BLOCK), f"T{k}", 100)
    assert store.lookup(system + [7], len(system)).entry.payload == "SYS"
    store.release(store.lookup(system + [7], len(system)))
    turn = system + _seq(900, BLOCK)  # extends the pinned entry: both stay
    assert store.insert(turn, "TURN", 100)
    assert store.clear() >= 1
    stats = store.stats()
    assert (stats.entries, stats.pinned, stats.pinned_bytes) == (1, 1, 100)
    assert store.lookup(system + [7], len(system)).entry.payload == "SYS"
    assert not store.insert(_seq(5000, BLOCK), "BIG", 201, pin=True)  # past the budget
    assert store.insert(_seq(5000, BLOCK), "FITS", 200, pin=True)
    assert not store.insert(_seq(6000, BLOCK), "NO ROOM", 10)  # everything is pinned
    assert store.bytes <= store.budget_bytes
    assert store.insert(system, "AGAIN", 100, pin=True)  # pins what is there: no copy
    assert store.stats().entries == 2


def test_exact_mode_hits_whole_entries_only():
    """Snapshots that cannot be cut (SSM state): a hit covers a whole entry or nothing."""
    store = PrefixCache(10_000, exact=True)
    turn = _seq(0, 2 * BLOCK + 3)
    store.insert(turn, "TURN", 10)
    assert store.lookup(turn[:BLOCK + 4] + [999], 100) is None  # mid-entry: no hit
    assert store.lookup(turn, len(turn) - 1) is None  # would need the entry cut
    match = store.lookup(turn + [5, 6], 100)
    assert (match.entry.payload, match.length) == ("TURN", len(turn))
    assert store.insert(turn[:BLOCK], "PROMPT", 10)  # a shorter snapshot is its own entry
    assert store.lookup(turn[:BLOCK] + [999], 100).entry.payload == "PROMPT"
    assert not store.insert(turn, "AGAIN", 10)  # the same tokens: kept once


def test_colliding_block_keys_never_give_a_wrong_hit(monkeypatch):
    """Every block hashes alike (a worst-case collision): the index then offers entries
    that share no tokens, and the token compares still give only true prefixes."""
    import mlxserve.cache.prefix_cache as store_module

    def colliding(tokens):
        for i in range(len(tokens) // BLOCK):
            yield i  # depends on the block's position only

    monkeypatch.setattr(store_module, "iter_block_keys", colliding)
    store = PrefixCache(10_000)
    a, b = _seq(0, 3 * BLOCK), _seq(700, 3 * BLOCK)
    store.insert(a, "A", 10)
    assert store.insert(b, "B", 10)  # not "covered" by A, though its keys collide
    match = store.lookup(b[:2 * BLOCK + 4] + [999], 100)
    assert (match.entry.payload, match.length) == ("B", 2 * BLOCK + 4)
    assert store.lookup(_seq(300, 2 * BLOCK), 100) is None
    assert store.insert(a + [5], "A2", 10)  # replaces A (a true prefix), never B
    assert sorted(e.payload for e in store._entries.values()) == ["A2", "B"]


def test_many_entries_under_one_long_prefix_find_their_own_tail():
    """Hundreds of requests after one system prompt: each lookup finds the entry with its
    own question, and a next turn replaces only its own entry."""
    store = PrefixCache(10**9)
    system = _seq(0, 40 * BLOCK + 3)
    for q in range(300):
        store.insert(system + [10_000 + q, q, q + 1], f"q{q}", 10)
    for q in (0, 151, 299):
        match = store.lookup(system + [10_000 + q, q, 77], 10**6)
        assert (match.entry.payload, match.length) == (f"q{q}", len(system) + 2)
    store.insert(system + [10_000 + 7, 7, 8, 42], "q7 next turn", 10)
    payloads = {e.payload for e in store._entries.values()}
    assert "q7" not in payloads and {"q7 next turn", "q6", "q8"} <= payloads
    assert len(payloads) == 300


def test_stats_read_after_every_change_are_current():
    """stats() is read after every engine step and recounts only after a change: each
    kind of change shows in the next read."""
    store = PrefixCache(budget_bytes=10_000)
    assert store.stats().entries == 0
    assert store.lookup(_seq(0, 2 * BLOCK), limit=10_000) is None
    assert (store.stats().misses, store.stats().tokens_queried) == (1, 2 * BLOCK)
    store.insert(_seq(0, 2 * BLOCK), "kv", nbytes=100)
    assert (store.stats().entries, store.stats().bytes) == (1, 100)
    match = store.lookup(_seq(0, 2 * BLOCK) + [7], limit=10_000)
    assert (store.stats().hits, store.stats().locked) == (1, 1)
    store.release(match)
    assert store.stats().locked == 0
    store.insert(_seq(0, 2 * BLOCK), "kv", nbytes=100, pin=True)
    assert (store.stats().pinned, store.stats().pinned_bytes) == (1, 100)
    store.insert(_seq(500, 2 * BLOCK), "kv2", nbytes=100)
    assert store.clear() == 1
    assert (store.stats().entries, store.stats().bytes) == (1, 100)
