"""Publishing a batch's outputs, in an order that makes a replay give the same answer, and never
giving up on a batch while the broker is away.

One confluent-kafka producer per worker; a background thread serves its delivery reports.
A batch is published in two steps:

1. its **changelog records** (the tables' changes, the replay log among them) are produced at
   once, while the agent goes on;
2. once the broker has confirmed all of them, its **outputs** (decisions, carrier responses,
   dead letters, internal records) are produced, after the outputs of every earlier batch.

So a decision can only reach a topic after the replay-log entry that holds it is durable: a
filing read again after a crash finds that entry and is answered with exactly what was
published (same id, route, score and reasons); one whose entry never became durable had
published nothing, so its fresh assessment is the first anyone sees.

Messages never time out in the producer (``message.timeout.ms`` 0): while the broker is down,
librdkafka keeps them, in order, and retries; the batch simply waits, the agent stops taking
new ones (the checkpoint bounds batches in flight) and its offsets stay unacknowledged. What
the broker refuses for good (a record larger than a topic accepts) becomes a dead letter; any
other refusal is retried with back-off, with a log line and a metric, until it goes through.
Every record is checked against ``max_output_bytes`` before it is produced.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Iterable
from typing import Any

from confluent_kafka import KafkaError, Producer

from greenlane.streams.core.outcomes import digest
from greenlane.streams.domain.batch import BatchOutcome
from greenlane.streams.runtime import metrics
from greenlane.streams.runtime.serde import WireEncoder, load_schema
from greenlane.streams.runtime.state import TableState
from greenlane.streams.settings import Settings, schema_path
from greenlane.streams.stages.routing import ROUTE_TOPIC_ROLE

log = logging.getLogger("greenlane.publisher")

POLL_SECONDS = 0.05
BUFFER_FULL_WAIT_SECONDS = 0.01
FIRST_RETRY_SECONDS = 0.5
WAITING_NOTICE_SECONDS = 10.0
OUTPUT_UNPUBLISHABLE = "OUTPUT_UNPUBLISHABLE"
# What the broker refuses for the record itself: retrying cannot help, a dead letter does.
REFUSED_RECORD = {
    KafkaError.MSG_SIZE_TOO_LARGE,
    KafkaError.INVALID_RECORD,
    KafkaError.INVALID_MSG_SIZE,
    KafkaError.RECORD_LIST_TOO_LARGE,
}
# Room for the record's headers and framing inside message.max.bytes.
RECORD_OVERHEAD_BYTES = 512

Record = tuple[str, bytes | None, bytes | None, int]  # topic, key, value, partition (-1: any)


class Delivery:
    """One step's records in flight.

    Delivery reports arrive on the producer's poll thread and only the outcome hops to the
    event loop (one ``call_soon_threadsafe`` per step). No lock: ``produced`` and ``_sealed``
    are written only on the loop thread, ``delivered`` and ``failed`` only on the poll thread
    (read once ``confirmed`` has resolved), and each side checks for completion after its own
    write, so under the GIL at least one of them sees the step complete (``_settle`` ignores a
    second call). ``confirmed`` never fails: it resolves when every record has a report, and
    ``failed`` holds the records the broker refused, with why.
    """

    __slots__ = (
        "_loop",
        "_sealed",
        "_tables",
        "changelog_offsets",
        "confirmed",
        "delivered",
        "failed",
        "produced",
        "sealed_at",
    )

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.delivered = 0
        self._sealed = False
        self.sealed_at = 0.0
        self.confirmed: asyncio.Future[None] = loop.create_future()
        self.failed: list[tuple[Record, Any]] = []
        self.produced = 0
        # table -> changelog partition -> highest confirmed offset
        self.changelog_offsets: dict[TableState, dict[int, int]] = {}
        self._tables: dict[str, TableState] = {}

    def _sent(self) -> None:
        self.produced += 1

    def on_delivery(self, err: Any, msg: Any) -> None:
        """Called on the poll thread for every record of this step."""
        if err is not None:
            record = (msg.topic(), msg.key(), msg.value(), msg.partition())
            self.failed.append((record, err))
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
        """No more records for this step; the future resolves once all have a report."""
        self._sealed = True
        self.sealed_at = time.monotonic()
        if self.delivered == self.produced:
            self._settle()
        return self.confirmed

    def _settle(self) -> None:
        if not self.confirmed.done():
            self.confirmed.set_result(None)

    def persist(self) -> None:
        """The tables' changelog records of this step are durable: tell the tables."""
        for table, offsets in self.changelog_offsets.items():
            table.persisted(offsets)


