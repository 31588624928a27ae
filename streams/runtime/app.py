"""The Faust worker: thin agents around the batch core.

Each filing topic has one agent that takes micro-batches (``take_events`` with a ``within``
bound), hands them to ``Assessor.assess`` and publishes the outcome with one confluent-kafka
producer. The batch is acknowledged (offsets committed) only after the broker confirmed every
output, so a crash replays the batch: at-least-once, recognisable by deterministic ids.

Outputs go through confluent-kafka rather than Faust's per-message ``send`` because the
latter costs an await and a future per record, which is the very per-event overhead that
limits a Python stream processor.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
import zlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import faust
from confluent_kafka import KafkaException, Producer

from greenlane.models.feedback import LabelledHistory, join_outcomes
from greenlane.models.stream import StreamScorer
from greenlane.streams.core.pipeline import (
    Assessor,
    BatchOutcome,
    InboundMessage,
    dead_letter_record,
)
from greenlane.streams.domain.vocabulary import PRE_ARRIVAL, PRE_LOADING
from greenlane.streams.runtime import admin, metrics
from greenlane.streams.runtime.serde import WireDecoder, WireEncoder, load_schema
from greenlane.streams.settings import Settings, schema_path, settings
from greenlane.streams.stages import quality
from greenlane.streams.stages.patterns import expire_state
from greenlane.streams.stages.routing import ROUTE_TOPIC_ROLE
from greenlane.streams.stages.targeting import RuleBook, TargetingRules

log = logging.getLogger("greenlane.worker")

STAGE_TOPIC_ROLE = {PRE_LOADING: "pre_loading", PRE_ARRIVAL: "pre_arrival"}
LINK_TABLE = "consignment_links"
PATTERN_TABLE = "pattern_state"
SUMMARY_TABLE = "decision_summaries"
PATTERN_EXPIRY_SECONDS = 300.0
DRIFT_EXPORT_SECONDS = 15.0
RETENTION_SWEEP_SECONDS = 600.0


class Publisher:
    """Publishes a batch outcome and waits until the broker has confirmed all of it."""

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
            for role in ("release", "carrier_response", "dead_letter")
        }
        self.decision_topic = {
            route: self.topics.name(role) for route, role in ROUTE_TOPIC_ROLE.items()
        }
        self.errors: list[str] = []

    def _on_delivery(self, err, _msg) -> None:
        if err is not None:
            self.errors.append(str(err))

    def produce(
        self, topic: str, key: bytes | None, value: bytes | None, partition: int = -1
    ) -> None:
        while True:
            try:
                self.producer.produce(topic, value, key, partition, on_delivery=self._on_delivery)
                return
            except BufferError:
                self.producer.poll(0.05)

    def enqueue(self, outcome: BatchOutcome) -> None:
        encode_decision = self.encoders["release"].encode  # one schema for lanes and referrals
        for d in outcome.decisions:
            value = encode_decision(d)
            key = d["house_waybill"].encode()
            self.produce(self.decision_topic[d["route"]], key, value)
            for agency in d["referrals"]:
                self.produce(self.topics.referral(agency), key, value)
        encode = self.encoders["carrier_response"].encode
        topic = self.topics.name("carrier_response")
        for key, r in outcome.responses:
            self.produce(topic, key, encode(r))
        encode = self.encoders["dead_letter"].encode
        topic = self.topics.name("dead_letter")
        for key, dl in outcome.dead_letters:
            self.produce(topic, key, encode(dl))

    def confirm(self, timeout: float = 60.0) -> None:
        """Block until every enqueued record is delivered; raise if any was not."""
        remaining = self.producer.flush(timeout)
        if remaining or self.errors:
            errors, self.errors = self.errors[:5], []
            raise KafkaException(
                f"{remaining} outputs undelivered after {timeout}s; errors: {errors}"
            )


def inbound(events: Sequence) -> list[InboundMessage]:
    return [
        InboundMessage(m.key, m.value, m.topic, m.partition, m.offset, int(m.timestamp * 1000))
        for m in (e.message for e in events)
    ]


def record_metrics(
    stage: str, outcome: BatchOutcome, started: float, messages: list[InboundMessage]
) -> None:
    done_ms = time.time() * 1000
    metrics.BATCH_SIZE.labels(stage).observe(len(messages))
    metrics.BATCH_SECONDS.labels(stage).observe(time.perf_counter() - started)
    latency = metrics.DECISION_LATENCY.labels(stage)
    for pos in outcome.decision_sources:
        latency.observe(max(0.0, (done_ms - messages[pos].timestamp_ms) / 1000))
    for d in outcome.decisions:
        metrics.DECISIONS.labels(d["stage"], d["route"]).inc()
        if d["model_probability"] is not None:
            metrics.MODEL_SCORE.observe(d["model_probability"])
        for agency in d["referrals"]:
            metrics.REFERRALS.labels(agency).inc()
        if d["random_pick"]:
            metrics.RANDOM_PICKS.inc()
    for _, dl in outcome.dead_letters:
        metrics.DEAD_LETTERS.labels(dl["error_code"]).inc()
    for code, n in outcome.findings.items():
        metrics.QUALITY_FINDINGS.labels(code).inc(n)
    for _, r in outcome.responses:
        metrics.CARRIER_RESPONSES.labels(r["status"]).inc()


def write_changelog(table, publisher: Publisher, updates: Iterable[tuple[str, Any, int]]) -> None:
    """Store entries and write their changelog records in one go (None deletes a key).

    This is what ``table[key] = value`` does (store, then a changelog record in a partition),
    minus Faust's per-record producer future: that path cost more than the whole assessment.
    The changelog format is Faust's own (JSON key and value, null to delete), so Faust recovers
    the table from it as usual after a rebalance or restart.
    """
    store = table.data
    topic = table.changelog_topic_name
    produce = publisher.produce
    for key, value, partition in updates:
        if value is None:
            store.pop(key, None)
            produce(topic, json.dumps(key).encode(), None, partition)
        else:
            store[key] = value
            produce(topic, json.dumps(key).encode(), json.dumps(value).encode(), partition)


def stale_entries(
    store: Mapping[str, Any], time_field: str, older_than_ms: int
) -> list[tuple[str, None, int]]:
    """Deletions (key, None, changelog partition) for entries filed before ``older_than_ms``."""
    return [
        (key, None, entry["partition"])
        for key, entry in list(store.items())
        if isinstance(entry, dict)
        and "partition" in entry
        and entry.get(time_field, older_than_ms) < older_than_ms
    ]


def partitioned(updates: dict[str, tuple[int, Any]]) -> Iterator[tuple[str, Any, int]]:
    """Entries keyed by consignment (links, decision summaries) go to the changelog partition
    of the filing that changed them: the one Faust restores with that filing's partition."""
    for key, (partition, value) in updates.items():
        yield key, value, partition


