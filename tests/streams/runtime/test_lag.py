"""Lag as messages and as time, from watermark samples: exact where sampled, interpolated in
between, a lower bound before the first sample, and nothing for a partition no longer here."""

from __future__ import annotations

import pytest

from greenlane.streams.runtime.lag import ArrivalClock, LagMonitor, measure, waiting_by_topic


def test_arrival_is_interpolated_between_watermark_samples() -> None:
    clock = ArrivalClock()
    clock.observe(100.0, 10)
    clock.observe(101.0, 10)  # unchanged: offset 10 was not there yet at 101 s
    clock.observe(111.0, 20)
    assert clock.times == [100.0, 111.0] and clock.until == [101.0, 111.0]
    assert clock.arrived(9) == 100.0  # before the first sample: at least that old
    assert clock.arrived(10) == pytest.approx(102.0)  # the first of ten arriving over 10 s
    assert clock.arrived(19) == pytest.approx(111.0)
    assert clock.arrived(20) is None  # not on the broker yet


def test_a_quiet_spell_does_not_age_what_arrives_after_it() -> None:
    clock = ArrivalClock()
    clock.observe(0.0, 100)
    for t in range(2, 3600, 2):  # an hour without filings
        clock.observe(float(t), 100)
    clock.observe(3602.0, 110)
    assert 3598.0 <= clock.arrived(100) <= 3602.0


def test_a_full_clock_thins_out_but_keeps_its_first_and_last_samples() -> None:
    clock = ArrivalClock(keep=8)
    for i in range(40):
        clock.observe(float(i), i * 10)
    assert len(clock.highs) <= 8
    assert clock.times[0] == 0.0 and clock.highs[-1] == 390
    assert clock.highs == sorted(clock.highs)
    assert clock.arrived(385) == pytest.approx(39.0, abs=5)


def test_a_truncated_partition_starts_its_clock_again() -> None:
    clock = ArrivalClock()
    clock.observe(1.0, 500)
    clock.observe(2.0, 3)  # recreated
    assert clock.highs == [3] and clock.arrived(0) == 2.0


def test_lag_counts_messages_from_the_commit_and_age_from_the_next_to_answer() -> None:
    clocks: dict = {}
    tp = ("filings", 0)
    measure(100.0, {tp: 100}, {tp: 90}, {tp: 95}, clocks)
    measure(110.0, {tp: 200}, {tp: 90}, {tp: 95}, clocks)
    [lag] = measure(130.0, {tp: 200}, {tp: 90}, {tp: 150}, clocks)
    assert (lag.messages, lag.waiting) == (110, 50)
    # offset 150 arrived between 100 s (watermark 100) and 110 s (watermark 200): at 105.1 s
    assert lag.seconds(130.0) == pytest.approx(130.0 - 105.1)
    assert lag.seconds(140.0) == pytest.approx(140.0 - 105.1)  # still undecided: older


def test_nothing_waiting_is_no_age_and_a_gone_partition_is_forgotten() -> None:
    clocks: dict = {}
    a, b = ("filings", 0), ("filings", 1)
    lags = measure(10.0, {a: 40, b: 7}, {a: 40, b: None}, {b: 3}, clocks)
    assert [(x.messages, x.waiting, x.seconds(10.0)) for x in lags] == [(0, 0, 0.0), (4, 4, 0.0)]
    assert waiting_by_topic(lags, ["filings", "outcomes"]) == {"filings": 4, "outcomes": 0}
    measure(12.0, {a: 41}, {a: 40}, {}, clocks)
    assert set(clocks) == {a}


def test_a_partition_never_committed_nor_answered_reports_nothing_yet() -> None:
    [lag] = measure(10.0, {("filings", 3): 500}, {("filings", 3): None}, {}, {})
    assert (lag.messages, lag.waiting, lag.seconds(99.0)) == (0, 0, 0.0)


class Broker:
    """What Watermarks.read answers (the broker's watermarks and the group's offsets)."""

    def __init__(self) -> None:
        self.highs: dict = {}
        self.committed: dict = {}
        self.away = False

    async def read(self, partitions):
        if self.away:
            raise OSError("broker away")
        return {tp: self.highs[tp] for tp in partitions}, {
            tp: self.committed.get(tp) for tp in partitions
        }


def test_the_monitor_exports_by_partition_ages_while_the_broker_is_away_and_drops_revoked():
    import asyncio

    from greenlane.streams.runtime import metrics

    broker, now = Broker(), [100.0]
    monitor = LagMonitor(broker, clock=lambda: now[0])
    a, b = ("mon-filings", 0), ("mon-filings", 1)
    broker.highs, broker.committed = {a: 10, b: 5}, {a: 10, b: 5}
    asyncio.run(monitor.sample({a, b}, {}))
    now[0], broker.highs = 104.0, {a: 30, b: 5}
    asyncio.run(monitor.sample({a, b}, {a: 10}))
    assert monitor.waiting(["mon-filings"]) == {"mon-filings": 20}

    def age() -> float:  # as a scrape reads it
        [family] = metrics.CONSUMER_LAG_SECONDS.collect()
        return next(
            x.value for x in family.samples if x.labels == {"topic": a[0], "partition": "0"}
        )

    now[0] = 110.0
    assert age() == pytest.approx(110.0 - (100.0 + 4.0 / 20))  # read when scraped
    broker.away = True
    now[0] = 120.0
    asyncio.run(monitor.sample({a, b}, {}))  # the last watermarks and offsets stand
    assert age() == pytest.approx(120.0 - 100.2)  # and the age grows
    assert monitor.waiting(["mon-filings"]) == {"mon-filings": 20}
    broker.away = False
    asyncio.run(monitor.sample({a}, {a: 10}))  # b revoked
    names = {
        s.labels["partition"]
        for s in metrics.CONSUMER_LAG.collect()[0].samples
        if s.labels["topic"] == "mon-filings"
    }
    assert names == {"0"}