def error_code(err: Any) -> int | None:
    return err.code() if hasattr(err, "code") else None


class Publisher:
    """The worker's producer, its poll thread, and how a batch outcome becomes records."""

    def __init__(
        self, s: Settings, schema_ids: dict[str, int], producer: Any | None = None
    ) -> None:
        """``producer``: a confluent-kafka ``Producer`` lookalike (tests); default: a real one."""
        self.max_output_bytes = s.worker.max_output_bytes
        self.keep_bytes = s.worker.dead_letter_keep_bytes
        self.retry_max_seconds = s.worker.publish_retry_max_seconds
        self.fatal: str | None = None  # the producer's fatal error, once it has had one
        self.producer = producer or Producer(
            {
                **s.kafka_config(),
                "linger.ms": 5,
                "compression.type": "lz4",
                "enable.idempotence": True,
                "queue.buffering.max.messages": 1_000_000,
                "message.max.bytes": s.worker.max_output_bytes,
                # never give a record up: the broker may be away for minutes; the batch waits
                "message.timeout.ms": 0,
                "error_cb": self._on_error,
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
        # the outputs of the batch begun last have been handed to the producer
        self._outputs_tail: asyncio.Future[None] | None = None
        self._waiting: set[Delivery] = set()  # steps sealed and not yet confirmed
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="greenlane-delivery", daemon=True)
        self._thread.start()

    def _on_error(self, err: Any) -> None:
        """librdkafka's client-level errors (poll thread): the broker down or back, fatal."""
        metrics.PRODUCER_ERRORS.labels(err.name() if hasattr(err, "name") else "unknown").inc()
        if hasattr(err, "fatal") and err.fatal():
            self.fatal = str(err)
            log.critical("producer: fatal error, it cannot publish any more: %s", err)
        else:
            log.warning("producer: %s", err)

    def _poll(self) -> None:
        while not self._stop.is_set():
            self.producer.poll(POLL_SECONDS)

    def close(self, timeout: float = 30.0) -> None:
        """Deliver what is queued, then stop the poll thread."""
        self.producer.flush(timeout)
        self._stop.set()
        self._thread.join(timeout)

    def waiting_for_broker(self, longer_than: float = WAITING_NOTICE_SECONDS / 2) -> bool:
        """Whether some records have waited for their confirmation for ``longer_than``
        seconds: the broker is away or slow (any thread may ask)."""
        now = time.monotonic()
        return any(
            d.produced > d.delivered and now - d.sealed_at > longer_than
            for d in list(self._waiting)
        )

    def begin(self) -> Batch:
        """A new batch of records."""
        return Batch(self, asyncio.get_running_loop())

    # ------------------------------------------------------------------ unpublishable output

    def unpublishable(self, record: Record, why: str) -> Record:
        """The dead letter that takes the place of an output the broker cannot take (too large,
        not encodable): its first bytes, size, digest and where it was going."""
        topic, key, value, _ = record
        body = value or b""
        now_ms = int(time.time() * 1000)
        dead = {
            "dead_letter_id": digest(b"unpublishable", topic.encode(), key or b"", body),
            "error_code": OUTPUT_UNPUBLISHABLE,
            "error_message": f"output for {topic} not published: {why}"[:1000],
            "source_topic": topic,
            "source_partition": -1,
            "source_offset": -1,
            "source_timestamp": now_ms,
            "schema_id": None,
            "carrier_id": None,
            "message_id": None,
            "original_key": (key or b"")[:256] or None,
            "original_value": body[: self.keep_bytes],
            "original_value_bytes": len(body),
            "original_value_sha256": None,
            "dead_lettered_at": now_ms,
        }
        log.error("output for %s not published, dead-lettered instead: %s", topic, why)
        metrics.UNPUBLISHABLE_OUTPUTS.inc()
        value = self.encoders["dead_letter"].encode(dead)
        return (self.topics.name("dead_letter"), dead["original_key"], value, -1)

    def bounded(self, record: Record) -> Record:
        """``record`` if the broker can take it, else its dead letter."""
        _, key, value, _ = record
        size = len(key or b"") + len(value or b"") + RECORD_OVERHEAD_BYTES
        if size <= self.max_output_bytes:
            return record
        return self.unpublishable(
            record, f"{size:,} bytes, more than max_output_bytes {self.max_output_bytes:,}"
        )

    def bounded_dead_letter(self, dead: dict) -> dict:
        """A dead letter whose original is cut to ``dead_letter_keep_bytes`` (its size and
        SHA-256 still describe the whole, which stays on the source topic)."""
        value, key = dead.get("original_value"), dead.get("original_key")
        keep = self.keep_bytes
        if (value is None or len(value) <= keep) and (key is None or len(key) <= 1024):
            return dead
        cut = dict(dead)
        if value is not None and len(value) > keep:
            cut["original_value"] = value[:keep]
        if key is not None and len(key) > 1024:
            cut["original_key"] = key[:1024]
        return cut


class Batch:
    """One batch's records: changelog first, outputs once the changelog is durable."""

    def __init__(self, publisher: Publisher, loop: asyncio.AbstractEventLoop) -> None:
        self.publisher = publisher
        self._loop = loop
        self.state = Delivery(loop)
        # produced while the queue was full: sent from send(), awaiting instead of blocking
        self._backlog: list[Record] = []
        self.outputs: list[Record] = []

    def _produce(self, delivery: Delivery, record: Record) -> bool:
        """Hand one record to the producer; False when its queue is full."""
        topic, key, value, partition = record
        try:
            self.publisher.producer.produce(
                topic, value, key, partition, on_delivery=delivery.on_delivery
            )
        except BufferError:
            return False
        delivery._sent()
        return True

    def changelog(
        self, state: TableState, topic: str, partition: int, key: bytes, value: bytes | None
    ) -> None:
        """A table's changelog record (runtime.state.ChangelogSink), produced at once."""
        self.state._tables[topic] = state
        record = (topic, key, value, partition)
        if self._backlog or not self._produce(self.state, record):
            self._backlog.append(record)

    def outcome(self, outcome: BatchOutcome) -> None:
        """Decisions (to their lane's topic and each referral's), responses, dead letters,
        and records for the internal topics (each to the partition it names): encoded and
        checked now, produced once the changelog is confirmed."""
        p = self.publisher
        topics = p.topics
        encode_decision = p.encoders["release"].encode  # one schema for lanes and referrals
        out = self.outputs
        for d in outcome.decisions:
            key = d["house_waybill"].encode()
            topic = p.decision_topic[d["route"]]
            value = self._encode(encode_decision, d, topic, key)
            if value is None:
                continue
            out.append(p.bounded((topic, key, value, -1)))
            for agency in d["referrals"]:
                out.append(p.bounded((topics.referral(agency), key, value, -1)))
        self.records(topics.name("carrier_response"), "carrier_response", outcome.responses)
        self.records(
            topics.name("dead_letter"),
            "dead_letter",
            ((k, p.bounded_dead_letter(d)) for k, d in outcome.dead_letters),
        )
        encoders = p.encoders
        for f in outcome.forwards:
            topic = topics.name(f.role)
            value = self._encode(encoders[f.role].encode, f.record, topic, f.key)
            if value is not None:
                out.append(p.bounded((topic, f.key, value, f.partition)))

    def _encode(self, encode: Any, record: dict, topic: str, key: bytes | None) -> bytes | None:
        try:
            return encode(record)
        except Exception as exc:  # a defect: say so, keep what can be kept
            why = f"not encodable: {type(exc).__name__}: {exc}"
            self.outputs.append(
                self.publisher.unpublishable((topic, key, repr(record).encode(), -1), why)
            )
            return None

    def records(self, topic: str, role: str, items: Iterable[tuple[bytes | None, dict]]) -> None:
        p = self.publisher
        encode = p.encoders[role].encode
        for key, record in items:
            value = self._encode(encode, record, topic, key)
            if value is not None:
                self.outputs.append(p.bounded((topic, key, value, -1)))

    async def send(self) -> asyncio.Future[None]:
        """Hand over the changelog records the full queue refused (yielding to the loop
        meanwhile) and return the batch's confirmation: it resolves once the changelog and
        then the outputs are all confirmed, however long the broker takes; it never fails."""
        backlog, self._backlog = self._backlog, []
        await self._hand_over(self.state, backlog)
        p = self.publisher
        previous, p._outputs_tail = p._outputs_tail, self._loop.create_future()
        metrics.UNCONFIRMED_BATCHES.inc()
        return asyncio.ensure_future(self._publish(previous, p._outputs_tail))

    async def _hand_over(self, delivery: Delivery, records: list[Record]) -> None:
        for i, record in enumerate(records):
            while not self._produce(delivery, record):
                await asyncio.sleep(BUFFER_FULL_WAIT_SECONDS)
            if i % 1000 == 999:
                await asyncio.sleep(0)

    async def _publish(
        self, previous: asyncio.Future[None] | None, produced: asyncio.Future[None]
    ) -> None:
        try:
            await self._confirm(self.state, "changelog")
            self.state.persist()
            if previous is not None:
                await asyncio.shield(previous)  # outputs stay in batch order on every topic
            outputs = Delivery(self._loop)
            await self._hand_over(outputs, self.outputs)
            produced.set_result(None)
            await self._confirm(outputs, "outputs")
        finally:
            if not produced.done():
                produced.set_result(None)
            metrics.UNCONFIRMED_BATCHES.dec()

    async def _confirm(self, delivery: Delivery, what: str) -> None:
        """Wait until the broker has every record of ``delivery``; records it refused are
        tried again (with back-off) or, when refused for themselves, dead-lettered."""
        p = self.publisher
        pause = FIRST_RETRY_SECONDS
        while True:
            future = delivery.seal()
            p._waiting.add(delivery)
            try:
                await self._until(delivery, future, what)
            finally:
                p._waiting.discard(delivery)
            if not delivery.failed:
                return
            again: list[Record] = []
            for record, err in delivery.failed:
                if error_code(err) in REFUSED_RECORD and what == "outputs":
                    again.append(p.unpublishable(record, f"refused by the broker: {err}"))
                else:
                    again.append(record)
            log.warning(
                "%d %s records of a batch refused (%s); trying again in %.1f s",
                len(delivery.failed),
                what,
                delivery.failed[0][1],
                pause,
            )
            metrics.PUBLISH_RETRIES.labels(what).inc(len(again))
            await asyncio.sleep(pause)
            pause = min(pause * 2, p.retry_max_seconds)
            fresh = Delivery(self._loop)
            fresh._tables = delivery._tables
            fresh.changelog_offsets = delivery.changelog_offsets
            await self._hand_over(fresh, again)
            delivery = fresh

    @staticmethod
    async def _until(delivery: Delivery, future: asyncio.Future[None], what: str) -> None:
        """Await ``future``, saying now and then (less and less often) that it still waits."""
        waited = 0.0
        notice = WAITING_NOTICE_SECONDS
        while not future.done():
            try:
                await asyncio.wait_for(asyncio.shield(future), timeout=notice)
            except TimeoutError:
                waited += notice
                metrics.PUBLISH_WAITS.inc()
                log.warning(
                    "%d of %d %s records of a batch still unconfirmed after %.0f s: waiting "
                    "for the broker (nothing is acknowledged meanwhile)",
                    delivery.produced - delivery.delivered,
                    delivery.produced,
                    what,
                    waited,
                )
                notice = min(notice * 2, 300.0)