def pattern_changes(updates: dict[str, Any], partitions: int) -> Iterator[tuple[str, Any, int]]:
    """Pattern state is keyed by consignee, seller, HS6 or carrier, not by waybill: a stable
    hash spreads it over the changelog partitions (one worker restores all of it; with several,
    each restores a share: see the README on partitioning)."""
    for key, value in updates.items():
        yield key, value, zlib.crc32(key.encode()) % partitions


def outcome_dead_letter(
    msg: InboundMessage, code: str, why: str, now_ms: int
) -> tuple[bytes | None, dict]:
    """An inspection outcome that cannot join the history, kept whole with the reason."""
    return msg.key, dead_letter_record(msg, code, why, None, None, now_ms)


def create_app(s: Settings | None = None) -> faust.App:
    """Build the worker app: one batch agent per filing topic and the consignment link table."""
    s = s or settings()
    datadir = Path(os.path.expanduser(s.worker.data_dir))
    app = faust.App(
        s.worker.app_id,
        broker=f"kafka://{s.bootstrap_servers}",
        store=s.worker.table_store,
        datadir=str(datadir),
        web_enabled=False,
        topic_partitions=s.topics.partitions,
        topic_replication_factor=s.topics.replication_factor,
        # JSON for the link table's changelog; the filing topics below are read as raw bytes.
        key_serializer="json",
        value_serializer="json",
        consumer_auto_offset_reset="earliest",
        broker_max_poll_records=s.worker.batch_max,
        stream_buffer_maxsize=max(4096, 2 * s.worker.batch_max),
        table_cleanup_interval=60.0,
    )
    links = app.Table(LINK_TABLE, default=None, partitions=s.topics.partitions)
    patterns = app.Table(PATTERN_TABLE, default=None, partitions=s.topics.partitions)
    # decision_id -> what the feedback join needs, until the inspection outcome arrives
    summaries = app.Table(SUMMARY_TABLE, default=None, partitions=s.topics.partitions)
    # Topics, schemas and configuration are ready before the first batch can arrive.
    registered = admin.prepare(s, progress=log.info)
    fetch = admin.schema_fetcher(admin.registry_client(s))
    decoders = {
        stage: WireDecoder(load_schema(schema_path(role)), fetch)
        for stage, role in STAGE_TOPIC_ROLE.items()
    }

    def on_reload(rules: TargetingRules | None, error: Exception | None) -> None:
        metrics.PROFILE_RELOADS.labels("refused" if error else "loaded").inc()
        if rules is not None:
            assessor.targeting_rules = rules
            metrics.PROFILE_INFO.info({"version": rules.version})

    rulebook = RuleBook(s.worker.targeting_path, s.worker.profile_check_seconds, on_reload)
    scorer = StreamScorer()  # the registry's current model, if any; swapped when promoted
    assessor = Assessor(quality.load_quality_rules(), rulebook.current, decoders, scorer=scorer)
    metrics.PROFILE_INFO.info({"version": rulebook.current.version})
    metrics.MODEL_INFO.info({"version": scorer.version or "none"})
    publisher = Publisher(s, registered.ids)

    @app.timer(PATTERN_EXPIRY_SECONDS)
    async def expire_patterns() -> None:
        """Forget pattern state older than its window (tombstones in the changelog)."""
        gone = expire_state(patterns.data, int(time.time() * 1000), assessor.pattern_settings)
        if gone:
            write_changelog(
                patterns, publisher, pattern_changes(dict.fromkeys(gone), s.topics.partitions)
            )
            await asyncio.get_running_loop().run_in_executor(None, publisher.confirm)

    @app.timer(RETENTION_SWEEP_SECONDS)
    async def forget_old_consignments() -> None:
        """Bounded tables: links and decision summaries past their retention are deleted."""
        now_ms = int(time.time() * 1000)
        day_ms = 86_400_000
        gone = [
            (
                links,
                stale_entries(
                    links.data, "filed_at", now_ms - int(s.worker.link_retention_days * day_ms)
                ),
            ),
            (
                summaries,
                stale_entries(
                    summaries.data,
                    "filing_time",
                    now_ms - int(s.worker.summary_retention_days * day_ms),
                ),
            ),
        ]
        for table, deletions in gone:
            write_changelog(table, publisher, deletions)
        if any(deletions for _, deletions in gone):
            await asyncio.get_running_loop().run_in_executor(None, publisher.confirm)

    @app.timer(DRIFT_EXPORT_SECONDS)
    async def export_drift() -> None:
        if scorer.monitor is not None and scorer.monitor.rows:
            metrics.export_drift(scorer.monitor)

    @app.task
    async def serve_metrics() -> None:
        metrics.serve(s.worker.metrics_host, s.worker.metrics_port)
        log.info(
            "greenlane worker started; metrics on http://%s:%s/metrics",
            s.worker.metrics_host,
            s.worker.metrics_port,
        )

    def stage_agent(stage: str):
        topic = app.topic(
            s.topics.name(STAGE_TOPIC_ROLE[stage]), key_serializer="raw", value_serializer="raw"
        )
        consumed = metrics.MESSAGES_CONSUMED.labels(topic.get_topic_name())

        async def assess(stream):
            loop = asyncio.get_running_loop()
            async for events in stream.take_events(
                s.worker.batch_max, within=s.worker.batch_within_seconds
            ):
                started = time.perf_counter()
                rulebook.refresh()  # a time check; re-reads the profiles only when they changed
                if scorer.refresh():
                    metrics.MODEL_INFO.info({"version": scorer.version or "none"})
                messages = inbound(events)
                outcome = assessor.assess(
                    stage,
                    messages,
                    links.data,
                    int(time.time() * 1000),
                    patterns.data if stage == PRE_ARRIVAL else None,
                )
                # Before the first await: the other stage's agent must see these links.
                write_changelog(links, publisher, partitioned(outcome.link_updates))
                write_changelog(
                    patterns,
                    publisher,
                    pattern_changes(outcome.pattern_updates, s.topics.partitions),
                )
                write_changelog(summaries, publisher, partitioned(outcome.summaries))
                publisher.enqueue(outcome)
                await loop.run_in_executor(None, publisher.confirm)
                consumed.inc(len(events))
                record_metrics(stage, outcome, started, messages)

        assess.__name__ = f"assess_{stage.lower()}"
        return app.agent(topic, name=f"greenlane.assess.{stage.lower()}")(assess)

    stage_agent(PRE_LOADING)
    stage_agent(PRE_ARRIVAL)

    outcomes_topic = app.topic(
        s.topics.name("inspection_outcome"), key_serializer="raw", value_serializer="raw"
    )
    outcome_decoder = WireDecoder(load_schema(schema_path("inspection_outcome")), fetch)
    history = LabelledHistory()

    @app.agent(outcomes_topic, name="greenlane.feedback.outcomes")
    async def join_inspection_outcomes(stream):
        """Officers' findings joined to their decisions: the model's labelled history."""
        loop = asyncio.get_running_loop()
        async for events in stream.take_events(s.worker.batch_max, within=1.0):
            messages = inbound(events)
            now_ms = int(time.time() * 1000)
            decoded = outcome_decoder.decode_batch([m.value for m in messages])
            outcomes, dead, source = [], [], {}
            for msg, item in zip(messages, decoded, strict=True):
                if isinstance(item, dict):
                    outcomes.append(item)
                    source[id(item)] = msg
                else:
                    dead.append(outcome_dead_letter(msg, item.error_code, item.message, now_ms))
            rows, unmatched = join_outcomes(outcomes, summaries.data, assessor.rates)
            for u in unmatched:
                msg = source[id(u["outcome"])]
                dead.append(outcome_dead_letter(msg, f"OUTCOME_{u['reason']}", u["detail"], now_ms))
            if rows:  # Parquet part files: off the event loop
                await loop.run_in_executor(None, history.append, rows)
            publisher.enqueue(BatchOutcome(dead_letters=dead))
            await loop.run_in_executor(None, publisher.confirm)
            metrics.MESSAGES_CONSUMED.labels(outcomes_topic.get_topic_name()).inc(len(events))
            metrics.OUTCOMES.labels("joined").inc(len(rows))
            for _, d in dead:
                metrics.DEAD_LETTERS.labels(d["error_code"]).inc()
                metrics.OUTCOMES.labels("dead_lettered").inc()

    return app
