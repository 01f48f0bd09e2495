"""One JSON line per engine step, for profiling a live server (``MLXSERVE_STEP_TRACE=FILE``).

Each line: ``t`` (s since the engine started), ``ms`` (since the previous step ended: the
step's period as traffic sees it, idle gaps included, so the first step after an idle
spell is long), what the step held (``decode`` rows, ``verify`` extra tokens, ``prefill``
chunks and their ``tokens``), the queue after it (``running``, ``waiting``), and where
the step's own time went (``phases``, ms: ``idle`` the gap since the last step,
``plan`` scheduling and admission, ``launch``
building the graphs and starting them, ``collect`` waiting for and reading back results,
``deliver`` handing tokens out; a pipelined step's ``collect`` waits on the step before).
``benchmarks/step_trace.py FILE`` sums a trace up: where a run's time went by step kind.
Lines are buffered and written every ``_FLUSH_EVERY`` steps and whenever the engine has
no work left, so a trace read after a load ends is complete.
"""

from __future__ import annotations

import json
import os
import time

_FLUSH_EVERY = 64


class NoTrace:
    """What the engine holds when no trace is asked for: every call does nothing."""

    def mark(self, phase: str) -> None:
        pass

    def record(self, plan, running: int, waiting: int) -> None:
        pass


class StepTrace(NoTrace):
    def __init__(self, path: str):
        self._file = open(path, "a", encoding="utf-8")
        self._started = self._last = self._mark = time.perf_counter()
        self._lines: list[str] = []
        self._phases: dict[str, float] = {}

    @classmethod
    def from_env(cls) -> NoTrace:
        path = os.environ.get("MLXSERVE_STEP_TRACE")
        return cls(path) if path else NoTrace()

    def mark(self, phase: str) -> None:
        """The time since the last mark (or the step's start) went to ``phase``."""
        now = time.perf_counter()
        self._phases[phase] = round((now - self._mark) * 1000, 2)
        self._mark = now

    def record(self, plan, running: int, waiting: int) -> None:
        self.mark("deliver")
        now = time.perf_counter()
        line = dict(t=round(now - self._started, 4), ms=round((now - self._last) * 1000, 2),
                    decode=len(plan.decodes),
                    verify=sum(plan.decode_tokens.values()) - len(plan.decode_tokens),
                    prefill=len(plan.prefills), tokens=sum(c.length for c in plan.prefills),
                    running=running, waiting=waiting, phases=self._phases)
        self._last, self._phases = now, {}
        self._lines.append(json.dumps(line, separators=(",", ":")))
        if len(self._lines) >= _FLUSH_EVERY or not (running or waiting):
            self.flush()

    def flush(self) -> None:
        if self._lines:
            self._file.write("\n".join(self._lines) + "\n")
            self._file.flush()
            self._lines.clear()
