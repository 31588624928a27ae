"""Each batch's delivery is its own: confirmation after the last report, errors kept apart."""

from __future__ import annotations

import asyncio
import threading

import pytest

from greenlane.streams.runtime.publisher import Delivery, DeliveryFailed


class Report:
    """What confluent-kafka hands a delivery callback (topic, partition, offset)."""

    def __init__(self, topic: str, partition: int, offset: int) -> None:
        self._t, self._p, self._o = topic, partition, offset

    def topic(self) -> str:
        return self._t

    def partition(self) -> int:
        return self._p

    def offset(self) -> int:
        return self._o


class Table:
    def __init__(self) -> None:
        self.confirmed: list[dict[int, int]] = []

    def persisted(self, offsets: dict[int, int]) -> None:
        self.confirmed.append(dict(offsets))


def test_confirmed_after_the_last_report_with_changelog_offsets_per_partition() -> None:
    async def scenario() -> Table:
        loop = asyncio.get_running_loop()
        table = Table()
        d = Delivery(loop)
        d._tables["links-changelog"] = table
        for _ in range(3):
            d._sent()
        future = d.seal()
        reports = [("links-changelog", 1, 7), ("links-changelog", 1, 9), ("decisions", 0, 3)]

        def broker() -> None:  # reports arrive on the producer's poll thread
            for topic, p, o in reports:
                d.on_delivery(None, Report(topic, p, o))

        await asyncio.sleep(0)
        assert not future.done()
        thread = threading.Thread(target=broker)
        thread.start()
        await asyncio.wait_for(future, 5)
        thread.join()
        return table

    table = asyncio.run(scenario())
    assert table.confirmed == [{1: 9}]


def test_an_error_fails_its_own_batch_only_and_persists_nothing() -> None:
    async def scenario() -> tuple[Delivery, Delivery, Table]:
        loop = asyncio.get_running_loop()
        table = Table()
        bad, good = Delivery(loop), Delivery(loop)
        for d in (bad, good):
            d._tables["links-changelog"] = table
            d._sent()
            d._sent()
        bad.on_delivery(None, Report("links-changelog", 0, 1))
        bad.on_delivery("Broker: Message size too large", Report("decisions", 2, -1))
        good.on_delivery(None, Report("links-changelog", 0, 2))
        good.on_delivery(None, Report("decisions", 2, 5))
        bad.seal(), good.seal()
        await asyncio.sleep(0)
        return bad, good, table

    bad, good, table = asyncio.run(scenario())
    with pytest.raises(DeliveryFailed, match=r"1 of 2 outputs undelivered.*decisions\[2\]"):
        bad.confirmed.result()
    assert good.confirmed.result() is None
    assert table.confirmed == [{0: 2}]  # only the good batch's changelog counts as persisted


def test_an_empty_batch_is_confirmed_at_once() -> None:
    async def scenario() -> bool:
        return Delivery(asyncio.get_running_loop()).seal().done()

    assert asyncio.run(scenario())
