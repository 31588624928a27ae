"""Prometheus metrics of the worker (greenlane_ prefix, base units, no per-shipment labels)."""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Callable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    Counter,
    Gauge,
    Histogram,
    Info,
    generate_latest,
)

MESSAGES_CONSUMED = Counter(
    "greenlane_messages_consumed", "Messages read from the filing topics.", ["topic"]
)
DECISIONS = Counter(
    "greenlane_decisions",
    "Risk decisions published, by filing stage and route.",
    ["stage", "route"],
)
REPLAYED_DECISIONS = Counter(
    "greenlane_replayed_decisions",
    "Decisions republished from the replay log for a redelivered filing (not assessed again).",
    ["stage"],
)
DEAD_LETTERS = Counter(
    "greenlane_dead_letters",
    "Messages set aside on the dead-letter topic, by error code.",
    ["error_code"],
)
QUALITY_FINDINGS = Counter(
    "greenlane_quality_findings", "Data-quality findings (Standard 3), by finding code.", ["code"]
)
REFERRALS = Counter(
    "greenlane_referrals", "Decisions copied to a partner agency (Standard 11).", ["agency"]
)
RANDOM_PICKS = Counter(
    "greenlane_random_picks", "Consignments selected at random for inspection (exploration)."
)
CARRIER_RESPONSES = Counter(
    "greenlane_carrier_responses", "Responses sent to carriers, by status.", ["status"]
)
BATCH_SIZE = Histogram(
    "greenlane_batch_size",
    "Messages per micro-batch handed to the batch core.",
    ["stage"],
    buckets=(1, 10, 50, 100, 250, 500, 1000, 2000, 5000, 10000),
)
BATCH_SECONDS = Histogram(
    "greenlane_batch_processing_seconds",
    "Time to decode, assess, publish and confirm one micro-batch.",
    ["stage"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
DECISION_LATENCY = Histogram(
    "greenlane_decision_latency_seconds",
    "From the filing's Kafka record timestamp to its decision confirmed by the broker.",
    ["stage"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
)
PATTERN_AMENDMENT_LATENCY = Histogram(
    "greenlane_pattern_amendment_latency_seconds",
    "From the Kafka timestamp of the declaration that completed a seller-keyed pattern (split "
    "shipment, seller velocity) to the amended decision confirmed: the cost of the re-keying "
    "hops.",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
)
PATTERN_FINDINGS = Counter(
    "greenlane_pattern_findings",
    "Seller-keyed pattern findings: sent back to a house waybill's partition, and there "
    "amended (a new revision) or not applied (link gone, or already amended for the pattern).",
    ["result"],
)


PRODUCER_ERRORS = Counter(
    "greenlane_producer_errors",
    "Client-level errors of the worker's producer (broker down or unreachable, fatal), by name.",
    ["error"],
)
PUBLISH_WAITS = Counter(
    "greenlane_publish_waits",
    "Times a batch had waited another notice period for the broker to confirm it (each one a "
    "log line); rising while the broker is away.",
)
PUBLISH_RETRIES = Counter(
    "greenlane_publish_retries",
    "Records the broker refused and the worker produced again, by step (changelog, outputs).",
    ["step"],
)
UNPUBLISHABLE_OUTPUTS = Counter(
    "greenlane_unpublishable_outputs",
    "Outputs too large or not encodable, dead-lettered (OUTPUT_UNPUBLISHABLE) instead.",
)
BATCH_RETRIES = Counter(
    "greenlane_batch_retries",
    "Batches an agent could not finish (a dependency unavailable, an unforeseen error) and "
    "tried again after a pause, by agent and error type; nothing is acknowledged meanwhile.",
    ["agent", "error"],
)
AGENT_FAILURES = Counter(
    "greenlane_agent_failures",
    "Agents that stopped on an error (the worker then halts its processing and exits so the "
    "batch is read again); should stay 0.",
    ["agent"],
)
WORKER_LIVE = Gauge(
    "greenlane_worker_live",
    "1 while every agent is running and none has stalled with messages waiting; 0 otherwise "
    "(what /live answers).",
)
WORKER_READY = Gauge(
    "greenlane_worker_ready",
    "1 once the worker has partitions assigned and its tables recovered, and is not "
    "rebalancing; 0 otherwise (what /ready answers).",
)
CONSUMER_LAG = Gauge(
    "greenlane_consumer_lag",
    "Filings on this worker's partitions of a topic its group has not committed: the high "
    "watermark minus the committed offset, both read from the broker.",
    ["topic", "partition"],
)
CONSUMER_LAG_SECONDS = Gauge(
    "greenlane_consumer_lag_seconds",
    "How long the oldest filing on the partition not yet decided here has been on the broker "
    "(read off watermark samples, runtime.lag); 0 when none waits.",
    ["topic", "partition"],
)
LAG_BOUND_SECONDS = Gauge(
    "greenlane_consumer_lag_bound_seconds",
    "The lag the worker settings allow ([worker] lag_alert_seconds): GreenlaneConsumerLagHigh "
    "fires while greenlane_consumer_lag_seconds is above it.",
)
STALL_BOUND_SECONDS = Gauge(
    "greenlane_stall_bound_seconds",
    "How long an agent may go without finishing a batch while filings wait ([worker] "
    "stall_seconds): /live and GreenlaneWorkerStalled judge by it.",
)
AGENT_PROGRESS = Gauge(
    "greenlane_agent_last_progress_timestamp_seconds",
    "When the agent last finished a batch (its outputs confirmed): the progress heartbeat.",
    ["agent", "topic"],
)
OFFSET_HOLES = Counter(
    "greenlane_offset_holes",
    "Partitions read again because a message below their answered offsets was skipped by the "
    "stream framework and never answered (runtime.offsets); nothing is committed past one.",
    ["topic"],
)
OFFSET_COMMITS = Counter(
    "greenlane_offset_commits",
    "Offset commits of the worker's consumer, by result: committed, or failed (refused after a "
    "rebalance, which the new owner reads again, or an error, which stops the worker).",
    ["result"],
)
REBALANCES = Counter(
    "greenlane_rebalances",
    "Consumer group rebalances this worker took part in (its partitions revoked, then assigned).",
)
UNCONFIRMED_BATCHES = Gauge(
    "greenlane_unconfirmed_batches",
    "Batches published and not yet confirmed by the broker.",
)


SETTINGS_RELOADS = Counter(
    "greenlane_settings_reloads",
    "Reloads of a settings set (targeting, lists, lanes, revenue, quality, patterns), by result.",
    ["settings", "result"],
)
OUTCOMES = Counter(
    "greenlane_inspection_outcomes",
    "Inspection outcomes: joined to their decision (labelled history) or dead-lettered.",
    ["result"],
)
RETRAINS = Counter(
    "greenlane_scheduled_retrains",
    "Scheduled retraining runs (worker retrain_cron), by result: promoted, kept or failed.",
    ["result"],
)
RELOAD_REFUSED = Gauge(
    "greenlane_reload_refused",
    "1 while the worker refuses what it was given for a settings set (targeting, quality, "
    "lanes, revenue, patterns, lists) or the registry's current model, and keeps the last good "
    "one in force; 0 once what it was given loads.",
    ["what"],
)
MODEL_RELOADS = Counter(
    "greenlane_model_reloads",
    "Risk models the worker took from the registry (loaded) or could not load and kept the one "
    "in force instead (refused: once per model version).",
    ["result"],
)
MODEL_SCORE = Histogram(
    "greenlane_model_score",
    "Risk model probabilities of the scored pre-arrival declarations.",
    buckets=(0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0),
)
MODEL_FEATURE_PSI = Gauge(
    "greenlane_model_feature_psi",
    "Population stability index of a model feature, live traffic against the training window "
    "(0.1: watch, 0.25: act).",
    ["feature"],
)
MODEL_SCORE_PSI = Gauge(
    "greenlane_model_score_psi",
    "Population stability index of the model's scores against the training window.",
)
TABLE_ENTRIES = Gauge(
    "greenlane_table_entries",
    "Entries in a worker table on this worker's partitions (RocksDB: its estimate).",
    ["table"],
)
TABLE_BYTES = Gauge(
    "greenlane_table_bytes",
    "Size of a worker table on this worker's partitions (RocksDB: live data and memtables).",
    ["table"],
)
CPU_SECONDS = Counter(
    "greenlane_cpu_seconds",
    "CPU seconds of the worker's event-loop thread by part of the work (decode, each stage of "
    "the batch core, the model, state commit, publishing, metrics); process_cpu_seconds_total "
    "less their sum is Faust, the Kafka clients and the rest.",
    ["part"],
)
GC_PAUSE = Histogram(
    "greenlane_gc_pause_seconds",
    "Pauses of Python's cyclic garbage collector, by generation.",
    ["generation"],
    buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5),
)
GC_PAUSE_MAX = Gauge(
    "greenlane_gc_pause_max_seconds",
    "The longest garbage-collector pause since the worker started, by generation.",
    ["generation"],
)
BUILD_INFO = Info("greenlane_build", "The greenlane release the worker runs.")
MODEL_INFO = Info("greenlane_risk_model", "The risk model version in force (none: rules only).")
PROFILE_INFO = Info("greenlane_targeting_profiles", "The targeting profile set in force.")


LOADED, REFUSED = "loaded", "refused"  # the results of a reload


def record_reload(what: str, error: Exception | None) -> None:
    """A settings set (targeting, quality, lanes, ...) or the model (``what`` = "model")
    loaded, or refused with ``error``: counted, and greenlane_reload_refused set to match."""
    result = REFUSED if error is not None else LOADED
    if what == "model":
        MODEL_RELOADS.labels(result).inc()
    else:
        SETTINGS_RELOADS.labels(what, result).inc()
    RELOAD_REFUSED.labels(what).set(1 if error is not None else 0)


def add_cpu(spent: dict[str, float]) -> None:
    """A batch's CPU seconds by part (domain.stopwatch), added to greenlane_cpu_seconds."""
    for part, seconds in spent.items():
        CPU_SECONDS.labels(part).inc(seconds)


def initialise_known_labels(
    stages: Sequence[str],
    routes: Sequence[str],
    settings_sets: Sequence[str],
    topics: Sequence[str],
    statuses: Sequence[str],
    agencies: Sequence[str] = (),
    error_codes: Sequence[str] = (),
) -> None:
    """Every counter series whose label values are known in advance, at zero from the start:
    a series that only appears with its first event hides that event from ``increase()`` and
    ``rate()`` (dashboards and alerts then miss the first refused reload, say). Counts already
    made are kept."""
    for stage in stages:
        REPLAYED_DECISIONS.labels(stage)
        for route in routes:
            DECISIONS.labels(stage, route)
    for name in settings_sets:
        RELOAD_REFUSED.labels(name)
        for result in (LOADED, REFUSED):
            SETTINGS_RELOADS.labels(name, result)
    RELOAD_REFUSED.labels("model")
    for topic in topics:
        MESSAGES_CONSUMED.labels(topic)
    for status in statuses:
        CARRIER_RESPONSES.labels(status)
    for agency in agencies:
        REFERRALS.labels(agency)
    for code in error_codes:
        DEAD_LETTERS.labels(code)
    for result in ("joined", "dead_lettered"):
        OUTCOMES.labels(result)
    for result in ("promoted", "kept", "failed"):
        RETRAINS.labels(result)
    for result in ("amended", "unapplied"):
        PATTERN_FINDINGS.labels(result)
    for step in ("changelog", "outputs"):
        PUBLISH_RETRIES.labels(step)
    for result in ("committed", "failed"):
        OFFSET_COMMITS.labels(result)
    for result in (LOADED, REFUSED):
        MODEL_RELOADS.labels(result)


def watch_gc() -> None:
    """Time every garbage-collector pause into greenlane_gc_pause_seconds (once per process)."""
    if any(getattr(cb, "greenlane", False) for cb in gc.callbacks):
        return
    started: list[float] = [0.0]
    longest: dict[int, float] = {}

    def on_gc(phase: str, info: dict) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
            return
        pause = time.perf_counter() - started[0]
        generation = info["generation"]
        GC_PAUSE.labels(str(generation)).observe(pause)
        if pause > longest.get(generation, 0.0):
            longest[generation] = pause
            GC_PAUSE_MAX.labels(str(generation)).set(pause)

    on_gc.greenlane = True  # type: ignore[attr-defined]
    gc.callbacks.append(on_gc)


def export_drift(monitor) -> None:
    """Publish a models.drift.DriftMonitor's figures (called now and then, not per batch)."""
    for feature, value in monitor.psi().items():
        MODEL_FEATURE_PSI.labels(feature).set(value)
    MODEL_SCORE_PSI.set(monitor.score_psi())


Readiness = Callable[[], tuple[bool, str]]


def serve(
    host: str, port: int, ready: Readiness | None = None, live: Readiness | None = None
) -> ThreadingHTTPServer | None:
    """Serve /metrics, /ready and /live on a daemon thread (each probe: 200 when its callable
    says so, else 503 with the reason); port 0 leaves the endpoint off."""
    if live is not None:
        WORKER_LIVE.set_function(lambda: 1.0 if live()[0] else 0.0)
    if ready is not None:
        WORKER_READY.set_function(lambda: 1.0 if ready()[0] else 0.0)
    if not port:
        return None

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._reply(200, generate_latest(REGISTRY), CONTENT_TYPE_LATEST)
            elif path == "/ready":
                ok, why = ready() if ready is not None else (True, "ready")
                self._reply(200 if ok else 503, f"{why}\n".encode())
            elif path == "/live":
                ok, why = live() if live is not None else (True, "alive")
                self._reply(200 if ok else 503, f"{why}\n".encode())
            else:
                self._reply(404, b"try /metrics, /ready or /live\n")

        def _reply(self, code: int, body: bytes, kind: str = "text/plain; charset=utf-8") -> None:
            self.send_response(code)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args) -> None:  # scrapes are not worth a log line each
            pass

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="greenlane-metrics", daemon=True).start()
    return server
