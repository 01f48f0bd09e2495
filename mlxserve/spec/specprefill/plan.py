"""Whether a request's prefill is sparse, and at which keep fraction. Pure Python.

Per request, ``specprefill`` true forces it (on any prompt long enough to drop something),
false turns it off; left out, the server's ``--specprefill`` decides for uncached
suffixes of at least ``--specprefill-threshold`` tokens. ``specprefill_keep_pct`` overrides
``--specprefill-keep-pct``. Only what a prefix-cache hit leaves uncached is scored.
"""

from __future__ import annotations

from mlxserve.config import SpecPrefillConfig


def keep_fraction(config: SpecPrefillConfig, asked: bool | None, asked_keep: float | None,
                  uncached: int) -> float | None:
    """The keep fraction of a sparse prefill of ``uncached`` tokens; None: prefill densely."""
    if asked is False:
        return None
    wanted = asked is True or (config.enabled and uncached >= config.threshold)
    if not wanted or uncached <= config.sink_tokens + config.tail_tokens:
        return None  # nothing between the always-kept sinks and tail to drop
    return config.keep_pct if asked_keep is None else asked_keep
