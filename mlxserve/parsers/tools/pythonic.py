"""Pythonic calls (Llama 3.2 / 4, some fine-tunes): ``[get_weather(city="Paris"), f(x=1)]``,
optionally inside ``<|python_start|>...<|python_end|>``. Read with ``ast``; values must be
literals (never evaluated)."""

from __future__ import annotations

import ast
import json

from .markup_base import BlockOutcome, MarkupToolParser, ParsedCall

MAX_BLOCK_CHARS = 1_000_000


def _dotted_name(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted_name(node.value)
        return f"{base}.{node.attr}" if base else None
    return None


def parse_pythonic_calls(text: str) -> list[ParsedCall] | None:
    """Calls from ``[f(a=1), g()]``; None when the text is anything else."""
    if len(text) > MAX_BLOCK_CHARS:
        return None
    try:
        tree = ast.parse(text.strip(), mode="eval")
        if not isinstance(tree.body, ast.List) or not tree.body.elts:
            return None
        calls = []
        for node in tree.body.elts:
            name = _dotted_name(node.func) if isinstance(node, ast.Call) else None
            if name is None or node.args:  # type: ignore[union-attr]
                return None
            arguments = {kw.arg: ast.literal_eval(kw.value) for kw in node.keywords if kw.arg}  # type: ignore[union-attr]
            calls.append(ParsedCall(name, json.dumps(arguments, ensure_ascii=False)))
        return calls
    except (SyntaxError, ValueError, TypeError, RecursionError, MemoryError):
        return None


class PythonicToolParser(MarkupToolParser):
    silent_markers = ("<|python_start|>", "<|python_end|>")
    openers = "["

    def _scan_block(self, marker: str, final: bool) -> BlockOutcome | None:
        name_at = self._skip_space_from(1)
        if name_at == len(self._buffer):
            return self._fallback(marker) if final else None
        first = self._buffer[name_at]
        if not (first.isalpha() or first == "_"):
            return self._fallback(marker)
        end = self._value_end(0, "[", quotes="\"'")
        if end is None:
            return self._fallback(marker) if final else None
        calls = parse_pythonic_calls(self._buffer[:end]) if end != -1 else None
        return BlockOutcome(end, calls) if calls else self._fallback(marker)
