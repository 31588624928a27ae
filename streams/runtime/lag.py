"""Consumer lag measured by the worker itself, per topic partition: how many filings wait, and
how long the oldest undecided one has waited.

- Messages: the high watermark against the group's committed offset, both read from the
  broker (what kafka-exporter and a restarted worker see). Never the Faust consumer's cached
  watermark: it freezes while the stream framework holds fetching back, which is exactly when
  a backlog builds.
- Time: the oldest undecided filing is the one at the next offset to answer (after the last
  one answered on this worker, else the committed offset). It reached the broker between the
  last watermark sample at or below its offset and the first above it, so its age is read off
  the samples (interpolated), as kafka-lag-exporter does: nothing is fetched for it. A filing
  older than the worker's first sample is taken to be that old: a lower bound, so a lag alert
  can fire late, never falsely.

``ArrivalClock`` and ``measure`` are pure; ``Watermarks`` is the broker reader.
"""

from __future__ import annotations

import asyncio
from bisect import bisect_right
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec

Partition = tuple[str, int]  # (topic, partition)

SAMPLES_KEPT = 720  # per partition; thinned to every other one when full


class ArrivalClock:
    """When a partition's messages reached the broker, from its watermark sampled over time."""

    def __init__(self, keep: int = SAMPLES_KEPT) -> None:
        self.keep = keep
        self.times: list[float] = []
        self.highs: list[int] = []

    def observe(self, now: float, high: int) -> None:
        """A high watermark read at ``now`` (kept only when it moved)."""
        if self.highs and high < self.highs[-1]:  # the partition was truncated or recreated
            self.times.clear()
            self.highs.clear()
        if self.highs and high == self.highs[-1]:
            return
        self.times.append(now)
        self.highs.append(high)
        if len(self.highs) > self.keep:  # halve the resolution, keep the first and last
            last = (self.times[-1], self.highs[-1])
            self.times, self.highs = self.times[::2], self.highs[::2]
            if self.highs[-1] != last[1]:
                self.times.append(last[0])
                self.highs.append(last[1])

    def arrived(self, offset: int) -> float | None:
        """By when the message at ``offset`` had reached the broker; None: not yet seen."""
        i = bisect_right(self.highs, offset)  # the first sample whose watermark is past it
        if i == len(self.highs):
            return None
        if i == 0:
            return self.times[0]  # before the first sample: at least this old
        t0, h0, t1, h1 = self.times[i - 1], self.highs[i - 1], self.times[i], self.highs[i]
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
    """Reads high watermarks and the group's committed offsets from the broker, without
    blocking the event loop (the admin client's futures, awaited)."""

    def __init__(
        self, connect: Callable[[], AdminClient], group: str, timeout_seconds: float
    ) -> None:
        self.connect = connect  # called at the first read: no connection before it is needed
        self.admin: AdminClient | None = None
        self.group = group
        self.timeout = timeout_seconds

    async def read(
        self, partitions: Iterable[Partition]
    ) -> tuple[dict[Partition, int], dict[Partition, int | None]]:
        """(high watermarks, committed offsets: None where the group has none)."""
        tps = [TopicPartition(t, p) for t, p in partitions]
        if not tps:
            return {}, {}
        if self.admin is None:
            self.admin = self.connect()
        latest = self.admin.list_offsets(
            {tp: OffsetSpec.latest() for tp in tps}, request_timeout=self.timeout
        )
        groups = self.admin.list_consumer_group_offsets(
            [ConsumerGroupTopicPartitions(self.group, tps)], request_timeout=self.timeout
        )
        futures: list[Any] = [*latest.values(), groups[self.group]]
        done = await asyncio.wait_for(
            asyncio.gather(*(asyncio.wrap_future(f) for f in futures)), self.timeout + 1
        )
        pairs = zip(latest, done[:-1], strict=True)
        highs = {(tp.topic, tp.partition): r.offset for tp, r in pairs}
        committed: dict[Partition, int | None] = {
            (tp.topic, tp.partition): tp.offset if tp.offset >= 0 else None
            for tp in done[-1].topic_partitions
        }
        return highs, committed
