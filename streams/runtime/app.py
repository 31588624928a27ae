"""The Faust worker: thin agents around the batch core.

Each filing topic has one agent that takes micro-batches (``noack_take`` with a ``within``
bound), gives them with per-batch overlays of the tables to ``Assessor.assess_isolated``,
commits the overlays (runtime.state), publishes the outcome (runtime.publisher) and leaves the
acknowledgement to its checkpoint (runtime.checkpoint): offsets are committed only after the
broker confirmed every output and changelog record of the batch, so a crash replays the batch:
at-least-once, recognisable by deterministic ids.

Outputs go through confluent-kafka rather than Faust's per-message ``send`` because the
latter costs an await and a future per record, which is the very per-event overhead that
limits a Python stream processor.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import os
import sys
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Any

import faust

from greenlane.models.feedback import LabelledHistory, join_outcomes
from greenlane.models.stream import StreamScorer
from greenlane.streams.core.entities import FINDING, OBSERVATION, PatternStage
from greenlane.streams.core.outcomes import ASSESSMENT_FAILED, dead_letter_record, run_isolated
from greenlane.streams.core.pipeline import UNUSABLE_RECORD, Assessor, freeze_start_up
from greenlane.streams.core.retention import forget_stale
from greenlane.streams.domain.batch import BatchOutcome, InboundMessage, ServiceUnavailable
from greenlane.streams.domain.state import Overlay
from greenlane.streams.domain.vocabulary import STAGE_TOPIC_ROLE, STAGES
from greenlane.streams.runtime import admin, metrics, offsets
from greenlane.streams.runtime.checkpoint import Checkpoint
from greenlane.streams.runtime.health import (
    AgentProgress,
    Health,
    answered_next,
    forget_positions,
)
from greenlane.streams.runtime.lag import LagMonitor, Watermarks
from greenlane.streams.runtime.publisher import OUTPUT_UNPUBLISHABLE, Publisher
from greenlane.streams.runtime.serde import (
    UNDECODABLE,
    UNKNOWN_SCHEMA_ID,
    WRONG_SCHEMA,
    WireDecoder,
    load_schema,
)
from greenlane.streams.runtime.state import (
    TableState,
    by_filing_partition,
    by_key_partition,
    sealed_table,
    worker_ready,
)
from greenlane.streams.settings import Settings, schema_path, settings
from greenlane.streams.settings.watch import Watched
from greenlane.streams.stages import quality
from greenlane.streams.stages.bounds import (
    OUT_OF_BOUNDS,
    OVERSIZED,
    compile_checker,
    message_problem,
)
from greenlane.streams.stages.lanes import LaneAllocator, load_lane_settings
from greenlane.streams.stages.patterns import expire_state, load_pattern_settings, state_partition
from greenlane.streams.stages.revenue import load_revenue_settings
from greenlane.streams.stages.routing import ROUTE_TOPIC_ROLE
from greenlane.streams.stages.targeting import RuleBook, TargetingRules, load_agencies
from greenlane.streams.stages.watchlists import load_lists

log = logging.getLogger("greenlane.worker")

# The Assessor.reconfigure argument each watched settings set is given as.
SET_ARGUMENT = {
    "quality": "quality_rules",
    "lanes": "lanes",
    "revenue": "revenue_settings",
    "patterns": "pattern_settings",
    "lists": "lists",
}
LINK_TABLE = "consignment_links"
PATTERN_TABLE = "pattern_state"
SUMMARY_TABLE = "decision_summaries"
REPLAY_TABLE = "replay_log"
LANE_TABLE = "lane_quotas"
PATTERN_EXPIRY_SECONDS = 300.0
DRIFT_EXPORT_SECONDS = 15.0
RETENTION_SWEEP_SECONDS = 600.0
TABLE_SIZE_SECONDS = 10.0
SWEEP_CHUNK = 2000
HEALTH_BEAT_SECONDS = 5.0
LAG_SAMPLE_SECONDS = 2.0  # also the resolution of the lag's age (runtime.lag)
HOLE_RESEEK_SECONDS = 60.0  # a partition read again for a hole is not re-read sooner
FIRST_RETRY_SECONDS = 0.5
OUTCOMES_AGENT = "inspection outcomes"
DAY_MS = 86_400_000


def arm_exit_watchdog(seconds: float, code: int = 1, after: str = "a crash") -> threading.Timer:
    """Exit the process with ``code`` after ``seconds`` unless it has ended by then."""

    def exit_now() -> None:
        log.critical("the worker did not stop within %.0f s of %s; exiting", seconds, after)
        logging.shutdown()
        os._exit(code)

    timer = threading.Timer(seconds, exit_now)
    timer.daemon = True
    timer.start()
    return timer


def watch_for_stop(app: Any, seconds: float, poll: float = 0.5) -> threading.Thread:
    """Once the app stops (SIGTERM) or crashes, bound how long its shutdown may take.

    Faust's shutdown waits, without a time limit, for events still unacknowledged, which a
    batch the broker never confirmed stays: past ``seconds`` the process exits anyway (code 0
    after a stop, 1 after a crash). Nothing unconfirmed was acknowledged, so it is read again.
    """

    def watch() -> None:
        while not app.should_stop:
            time.sleep(poll)
        crashed = bool(app.crashed)
        arm_exit_watchdog(seconds, 1 if crashed else 0, "a crash" if crashed else "the stop")

    thread = threading.Thread(target=watch, name="greenlane-stop-watch", daemon=True)
    thread.start()
    return thread


async def retrying(
    name: str,
    attempt: Callable[[], Awaitable[None]],
    give_up: Callable[[], bool],
    max_pause: float,
    progress: AgentProgress | None = None,
) -> None:
    """``attempt`` until it succeeds, pausing (doubling up to ``max_pause``) after each
    failure, with a log line and a metric: a batch that could not be finished (the registry
    away, a defect) is tried again, never skipped. Raises once ``give_up()`` says so."""
    pause = FIRST_RETRY_SECONDS
    while True:
        try:
            await attempt()
            if progress is not None:
                progress.waiting_for = None
            return
        except Exception as exc:
            if give_up():
                raise
            metrics.BATCH_RETRIES.labels(name, type(exc).__name__).inc()
            if isinstance(exc, ServiceUnavailable):
                if progress is not None:
                    progress.waiting_for = str(exc)
                log.warning("%s: %s; trying the batch again in %.1f s", name, exc, pause)
            else:
                log.exception("%s: batch failed; trying it again in %.1f s", name, pause)
            await asyncio.sleep(pause)
            pause = min(pause * 2, max_pause)


def inbound(events: Sequence) -> list[InboundMessage]:
    return [
        InboundMessage(m.key, m.value, m.topic, m.partition, m.offset, int(m.timestamp * 1000))
        for m in (e.message for e in events)
    ]


def record_metrics(
    stage: str,
    outcome: BatchOutcome,
    started: float,
    messages: list[InboundMessage],
    consumed: Any,
) -> None:
    """A batch's figures, once the broker confirmed it (latency is to confirmation).

    ``stage``: the filing stage, or the internal topic's role (pattern observations and
    findings). Every decision, revisions included, is timed from the message that caused it;
    a pattern amendment is also timed from the declaration that completed the pattern."""
    consumed.inc(len(messages))
    done_ms = time.time() * 1000
    metrics.BATCH_SIZE.labels(stage).observe(len(messages))
    metrics.BATCH_SECONDS.labels(stage).observe(time.perf_counter() - started)
    # counted per batch, then one increment per label set: a labels() lookup costs a lock
    latency: dict[str, Any] = {}
    routes: Counter[tuple[str, str]] = Counter()
    referrals: Counter[str] = Counter()
    picks = 0
    score = metrics.MODEL_SCORE.observe
    for d, pos in zip(outcome.decisions, outcome.decision_sources, strict=True):
        decided = d["stage"]
        observe = latency.get(decided)
        if observe is None:
            observe = latency[decided] = metrics.DECISION_LATENCY.labels(decided).observe
        observe(max(0.0, (done_ms - messages[pos].timestamp_ms) / 1000))
        routes[decided, d["route"]] += 1
        if d["model_probability"] is not None:
            score(d["model_probability"])
        referrals.update(d["referrals"])
        picks += bool(d["random_pick"])
    for received in outcome.amended_from:
        metrics.PATTERN_AMENDMENT_LATENCY.observe(max(0.0, (done_ms - received) / 1000))
    if outcome.amended_from:
        metrics.PATTERN_FINDINGS.labels("amended").inc(len(outcome.amended_from))
    if outcome.unapplied:
        metrics.PATTERN_FINDINGS.labels("unapplied").inc(outcome.unapplied)
    if outcome.replayed:
        metrics.REPLAYED_DECISIONS.labels(stage).inc(outcome.replayed)
    for (decided, route), n in routes.items():
        metrics.DECISIONS.labels(decided, route).inc(n)
    for agency, n in referrals.items():
        metrics.REFERRALS.labels(agency).inc(n)
    if picks:
        metrics.RANDOM_PICKS.inc(picks)
    for code, n in Counter(dl["error_code"] for _, dl in outcome.dead_letters).items():
        metrics.DEAD_LETTERS.labels(code).inc(n)
    for code, n in outcome.findings.items():
        metrics.QUALITY_FINDINGS.labels(code).inc(n)
    for status, n in Counter(r["status"] for _, r in outcome.responses).items():
        metrics.CARRIER_RESPONSES.labels(status).inc(n)


def record_outcome_metrics(
    consumed: Any, n: int, joined: int, dead: list[tuple[bytes | None, dict]]
) -> None:
    consumed.inc(n)
    metrics.OUTCOMES.labels("joined").inc(joined)
    for _, d in dead:
        metrics.DEAD_LETTERS.labels(d["error_code"]).inc()
        metrics.OUTCOMES.labels("dead_lettered").inc()


def outcome_dead_letter(
    msg: InboundMessage, code: str, why: str, now_ms: int
) -> tuple[bytes | None, dict]:
    """An inspection outcome that cannot join the history, kept whole with the reason."""
    return msg.key, dead_letter_record(msg, code, why, None, None, now_ms)


async def retrain_now(timeout_seconds: float) -> str:
    """``greenlane retrain`` as a child process (the training never holds up the event loop);
    its lines go to the worker's log. Returns promoted, kept or failed (also a metric): failed
    when it cannot start, exits non-zero, gives no verdict or outlasts ``timeout_seconds``
    (then it is killed)."""
    command = (sys.executable, "-m", "greenlane.streams.cli", "retrain", "--verdict-json")
    verdict = None
    try:
        child = await asyncio.create_subprocess_exec(
            *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
        )
    except OSError as exc:
        log.error("scheduled retrain could not start: %s", exc)
        child = None
    if child is not None:
        try:
            output, _ = await asyncio.wait_for(child.communicate(), timeout_seconds)
        except TimeoutError:
            child.kill()
            await child.wait()
            log.error("scheduled retrain killed after %.0f s", timeout_seconds)
            output = b""
        for line in output.decode("utf-8", "replace").strip().splitlines():
            if line.startswith("{"):
                with contextlib.suppress(ValueError):
                    verdict = json.loads(line)
            log.info("retrain: %s", line)
    if child is None or child.returncode != 0 or not isinstance(verdict, dict):
        result = "failed"
    else:
        result = "promoted" if verdict.get("promoted") else "kept"
    metrics.RETRAINS.labels(result).inc()
    code = None if child is None else child.returncode
    log.warning("scheduled retrain: %s (exit code %s)", result, code)
    return result


def create_app(s: Settings | None = None) -> faust.App:
    """Build the worker app: one batch agent per filing topic, the feedback join, the tables."""
    s = s or settings()
    # one directory per application id: two apps on one machine never share a table file
    datadir = Path(os.path.expanduser(s.worker.data_dir)) / s.worker.app_id
    datadir.mkdir(parents=True, exist_ok=True)  # Faust creates only the last level
    app = faust.App(
        s.worker.app_id,
        broker=f"kafka://{s.bootstrap_servers}",
        broker_credentials=admin.broker_credentials(s),
        store=s.worker.table_store,
        datadir=str(datadir),
        web_enabled=False,
        topic_partitions=s.topics.partitions,
        topic_replication_factor=s.topics.replication_factor,
        # JSON keys for the tables' changelogs, sealed JSON values (runtime.state); the
        # filing topics below are read as raw bytes.
        key_serializer="json",
        value_serializer="json",
        consumer_auto_offset_reset="earliest",
        broker_max_poll_records=s.worker.batch_max,
        stream_buffer_maxsize=max(4096, 2 * s.worker.batch_max),
        table_cleanup_interval=60.0,
        # how soon the group gives a dead worker's partitions to the others
        broker_session_timeout=s.worker.session_timeout_seconds,
        table_standby_replicas=s.worker.standby_replicas,
    )
    rocksdb = {
        "block_cache_size": s.worker.rocksdb_block_cache_mb << 20,
        "write_buffer_size": s.worker.rocksdb_write_buffer_mb << 20,
        "max_write_buffer_number": 2,
    }

    def table(name: str) -> faust.Table:
        return sealed_table(
            app, name, default=None, partitions=s.topics.partitions, options=rocksdb
        )

    links = TableState(table(LINK_TABLE), by_filing_partition, movable=True)
    # pattern entries carry the partition whose traffic they count in their key (key@p): the
    # filing partition (value norms, carrier trends) or the seller's (split shipments, velocity)
    patterns = TableState(
        table(PATTERN_TABLE), by_key_partition(state_partition, s.topics.partitions)
    )
    # decision_id -> what the feedback join needs, until the inspection outcome arrives
    summaries = TableState(table(SUMMARY_TABLE), by_filing_partition)
    # decision_id of a filing -> the decisions it published: a redelivered filing is
    # republished as it was, not assessed again over state that already counts it
    replays = TableState(table(REPLAY_TABLE), by_filing_partition)
    # inspection-quota counts per destination and filing partition: they survive a restart
    # and move with their partition
    quotas = TableState(table(LANE_TABLE), by_filing_partition)
    tables = (links, patterns, summaries, replays, quotas)
    # Topics, schemas and configuration are ready before the first batch can arrive. The
    # topics (and the worker's ACLs) are the administrator's: `greenlane topics create`.
    admin.require_topics(s)
    registered = admin.register_schemas(s)
    fetch = admin.schema_fetcher(admin.registry_client(s, retries=0))
    decoders = {
        stage: WireDecoder(load_schema(schema_path(role)), fetch)
        for stage, role in STAGE_TOPIC_ROLE.items()
    }
    internal = {
        role: WireDecoder(load_schema(schema_path(role)), fetch) for role in (OBSERVATION, FINDING)
    }

    def on_reload(rules: TargetingRules | None, error: Exception | None) -> None:
        metrics.record_reload("targeting", error)
        if rules is not None:
            assessor.targeting_rules = rules
            metrics.PROFILE_INFO.info({"version": rules.version})

    rulebook = RuleBook(s.worker.targeting_path, s.worker.profile_check_seconds, on_reload)
    # the other settings sets that decide, each watched like the profiles (settings.watch)
    where = s.worker.settings_file

    def on_settings(name: str, loaded: Any, error: Exception | None) -> None:
        metrics.record_reload(name, error)
        if loaded is not None:
            assessor.reconfigure(**{SET_ARGUMENT[name]: loaded})
            sellers.settings = assessor.pattern_settings

    def watch(name: str, file: str, load: Callable[[Path], Any]) -> Watched:
        path = where(file)
        return Watched(
            name, lambda: [path], lambda: load(path), s.worker.profile_check_seconds, on_settings
        )

    sets = {
        "quality": watch("quality", "quality.toml", quality.load_quality_rules),
        "lanes": watch("lanes", "lanes.yaml", load_lane_settings),
        "revenue": watch("revenue", "revenue", load_revenue_settings),
        "patterns": watch("patterns", "patterns.yaml", load_pattern_settings),
    }

    def lists_at(path: Path) -> Any:  # branded goods are valued in the reference currency
        rules = sets["quality"].current
        return load_lists(path, rules.reference_rates, rules.reference_currency)

    sets["lists"] = watch("lists", "lists", lists_at)
    watchers = [rulebook, *sets.values()]

    def on_model(version: str, error: Exception | None) -> None:
        metrics.record_reload("model", error)
        if error is None:
            metrics.MODEL_INFO.info({"version": version})

    # the registry's current model, if any; swapped when promoted
    scorer = StreamScorer(on_reload=on_model)
    assessor = Assessor(
        sets["quality"].current,
        rulebook.current,
        decoders,
        revenue_settings=sets["revenue"].current,
        lanes=LaneAllocator(sets["lanes"].current, s.topics.partitions),
        pattern_settings=sets["patterns"].current,
        lists=sets["lists"].current,
        scorer=scorer,
        partitions=s.topics.partitions,
        finding_decoder=internal[FINDING],
    )
    sellers = PatternStage(assessor.pattern_settings, internal[OBSERVATION])
    metrics.PROFILE_INFO.info({"version": rulebook.current.version})
    metrics.BUILD_INFO.info({"version": package_version("greenlane")})
    metrics.MODEL_INFO.info({"version": scorer.version or "none"})
    publisher = Publisher(s, registered.ids)

    async def sweep(what: str, state: TableState, judge: Callable[[Overlay], object]) -> None:
        """Delete what ``judge`` (a pure stage function) deletes from the table, a piece at a
        time so the agents and the group heartbeat keep running; entries are judged again,
        as they are now, just before their deletion is committed and confirmed."""
        stale: set[str] = set()
        try:
            for piece in state.chunks(SWEEP_CHUNK):
                view = Overlay(piece)
                judge(view)
                stale.update(k for k, v in view.changes().items() if v is None)
                await asyncio.sleep(0)
        except Exception as exc:  # e.g. a partition revoked in the middle: the next sweep
            log.warning("%s: sweep of %s abandoned: %s", what, state.name, exc)
            return
        if not stale:
            return
        current = state.view()
        again = Overlay({k: v for k in stale if (v := current.get(k)) is not None})
        judge(again)
        final = Overlay(current)
        for key, value in again.changes().items():
            if value is None:
                del final[key]
        batch = publisher.begin()
        state.commit(final, batch)
        try:
            await (await batch.send())
        except Exception as exc:  # the entries are deleted locally; the changelog lags
            log.warning("%s: changelog of %s not confirmed: %s", what, state.name, exc)

    @app.timer(PATTERN_EXPIRY_SECONDS)
    async def expire_patterns() -> None:
        """Forget pattern state older than its window (tombstones in the changelog)."""
        now_ms = int(time.time() * 1000)
        await sweep(
            "pattern expiry",
            patterns,
            lambda view: expire_state(view, now_ms, assessor.pattern_settings),
        )

    @app.timer(RETENTION_SWEEP_SECONDS)
    async def forget_old_consignments() -> None:
        """Bounded tables: links, decision summaries and the replay log past their
        retention are deleted."""
        now_ms = int(time.time() * 1000)
        for state, field, days in (
            (links, "filed_at", s.worker.link_retention_days),
            (summaries, "filing_time", s.worker.summary_retention_days),
            (replays, "logged_at", s.worker.replay_log_minutes / 1440),
        ):
            older_than = now_ms - int(days * DAY_MS)
            await sweep(
                "retention",
                state,
                lambda view, field=field, older_than=older_than: forget_stale(
                    view, field, older_than
                ),
            )

    @app.timer(s.worker.profile_check_seconds)
    async def reload_settings() -> None:
        """Settings sets whose files changed are reloaded, on an idle worker too (the
        watchers check their files at most every profile_check_seconds)."""
        for watcher in watchers:
            watcher.refresh()

    @app.timer(TABLE_SIZE_SECONDS)
    async def export_table_sizes() -> None:
        for state in tables:
            entries, size = state.size()
            metrics.TABLE_ENTRIES.labels(state.name).set(entries)
            metrics.TABLE_BYTES.labels(state.name).set(size)

    @app.timer(DRIFT_EXPORT_SECONDS)
    async def export_drift() -> None:
        if scorer.monitor is not None and scorer.monitor.rows:
            metrics.export_drift(scorer.monitor)

    if s.worker.retrain_cron:

        @app.crontab(s.worker.retrain_cron, timezone=dt.UTC, on_leader=True)
        async def scheduled_retrain() -> None:
            """The worker settings' retraining schedule, run by the group's leader only."""
            await retrain_now(s.worker.retrain_timeout_minutes * 60)

    health = Health(s.worker.stall_seconds)
    started_up = asyncio.Event()  # the worker was ready once (its start-up heap frozen)
    assigned = threading.Event()  # the group has assigned partitions (none, perhaps) once
    agent_topics: set[str] = set()  # filled as the agents are declared
    rereads = offsets.Rereads(HOLE_RESEEK_SECONDS)

    async def mend_holes(ready: bool) -> None:
        """A partition whose commit waits behind a message no agent answered is read again
        from its committed offset (runtime.offsets: Faust can skip a message)."""
        found = offsets.holes(app.consumer) if ready else {}
        for tp, committed in rereads.due(found, time.monotonic()):
            log.warning(
                "%s[%s]: offset %s was never answered; reading the partition again from it",
                tp.topic,
                tp.partition,
                committed,
            )
            metrics.OFFSET_HOLES.labels(tp.topic).inc()
            await app.consumer.seek(tp, committed)

    lag = LagMonitor(Watermarks(partial(admin.lag_consumer, s), LAG_SAMPLE_SECONDS * 2))
    metrics.LAG_BOUND_SECONDS.set(s.worker.lag_alert_seconds)
    metrics.STALL_BOUND_SECONDS.set(s.worker.stall_seconds)

    @app.timer(LAG_SAMPLE_SECONDS)
    async def sample_lag() -> None:
        """Lag of this worker's agent partitions, from the broker (runtime.lag)."""
        try:
            owned = app.consumer.assignment()
        except Exception:  # not started yet, or stopping
            return
        mine = {(tp.topic, tp.partition) for tp in owned if tp.topic in agent_topics}
        await lag.sample(mine, answered_next(health.agents))

    @app.timer(HEALTH_BEAT_SECONDS)
    async def beat() -> None:
        """The loop's heartbeat for /live, with each agent topic's messages waiting."""
        if publisher.fatal is not None:
            await crash(RuntimeError(f"producer: {publisher.fatal}"))
            return
        waiting = lag.waiting(agent_topics)
        ready, _ = worker_ready(app, assigned.is_set())
        if ready and not started_up.is_set():
            started_up.set()
            freeze_start_up()
        health.beat(waiting, publisher.waiting_for_broker(), app.should_stop, recovering=not ready)
        await mend_holes(ready and not app.should_stop)

    @app.on_partitions_assigned.connect
    async def on_assigned(sender: Any, assigned_now: Any, **_: Any) -> None:
        assigned.set()  # the group has answered: from now on no partition means a spare

    @app.on_partitions_revoked.connect
    async def on_revoked(sender: Any, revoked: Any, **_: Any) -> None:
        metrics.REBALANCES.inc()
        forget_positions(health.agents)

    @app.task
    async def serve_metrics() -> None:
        watch_for_stop(app, s.worker.stop_timeout_seconds)
        metrics.serve(
            s.worker.metrics_host,
            s.worker.metrics_port,
            lambda: worker_ready(app, assigned.is_set()),
            health.live,
        )
        log.info(
            "greenlane worker started; metrics on http://%s:%s/metrics, readiness on /ready",
            s.worker.metrics_host,
            s.worker.metrics_port,
        )

    halted: set[str] = set()  # agents that failed: never to process (or acknowledge) again

    async def crash(exc: BaseException) -> None:
        """Stop the worker on a failure that retrying cannot mend (the watch_for_stop thread
        bounds the shutdown), so the group gives its partitions to a live worker and a
        supervisor restarts it."""
        await app.crash(exc)

    def run_agent(
        name: str,
        topic: Any,
        handle: Callable[[Sequence, Checkpoint], Awaitable[None]],
        within: float,
    ) -> Callable[[Any], Awaitable[None]]:
        """The body of every agent: micro-batches through ``handle``, each retried until it is
        done; an agent that fails anyway halts (Faust's supervisor would start it again on the
        same stream, past the batch it failed on) and stops the worker."""
        topic_name = topic.get_topic_name()
        agent_topics.add(topic_name)
        metrics.AGENT_FAILURES.labels(name)  # at zero from the start
        metrics.OFFSET_HOLES.labels(topic_name)
        metrics.AGENT_PROGRESS.labels(name, topic_name).set_to_current_time()

        async def agent(stream):
            if name in halted:  # restarted by the supervisor after a failure: do nothing
                log.error("%s: not restarted after its failure; the worker is stopping", name)
                await asyncio.Event().wait()
            progress = health.agent(name, topic_name)
            metrics.AGENT_PROGRESS.labels(name, topic_name).set_to_current_time()
            checkpoint = Checkpoint(
                offsets.answering(stream.ack), crash, name, s.worker.batches_in_flight
            )

            def give_up() -> bool:
                return app.should_stop or checkpoint.failed is not None

            try:
                async for events in stream.noack_take(s.worker.batch_max, within=within):
                    progress.taken_since = health.clock()
                    await retrying(
                        name,
                        partial(handle, events, checkpoint),
                        give_up,
                        s.worker.publish_retry_max_seconds,
                        progress,
                    )
                    progress.taken_since = None
            except asyncio.CancelledError:
                progress.ended = "cancelled"
                raise
            except BaseException as exc:
                halted.add(name)
                progress.ended = f"{type(exc).__name__}: {exc}"
                metrics.AGENT_FAILURES.labels(name).inc()
                log.exception("%s failed; stopping the worker so its batch is read again", name)
                await crash(exc)
                raise
            progress.ended = "its stream ended"

        return agent

    def done(
        progress_name: str, messages: list[InboundMessage], metered: Callable[[], None]
    ) -> Callable[[], None]:
        """What to do once a batch is confirmed: its metrics, and progress for /live."""
        highest: dict[int, int] = {}
        for m in messages:
            if m.offset > highest.get(m.partition, -1):
                highest[m.partition] = m.offset
        progress = health.agents[progress_name]
        heartbeat = metrics.AGENT_PROGRESS.labels(progress_name, progress.topic)

        def then() -> None:
            cpu = time.thread_time()
            metered()
            progress.progressed(health.clock(), highest)
            heartbeat.set_to_current_time()
            metrics.CPU_SECONDS.labels("metrics").inc(time.thread_time() - cpu)

        return then

    def batch_agent(
        role: str,
        name: str,
        label: str,
        used: Sequence[TableState],
        run: Callable[[list[InboundMessage], list[Overlay], int], BatchOutcome],
    ) -> None:
        """An agent over one topic: micro-batches through ``run`` (a pure batch core on
        overlays of the ``used`` tables), then commit, publish and checkpoint."""
        topic = app.topic(s.topics.name(role), key_serializer="raw", value_serializer="raw")
        consumed = metrics.MESSAGES_CONSUMED.labels(topic.get_topic_name())
        glue = "core other" if label in STAGE_TOPIC_ROLE else f"core {label}"

        async def handle(events: Sequence, checkpoint: Checkpoint) -> None:
            started = time.perf_counter()
            clock = assessor.stopwatch
            cpu = time.thread_time()
            messages = inbound(events)
            views = [Overlay(state.view()) for state in used]
            clock.add("faust events", time.thread_time() - cpu)
            spent = clock.take()
            cpu = time.thread_time()
            outcome = run(messages, views, int(time.time() * 1000))
            core = clock.take()  # the parts the core timed; the rest of it is its glue
            core[glue] = max(0.0, time.thread_time() - cpu - sum(core.values()))
            # Before the first await: the other agents must see these changes.
            batch = publisher.begin()
            with clock.part("state commit"):
                for state, view in zip(used, views, strict=True):
                    state.commit(view, batch)
            with clock.part("publish"):
                batch.outcome(outcome)
            confirmed = await batch.send()
            metrics.add_cpu(spent | core | clock.take())
            metered = partial(record_metrics, label, outcome, started, messages, consumed)
            await checkpoint.after(events, confirmed, done(name, messages, metered))

        agent = run_agent(name, topic, handle, s.worker.batch_within_seconds)
        agent.__name__ = name.replace(" ", "_").replace("-", "_")
        app.agent(topic, name=f"greenlane.{name.replace(' ', '.')}")(agent)

    def assess_stage(
        stage: str,
    ) -> Callable[[list[InboundMessage], list[Overlay], int], BatchOutcome]:
        def run(messages: list[InboundMessage], views: list[Overlay], now_ms: int) -> BatchOutcome:
            scorer.refresh()
            # every table for both stages: a pre-loading filing re-assesses its declaration
            # with the full engine (patterns read, summaries and lanes written)
            return assessor.assess_isolated(stage, messages, views[0], now_ms, *views[1:])

        return run

    for stage, role in STAGE_TOPIC_ROLE.items():
        batch_agent(role, f"assess {stage.lower()}", stage, tables, assess_stage(stage))

    def isolated(core: Callable[..., BatchOutcome]) -> Callable[..., BatchOutcome]:
        """An internal topic's batch core on (table, replay log) overlays, each message
        isolated: one that breaks it is dead-lettered alone."""

        def run(messages: list[InboundMessage], views: list[Overlay], now_ms: int) -> BatchOutcome:
            def on(batch: Sequence[InboundMessage], t: list) -> BatchOutcome:
                return core(batch, t[0], now_ms, t[1])

            return run_isolated(on, messages, views, None, now_ms)

        return run

    # the seller-keyed patterns (core.entities) and the amendments their findings make
    batch_agent(
        OBSERVATION,
        "patterns by-seller",
        OBSERVATION,
        (patterns, replays),
        isolated(sellers.assess),
    )

    def amend(messages: list[InboundMessage], views: list[Overlay], now_ms: int) -> BatchOutcome:
        return assessor.amend_isolated(messages, views[0], now_ms, *views[1:])

    batch_agent(FINDING, "patterns amend", FINDING, tables, amend)

    outcomes_topic = app.topic(
        s.topics.name("inspection_outcome"), key_serializer="raw", value_serializer="raw"
    )
    outcome_schema = load_schema(schema_path("inspection_outcome"))
    outcome_decoder = WireDecoder(outcome_schema, fetch)
    bounds = assessor.quality_rules.bounds
    outcome_within = compile_checker(outcome_schema, bounds)
    history = LabelledHistory()

    outcomes_consumed = metrics.MESSAGES_CONSUMED.labels(outcomes_topic.get_topic_name())

    async def join(events: Sequence, checkpoint: Checkpoint) -> None:
        """Officers' findings joined to their decisions: the model's labelled history."""
        consumed = outcomes_consumed
        loop = asyncio.get_running_loop()
        messages = inbound(events)
        now_ms = int(time.time() * 1000)
        outcomes, dead, source = [], [], {}
        sized = []
        for msg in messages:  # the same hard bounds as a filing's (quality.toml [bounds])
            why = message_problem(msg.key, msg.value, bounds)
            if why is None:
                sized.append(msg)
            else:
                dead.append(outcome_dead_letter(msg, OVERSIZED, why, now_ms))
        decoded = outcome_decoder.decode_batch([m.value for m in sized])
        for msg, item in zip(sized, decoded, strict=True):
            if not isinstance(item, dict):
                dead.append(outcome_dead_letter(msg, item.error_code, item.message, now_ms))
            elif (why := outcome_within(item, now_ms)) is not None:
                dead.append(outcome_dead_letter(msg, OUT_OF_BOUNDS, why, now_ms))
            else:
                outcomes.append(item)
                source[id(item)] = msg
        rows, unmatched = join_outcomes(outcomes, summaries.view(), assessor.rates)
        for u in unmatched:
            msg = source[id(u["outcome"])]
            dead.append(outcome_dead_letter(msg, f"OUTCOME_{u['reason']}", u["detail"], now_ms))
        if rows:  # Parquet part files: off the event loop
            await loop.run_in_executor(None, history.append, rows)
        batch = publisher.begin()
        batch.outcome(BatchOutcome(dead_letters=dead))
        confirmed = await batch.send()
        metered = partial(record_outcome_metrics, consumed, len(events), len(rows), dead)
        await checkpoint.after(events, confirmed, done(OUTCOMES_AGENT, messages, metered))

    app.agent(outcomes_topic, name="greenlane.feedback.outcomes")(
        run_agent(OUTCOMES_AGENT, outcomes_topic, join, 1.0)
    )
    offsets.guard(agent_topics)  # only answered offsets are committed on them
    statuses = next(
        f["type"]["symbols"]
        for f in load_schema(schema_path("carrier_response"))["fields"]
        if f["name"] == "status"
    )
    metrics.initialise_known_labels(
        STAGES,
        tuple(ROUTE_TOPIC_ROLE),
        ("targeting", *SET_ARGUMENT),
        sorted(agent_topics),
        statuses,
        sorted(load_agencies(s.worker.targeting_path)),
        (
            UNDECODABLE,
            UNKNOWN_SCHEMA_ID,
            WRONG_SCHEMA,
            OVERSIZED,
            OUT_OF_BOUNDS,
            UNUSABLE_RECORD,
            ASSESSMENT_FAILED,
            OUTPUT_UNPUBLISHABLE,
        ),
    )
    return app
