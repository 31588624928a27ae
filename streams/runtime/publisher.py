"""Publishing a batch's outputs and knowing, without blocking, when the broker has them all.

One confluent-kafka producer per worker; a background thread serves its delivery reports.
Each batch gets its own :class:`Delivery`: the records it produced, the errors they met, the
changelog offsets they reached. Its ``confirmed`` future resolves on the event loop when the
last record of the sealed batch is acknowledged, or fails with that batch's own errors, so one
agent's delivery error can never surface in, or be cleared by, another's batch.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterable
from typing import Any

from confluent_kafka import KafkaException, Producer

from greenlane.streams.domain.batch import BatchOutcome
from greenlane.streams.runtime.serde import WireEncoder, load_schema
from greenlane.streams.runtime.state import TableState
from greenlane.streams.settings import Settings, schema_path
from greenlane.streams.stages.routing import ROUTE_TOPIC_ROLE

POLL_SECONDS = 0.05
BUFFER_FULL_WAIT_SECONDS = 0.01


class DeliveryFailed(KafkaException):
    """A batch's outputs were not all delivered: the batch must not be acknowledged."""


class Delivery:
    """One batch's records in flight.

    Delivery reports arrive on the producer's poll thread and only the outcome hops to the
    event loop (one ``call_soon_threadsafe`` per batch). No lock: ``produced`` and ``_sealed``
    are written only on the loop thread, ``delivered`` only on the poll thread, and each side
    checks for completion after its own write, so under the GIL at least one of them sees the
    batch complete (``_settle`` ignores a second call).
    """

    __slots__ = (
        "_loop",
        "_sealed",
        "_tables",
        "changelog_offsets",
        "confirmed",
        "delivered",
        "errors",
        "produced",
    )

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.delivered = 0
        self._sealed = False
        self.confirmed: asyncio.Future[None] = loop.create_future()
        self.errors: list[str] = []
        self.produced = 0
        # table -> changelog partition -> highest confirmed offset
        self.changelog_offsets: dict[TableState, dict[int, int]] = {}
        self._tables: dict[str, TableState] = {}

    def _sent(self) -> None:
        self.produced += 1

    def on_delivery(self, err: Any, msg: Any) -> None:
        """Called on the poll thread for every record of this batch."""
        if err is not None:
            self.errors.append(f"{msg.topic()}[{msg.partition()}]: {err}")
        else:
            table = self._tables.get(msg.topic())
            if table is not None:
                offsets = self.changelog_offsets.setdefault(table, {})
                p = msg.partition()
                if msg.offset() > offsets.get(p, -1):
                    offsets[p] = msg.offset()
        self.delivered += 1
        if self._sealed and self.delivered == self.produced:
            self._loop.call_soon_threadsafe(self._settle)

    def seal(self) -> asyncio.Future[None]:
        """No more records for this batch; the future resolves once all are confirmed."""
        self._sealed = True
        if self.delivered == self.produced:
            self._settle()
        return self.confirmed

    def _settle(self) -> None:
        if self.confirmed.done():
            return
        if self.errors:
            self.confirmed.set_exception(
                DeliveryFailed(
                    f"{len(self.errors)} of {self.produced} outputs undelivered: {self.errors[:3]}"
                )
            )
            return
        for table, offsets in self.changelog_offsets.items():
            table.persisted(offsets)
        self.confirmed.set_result(None)


class Publisher:
    """The worker's producer, its poll thread, and how a batch outcome becomes records."""

    def __init__(self, s: Settings, schema_ids: dict[str, int]) -> None:
        self.producer = Producer(
            {
                "bootstrap.servers": s.bootstrap_servers,
                "linger.ms": 5,
                "compression.type": "lz4",
                "enable.idempotence": True,
                "queue.buffering.max.messages": 1_000_000,
            }
        )
        self.topics = s.topics
        self.encoders = {
            role: WireEncoder(load_schema(schema_path(role)), schema_ids[role])
            for role in (
                "release",
                "carrier_response",
                "dead_letter",
                "pattern_observation",
                "pattern_finding",
            )
        }
        self.decision_topic = {
            route: self.topics.name(role) for route, role in ROUTE_TOPIC_ROLE.items()
        }
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="greenlane-delivery", daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        while not self._stop.is_set():
            self.producer.poll(POLL_SECONDS)

    def close(self, timeout: float = 30.0) -> None:
        """Deliver what is queued, then stop the poll thread."""
        self.producer.flush(timeout)
        self._stop.set()
        self._thread.join(timeout)

    def begin(self) -> Batch:
        """A new batch of records with its own delivery."""
        return Batch(self, Delivery(asyncio.get_running_loop()))


class Batch:
    """Records being produced for one batch; ``confirmed()`` is awaited, never ``flush``."""

    def __init__(self, publisher: Publisher, delivery: Delivery) -> None:
        self.publisher = publisher
        self.delivery = delivery
        # produced while the queue was full: sent from send(), awaiting instead of blocking
        self._backlog: list[tuple[str, bytes | None, bytes | None, int]] = []

    def _produce(self, topic: str, key: bytes | None, value: bytes | None, partition: int) -> None:
        if self._backlog:
            self._backlog.append((topic, key, value, partition))
            return
        d = self.delivery
        try:
            self.publisher.producer.produce(topic, value, key, partition, on_delivery=d.on_delivery)
        except BufferError:
            self._backlog.append((topic, key, value, partition))
            return
        d._sent()

    def changelog(
        self, state: TableState, topic: str, partition: int, key: bytes, value: bytes | None
    ) -> None:
        """A table's changelog record (runtime.state.ChangelogSink)."""
        self.delivery._tables[topic] = state
        self._produce(topic, key, value, partition)

    def outcome(self, outcome: BatchOutcome) -> None:
        """Decisions (to their lane's topic and each referral's), responses, dead letters,
        and records for the internal topics (each to the partition it names)."""
        p = self.publisher
        topics = p.topics
        encode_decision = p.encoders["release"].encode  # one schema for lanes and referrals
        for d in outcome.decisions:
            value = encode_decision(d)
            key = d["house_waybill"].encode()
            self._produce(p.decision_topic[d["route"]], key, value, -1)
            for agency in d["referrals"]:
                self._produce(topics.referral(agency), key, value, -1)
        self.records(topics.name("carrier_response"), "carrier_response", outcome.responses)
        self.records(topics.name("dead_letter"), "dead_letter", outcome.dead_letters)
        encoders = p.encoders
        for f in outcome.forwards:
            self._produce(
                topics.name(f.role), f.key, encoders[f.role].encode(f.record), f.partition
            )

    def records(self, topic: str, role: str, items: Iterable[tuple[bytes | None, dict]]) -> None:
        encode = self.publisher.encoders[role].encode
        for key, record in items:
            self._produce(topic, key, encode(record), -1)

    async def send(self) -> asyncio.Future[None]:
        """Hand over what the full queue refused (yielding to the loop meanwhile), seal the
        batch and return its confirmation, to await now or later."""
        producer = self.publisher.producer
        d = self.delivery
        backlog, self._backlog = self._backlog, []
        for i, (topic, key, value, partition) in enumerate(backlog):
            while True:
                try:
                    producer.produce(topic, value, key, partition, on_delivery=d.on_delivery)
                    break
                except BufferError:
                    await asyncio.sleep(BUFFER_FULL_WAIT_SECONDS)
            d._sent()
            if i % 1000 == 999:
                await asyncio.sleep(0)
        return d.seal()
