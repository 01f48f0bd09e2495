"""Constants shared by the e2e tests and their fixtures (see tests/engine/engine_support.py
for why these do not live in conftest.py)."""

TINY_NAME = "tiny-chat"
TINY_CONTEXT = 512
GUARD_KEY = "test-key-123"
GUARD_MAX_BYTES = 4096
# tiny_server starts with this system prompt in --warm-prompts (pinned in the prefix cache)
WARM_SYSTEM = ("You are the warm-prompt checker. Answer in one short line, never in lists, "
               "and always name the colour of the sky first.")


def same_usage_but_cache(streamed, whole) -> bool:
    """Usage of a streamed request sent after the same non-streamed one: equal counts; its
    cached prompt tokens (the prefix cache holds the first request's) at least as many."""
    def cached(usage) -> int:
        details = usage.prompt_tokens_details
        return (details.cached_tokens or 0) if details is not None else 0

    def counts(usage) -> tuple:
        return usage.prompt_tokens, usage.completion_tokens, usage.total_tokens

    return counts(streamed) == counts(whole) and cached(streamed) >= cached(whole)
