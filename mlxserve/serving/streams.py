"""Helpers over MessageDelta streams: start them (so errors surface before any byte is
sent), merge n choices into one indexed stream, collect them all."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TypeVar

from mlxserve.serving.assembler import CompletedMessage, MessageDelta, collect

T = TypeVar("T")
_END = object()


async def _close_all(streams: list[AsyncIterator]) -> None:
    for stream in streams:
        close = getattr(stream, "aclose", None)
        if close is not None:
            await close()


async def _resume(first: T, stream: AsyncIterator[T]) -> AsyncIterator[T]:
    try:
        yield first
        async for item in stream:
            yield item
    finally:
        await stream.aclose()


async def start_streams(streams: list[AsyncIterator[T]]) -> list[AsyncIterator[T]]:
    """Wait for each stream's first item; a stream that fails closes all the others."""
    started: list[AsyncIterator[T]] = []
    try:
        for stream in streams:
            first = await stream.__anext__()
            started.append(_resume(first, stream))
    except BaseException:
        await _close_all(streams)
        raise
    return started


async def merge_indexed(streams: list[AsyncIterator[MessageDelta]]
                        ) -> AsyncIterator[tuple[int, MessageDelta]]:
    """Items of all streams as (stream index, item), in arrival order."""
    if len(streams) == 1:
        try:
            async for item in streams[0]:
                yield 0, item
        finally:
            await _close_all(streams)
        return
    queue: asyncio.Queue = asyncio.Queue()

    async def pump(index: int, stream: AsyncIterator[MessageDelta]) -> None:
        try:
            async for item in stream:
                await queue.put((index, item))
            await queue.put((index, _END))
        except BaseException as e:  # noqa: BLE001 - handed to the consumer
            await queue.put((index, e))

    tasks = [asyncio.create_task(pump(i, s)) for i, s in enumerate(streams)]
    remaining = len(streams)
    try:
        while remaining:
            index, item = await queue.get()
            if item is _END:
                remaining -= 1
            elif isinstance(item, BaseException):
                raise item
            else:
                yield index, item
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await _close_all(streams)


async def collect_all(streams: list[AsyncIterator[MessageDelta]]) -> list[CompletedMessage]:
    """Each stream collected, concurrently; any failure cancels the rest."""
    tasks = [asyncio.create_task(collect(s)) for s in streams]
    try:
        return list(await asyncio.gather(*tasks))
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
