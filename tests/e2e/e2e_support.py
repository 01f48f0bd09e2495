"""Constants shared by the e2e tests and their fixtures (see tests/engine/engine_support.py
for why these do not live in conftest.py)."""

TINY_NAME = "tiny-chat"
TINY_CONTEXT = 512
GUARD_KEY = "test-key-123"
GUARD_MAX_BYTES = 4096
