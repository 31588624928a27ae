"""Consumer lag measured by the worker itself, per topic partition: how many filings wait, and
how long the oldest undecided one has waited.

- Messages: the high watermark against the group's committed offset, both read from the
  broker (what kafka-exporter and a restarted worker see). Never the Faust consumer's cached
  watermark: it freezes while the stream framework holds fetching back, which is exactly when
  a backlog builds.
- Time: the oldest undecided filing is the one at the next offset to answer (after the last
  one answered on this worker, else the committed offset). It reached the broker after the
  last watermark sample at or below its offset and before the first above it, so its age is
  read off the samples (interpolated, off by at most one sampling interval), as
  kafka-lag-exporter does: nothing is fetched for it. A filing older than the worker's first
  sample is taken to be that old (a lower bound).

``ArrivalClock`` and ``measure`` are pure; ``Watermarks`` is the broker reader and
``LagMonitor`` the worker's part: it measures every few seconds and keeps the gauges.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from bisect import bisect_right
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial

from confluent_kafka import Consumer, TopicPartition

from greenlane.streams.runtime import metrics

log = logging.getLogger("greenlane.worker")

Partition = tuple[str, int]  # (topic, partition)

SAMPLES_KEPT = 720  # per partition; thinned to every other one when full


class ArrivalClock:
    """When a partition's messages reached the broker, from its watermark sampled over time.

    One sample per watermark: when it was first seen (``times``) and last seen unchanged
    (``until``). A message at an offset between two watermarks arrived after the earlier one
    was last seen and before the later one was first seen; it is placed in between by its
    offset, so an estimate is off by at most the time between two samples.
    """

    def __init__(self, keep: int = SAMPLES_KEPT) -> None:
        self.keep = keep
        self.times: list[float] = []
        self.until: list[float] = []
        self.highs: list[int] = []

    def observe(self, now: float, high: int) -> None:
        """A high watermark read at ``now``."""
        if self.highs and high < self.highs[-1]:  # the partition was truncated or recreated
            self.times.clear()
            self.until.clear()
            self.highs.clear()
        if self.highs and high == self.highs[-1]:
            self.until[-1] = now
            return
        self.times.append(now)
        self.until.append(now)
        self.highs.append(high)
        if len(self.highs) > self.keep:  # halve the resolution, keep the first and last
            last = (self.times[-1], self.until[-1], self.highs[-1])
            self.times, self.until = self.times[::2], self.until[::2]
            self.highs = self.highs[::2]
            if self.highs[-1] != last[2]:
                self.times.append(last[0])
                self.until.append(last[1])
                self.highs.append(last[2])

    def arrived(self, offset: int) -> float | None:
        """By when the message at ``offset`` had reached the broker; None: not yet seen."""
        i = bisect_right(self.highs, offset)  # the first sample whose watermark is past it
        if i == len(self.highs):
            return None
        if i == 0:
            return self.times[0]  # before the first sample: at least this old
        t0, h0, t1, h1 = self.until[i - 1], self.highs[i - 1], self.times[i], self.highs[i]
        return t0 + (t1 - t0) * (offset - h0 + 1) / (h1 - h0)


@dataclass(frozen=True, slots=True)
class PartitionLag:
    topic: str
    partition: int
    messages: int  # high watermark - committed offset
    waiting: int  # high watermark - next offset to answer (what /live judges)
    arrived: float | None  # when the oldest undecided filing reached the broker; None: none

    def seconds(self, now: float) -> float:
        """The oldest undecided filing's age at ``now``: read when scraped, so it keeps growing
        while the event loop that measures is blocked."""
        return max(0.0, now - self.arrived) if self.arrived is not None else 0.0


def measure(
    now: float,
    highs: Mapping[Partition, int],
    committed: Mapping[Partition, int | None],
    answered_next: Mapping[Partition, int],
    clocks: dict[Partition, ArrivalClock],
) -> list[PartitionLag]:
    """Lag of every partition in ``highs``; ``clocks`` gets each watermark and loses the
    partitions no longer measured. A partition the group never committed on counts from the
    next offset answered here, else from nothing (0 waiting, which the next sample mends)."""
    for gone in set(clocks) - set(highs):
        del clocks[gone]
    lags = []
    for tp, high in highs.items():
        clock = clocks.get(tp)
        if clock is None:
            clock = clocks[tp] = ArrivalClock()
        clock.observe(now, high)
        base = committed.get(tp)
        nxt = max(answered_next.get(tp, -1), base if base is not None else -1)
        if nxt < 0:
            lags.append(PartitionLag(tp[0], tp[1], 0, 0, None))
            continue
        messages = max(0, high - base) if base is not None else max(0, high - nxt)
        waiting = max(0, high - nxt)
        arrived = clock.arrived(nxt) if waiting else None
        lags.append(PartitionLag(tp[0], tp[1], messages, waiting, arrived))
    return lags


def waiting_by_topic(lags: Iterable[PartitionLag], topics: Iterable[str]) -> dict[str, int]:
    """Messages waiting to be answered per topic (0 for a topic with none measured)."""
    waiting = dict.fromkeys(topics, 0)
    for lag in lags:
        if lag.topic in waiting:
            waiting[lag.topic] += lag.waiting
    return waiting


class Watermarks:
    """Reads high watermarks and the group's committed offsets from the broker, on a thread of
    its own (the client's calls block), with a Kafka consumer that never joins the group.

    Not an admin client: librdkafka crashes the process when an admin client's
    ListConsumerGroupOffsets meets NOT_COORDINATOR, which a broker restart gives (a segfault in
    rd_kafka_handle_OffsetFetch, which expects a consumer group handle: seen in test_outage).
    """

    def __init__(self, connect: Callable[[], Consumer], timeout_seconds: float) -> None:
        self.connect = connect  # called at the first read: no connection before it is needed
        self.consumer: Consumer | None = None
        self.timeout = timeout_seconds
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="greenlane-lag")
        self._reading: asyncio.Future | None = None

    async def read(
        self, partitions: Iterable[Partition]
    ) -> tuple[dict[Partition, int], dict[Partition, int | None]]:
        """(high watermarks, committed offsets: None where the group has none). Raises
        TimeoutError while an earlier read still waits on the broker (none piles up)."""
        tps = sorted(partitions)
        if not tps:
            return {}, {}
        if self._reading is not None and not self._reading.done():
            raise TimeoutError("the last lag read still waits for the broker")
        self._reading = asyncio.get_running_loop().run_in_executor(self._thread, self._read, tps)
        return await asyncio.wait_for(asyncio.shield(self._reading), self.timeout + 1)

    def _read(
        self, tps: list[Partition]
    ) -> tuple[dict[Partition, int], dict[Partition, int | None]]:
        """On the lag thread: every call within one ``timeout`` in all."""
        deadline = time.monotonic() + self.timeout

        def left() -> float:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"lag not read within {self.timeout:g} s")
            return remaining

        if self.consumer is None:
            self.consumer = self.connect()
        asked = [TopicPartition(t, p) for t, p in tps]
        committed: dict[Partition, int | None] = {
            (tp.topic, tp.partition): tp.offset if tp.offset >= 0 else None
            for tp in self.consumer.committed(asked, timeout=left())
        }
        highs = {
            (tp.topic, tp.partition): self.consumer.get_watermark_offsets(
                tp, timeout=left(), cached=False
            )[1]
            for tp in asked
        }
        return highs, committed


class LagMonitor:
    """The lag of the partitions this worker owns: measured from the event loop, exported as
    greenlane_consumer_lag and greenlane_consumer_lag_seconds (by topic and partition). The age
    is worked out when scraped, on the metrics thread, so it keeps growing while the loop that
    measures is blocked."""

    def __init__(self, watermarks: Watermarks, clock: Callable[[], float] = time.monotonic):
        self.watermarks = watermarks
        self.clock = clock
        self.clocks: dict[Partition, ArrivalClock] = {}
        self.lags: dict[Partition, PartitionLag] = {}  # the last measure
        self.committed: dict[Partition, int | None] = {}  # the last read of the group's offsets

    async def sample(self, mine: set[Partition], answered: Mapping[Partition, int]) -> None:
        """Measure ``mine`` (the agent partitions assigned here); ``answered``: the next offset
        to answer where known. With the broker away the last watermarks stand and ages grow."""
        try:
            highs, committed = await self.watermarks.read(mine)
            self.committed = dict(committed)
        except Exception as exc:
            log.debug("lag not read: %s", exc)
            highs = {tp: c.highs[-1] for tp, c in self.clocks.items() if tp in mine and c.highs}
            committed = {tp: o for tp, o in self.committed.items() if tp in highs}
        measured = measure(self.clock(), highs, committed, answered, self.clocks)
        for lag in measured:
            key = (lag.topic, lag.partition)
            labels = (lag.topic, str(lag.partition))
            metrics.CONSUMER_LAG.labels(*labels).set(lag.messages)
            if key not in self.lags:
                metrics.CONSUMER_LAG_SECONDS.labels(*labels).set_function(partial(self.age, key))
            self.lags[key] = lag
        for key in set(self.lags) - set(highs):  # revoked: its series go
            del self.lags[key]
            for gauge in (metrics.CONSUMER_LAG, metrics.CONSUMER_LAG_SECONDS):
                with contextlib.suppress(KeyError):
                    gauge.remove(key[0], str(key[1]))

    def age(self, key: Partition) -> float:
        """The oldest undecided filing's age now (any thread)."""
        lag = self.lags.get(key)
        return lag.seconds(self.clock()) if lag is not None else 0.0

    def waiting(self, topics: Iterable[str]) -> dict[str, int]:
        """Messages waiting to be answered per topic, by the last measure."""
        return waiting_by_topic(list(self.lags.values()), topics)
