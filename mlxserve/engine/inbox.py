"""The commands other threads put in the engine's inbox (``EngineCore.submit_*``); the
engine thread applies them between steps (``EngineCore._drain_inbox``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from mlxserve.engine.request import GenerateRequest
from mlxserve.engine.request_state import DeltaSink


@dataclass
class Add:
    request: GenerateRequest
    sink: DeltaSink


@dataclass
class Abort:
    request_id: str


class Shutdown:
    pass


@dataclass
class ClearPrefixCache:
    done: Callable[[int], None]  # called on the engine thread with the entries dropped
