"""Offsets are acknowledged only after delivery, in order, and never for a failed batch."""

from __future__ import annotations

import asyncio

import pytest

from greenlane.streams.runtime.checkpoint import Checkpoint


class Recorder:
    def __init__(self) -> None:
        self.acked: list[int] = []
        self.crashes: list[BaseException] = []

    async def ack(self, event: int) -> None:
        self.acked.append(event)

    async def crash(self, exc: BaseException) -> None:
        self.crashes.append(exc)


def run(coro):
    return asyncio.run(coro)


def test_batches_are_acknowledged_in_order_even_when_confirmed_out_of_order() -> None:
    async def scenario() -> Recorder:
        r = Recorder()
        cp = Checkpoint(r.ack, r.crash, "test", in_flight=3)
        loop = asyncio.get_running_loop()
        first, second = loop.create_future(), loop.create_future()
        metrics: list[str] = []
        await cp.after([1, 2], first, lambda: metrics.append("first"))
        await cp.after([3], second, lambda: metrics.append("second"))
        second.set_result(None)
        await asyncio.sleep(0.01)
        assert r.acked == []  # the later batch waits for the earlier one
        first.set_result(None)
        await cp.drain()
        assert metrics == ["first", "second"]
        return r

    r = run(scenario())
    assert r.acked == [1, 2, 3] and not r.crashes


def test_a_failed_batch_and_everything_after_it_stay_unacknowledged() -> None:
    async def scenario() -> Recorder:
        r = Recorder()
        cp = Checkpoint(r.ack, r.crash, "test", in_flight=3)
        loop = asyncio.get_running_loop()
        ok, bad, later = (loop.create_future() for _ in range(3))
        await cp.after([1], ok)
        await cp.after([2], bad)
        await cp.after([3], later)
        ok.set_result(None)
        later.set_result(None)
        bad.set_exception(RuntimeError("broker said no"))
        with pytest.raises(RuntimeError, match="broker said no"):
            await cp.drain()
        with pytest.raises(RuntimeError, match="broker said no"):
            await cp.after([4], loop.create_future())  # the agent cannot go on
        return r

    r = run(scenario())
    assert r.acked == [1]
    assert [str(e) for e in r.crashes] == ["broker said no"]  # the worker is stopped once


def test_the_agent_waits_when_too_many_batches_are_in_flight() -> None:
    async def scenario() -> None:
        r = Recorder()
        cp = Checkpoint(r.ack, r.crash, "test", in_flight=1)
        loop = asyncio.get_running_loop()
        first, second = loop.create_future(), loop.create_future()
        await cp.after([1], first)  # one in flight: returns at once
        blocked = asyncio.ensure_future(cp.after([2], second))
        await asyncio.sleep(0.01)
        assert not blocked.done()  # two would be in flight: the agent waits
        first.set_result(None)
        await asyncio.sleep(0.01)
        assert blocked.done() and r.acked == [1]
        second.set_result(None)
        await cp.drain()
        assert r.acked == [1, 2]

    run(scenario())
