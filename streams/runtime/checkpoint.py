"""At-least-once, owned in one place: a batch's offsets are acknowledged only after its outputs
and changelog records are confirmed, and in the order the batches were taken.

The agent takes events with ``stream.noack_take`` (Faust acknowledges nothing by itself), hands
each batch's delivery to :meth:`Checkpoint.after` and goes on with the next batch while the
broker confirms the previous one; at most ``in_flight`` batches wait at a time. Faust commits
the highest contiguous acknowledged offset of each partition on its commit interval.

A batch whose delivery fails is never acknowledged, nor is any batch after it: the worker
crashes on purpose, and the restarted worker (or the one that takes over the partitions)
re-reads from the last committed offset. Decisions carry deterministic ids, so what is
replayed is recognisable downstream.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

log = logging.getLogger("greenlane.checkpoint")


class Checkpoint:
    """One agent's chain of in-flight batches."""

    def __init__(
        self,
        ack: Callable[[Any], Awaitable[Any]],
        crash: Callable[[BaseException], Awaitable[None]],
        name: str,
        in_flight: int = 2,
    ) -> None:
        """``ack``: the stream's ``ack`` (one event); ``crash``: stops the worker (app.crash)."""
        if in_flight < 1:
            raise ValueError("in_flight must be >= 1")
        self._ack = ack
        self._crash = crash
        self.name = name
        self.in_flight = in_flight
        self._waiting: deque[asyncio.Task[None]] = deque()
        self.failed: BaseException | None = None
        self.acked = 0

    async def after(
        self,
        events: Sequence[Any],
        confirmed: Awaitable[None],
        then: Callable[[], None] | None = None,
    ) -> None:
        """Acknowledge ``events`` once ``confirmed`` resolves and every earlier batch is
        acknowledged, then call ``then`` (metrics of what is now delivered); returns when
        fewer than ``in_flight`` batches are waiting."""
        if self.failed is not None:
            raise self.failed
        previous = self._waiting[-1] if self._waiting else None
        task = asyncio.ensure_future(self._settle(events, confirmed, previous, then))
        self._waiting.append(task)
        while len(self._waiting) >= self.in_flight + 1 or (
            self._waiting and self._waiting[0].done()
        ):
            await self._waiting.popleft()

    async def _settle(
        self,
        events: Sequence[Any],
        confirmed: Awaitable[None],
        previous: asyncio.Task[None] | None,
        then: Callable[[], None] | None,
    ) -> None:
        try:
            if previous is not None:
                await asyncio.shield(previous)
            await confirmed
        except BaseException as exc:
            if self.failed is None:
                self.failed = exc
                log.error("%s: batch failed, stopping without acknowledging it: %s", self.name, exc)
                await self._crash(exc)
            raise
        for event in events:
            await self._ack(event)
        self.acked += len(events)
        if then is not None:
            then()

    async def drain(self) -> None:
        """Wait for every batch taken so far (tests, shutdown); raises the first failure."""
        while self._waiting:
            await self._waiting.popleft()
