"""Stream helpers: start (errors before any output), merge n choices, close on early exit."""

from __future__ import annotations

import asyncio

import pytest

from mlxserve.errors import InvalidRequest
from mlxserve.serving.streams import collect_all, merge_indexed, start_streams
from mlxserve.serving.assembler import MessageDelta


def make_stream(name: str, count: int, closed: list[str], fail_first: bool = False):
    async def stream():
        try:
            if fail_first:
                raise InvalidRequest("bad", param="x")
            for i in range(count):
                await asyncio.sleep(0)
                yield MessageDelta(content=f"{name}{i}",
                                   finish_reason="stop" if i == count - 1 else None)
        finally:
            closed.append(name)
    return stream()


def test_merge_keeps_each_choice_in_order():
    async def run():
        closed: list[str] = []
        started = await start_streams([make_stream("a", 3, closed), make_stream("b", 2, closed)])
        items = [(i, d.content) async for i, d in merge_indexed(started)]
        return items, closed
    items, closed = asyncio.run(run())
    assert [c for i, c in items if i == 0] == ["a0", "a1", "a2"]
    assert [c for i, c in items if i == 1] == ["b0", "b1"]
    assert sorted(closed) == ["a", "b"]


def test_a_failing_start_closes_the_other_streams():
    async def run():
        closed: list[str] = []
        with pytest.raises(InvalidRequest):
            await start_streams([make_stream("a", 5, closed),
                                 make_stream("b", 5, closed, fail_first=True)])
        return closed
    assert sorted(asyncio.run(run())) == ["a", "b"]


def test_leaving_a_merged_stream_early_closes_every_choice():
    async def run():
        closed: list[str] = []
        started = await start_streams([make_stream("a", 50, closed), make_stream("b", 50, closed)])
        merged = merge_indexed(started)
        async for _ in merged:
            break
        await merged.aclose()
        return closed
    assert sorted(asyncio.run(run())) == ["a", "b"]


def test_collect_all_gives_one_message_per_choice():
    async def run():
        closed: list[str] = []
        return await collect_all([make_stream("a", 2, closed), make_stream("b", 3, closed)])
    first, second = asyncio.run(run())
    assert (first.content, second.content) == ("a0a1", "b0b1b2")
    assert first.finish_reason == second.finish_reason == "stop"
