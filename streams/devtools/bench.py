"""`greenlane bench`: pipeline throughput, cost and latency against the physical limit, in one run.

1. Preload a backlog of simulated filings on fresh bench topics.
2. Bare loop: one confluent-kafka consumer + fastavro decode/re-encode + producer forwarding the
   backlog, nothing else: what Python and Kafka allow on this machine; then the Faust ceiling.
3. One worker: a real `greenlane worker` drains the same backlog; throughput is the carrier
   responses produced (one per filing) over the span between the first and the last one. Its
   /metrics, scraped before and after, give the CPU per filing by part of the work.
4. Latency: the worker stays up while filings arrive at a steady rate (1,000/s, then half the
   measured throughput), from handing a filing to the producer to receiving its carrier
   response, with the collector's pauses of each phase. Split shipments woven into that
   traffic measure the re-keying hops: from handing over the parcel that completes a group to
   receiving the amended response of each member.
5. Restart-to-ready on the same table directory, and resident memory.
6. N workers in one consumer group drain a second copy of the backlog (Kafka's scale-out).
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from confluent_kafka import Consumer, Producer, TopicPartition

from greenlane.streams.core.entities import FINDING, OBSERVATION
from greenlane.streams.devtools import infra
from greenlane.streams.devtools.bench_core import core_costs
from greenlane.streams.devtools.launcher import WorkerProcess, free_port
from greenlane.streams.devtools.progress import scrape, total
from greenlane.streams.devtools.simulator import CarrierSimulator, generate
from greenlane.streams.runtime import admin
from greenlane.streams.runtime.serde import WireDecoder, WireEncoder, load_schema
from greenlane.streams.settings import Settings, load_settings, schema_path
from greenlane.streams.stages.revenue import load_revenue_settings


def _percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    i = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[i]


def _consumer(s: Settings, group: str) -> Consumer:
    return Consumer(
        {
            **s.as_admin(),
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "fetch.max.bytes": 64 * 1024 * 1024,
        }
    )


def _end_offsets(s: Settings, topics: list[str]) -> dict[tuple[str, int], int]:
    c = _consumer(s, f"bench-probe-{uuid.uuid4().hex}")
    try:
        md = c.list_topics(timeout=10)
        out = {}
        for t in topics:
            for p in md.topics[t].partitions:
                out[(t, p)] = c.get_watermark_offsets(TopicPartition(t, p), timeout=10)[1]
        return out
    finally:
        c.close()


def wait_settled(s: Settings, group: str, timeout: float) -> float:
    """Seconds until the worker group has committed every record of the internal topics
    (seller-keyed patterns and their amendments: work left after the last first decision)."""
    topics = [s.topics.name(role) for role in (OBSERVATION, FINDING)]
    c = _consumer(s, group)  # reads the group's committed offsets, never commits
    started = time.monotonic()
    try:
        while time.monotonic() - started < timeout:
            ends = _end_offsets(s, topics)
            committed = c.committed([TopicPartition(t, p) for t, p in ends], timeout=10)
            behind = sum(
                max(0, ends[(tp.topic, tp.partition)] - max(tp.offset, 0)) for tp in committed
            )
            if behind == 0:
                return time.monotonic() - started
            time.sleep(0.5)
        raise RuntimeError(f"the internal topics were not drained within {timeout:.0f} s")
    finally:
        c.close()


def bare_loop(s: Settings, registered: dict[str, int], expected: int) -> dict:
    """Decode, re-encode and forward every filing with nothing but confluent-kafka + fastavro."""
    fetch = admin.schema_fetcher(admin.registry_client(s))
    roles = ("pre_loading", "pre_arrival")
    decoders = {s.topics.name(r): WireDecoder(load_schema(schema_path(r)), fetch) for r in roles}
    encoders = {
        s.topics.name(r): WireEncoder(load_schema(schema_path(r)), registered[r]) for r in roles
    }
    forward = s.topics.name("dead_letter") + ".bare-forward"  # auto-created on first produce
    consumer = _consumer(s, f"bench-bare-{uuid.uuid4().hex}")
    consumer.subscribe([s.topics.name(r) for r in roles])
    producer = Producer(
        {
            **s.as_admin(),
            "linger.ms": 5,
            "compression.type": "lz4",
            "queue.buffering.max.messages": 1_000_000,
        }
    )
    seen = 0
    started = None
    while seen < expected:
        batch = consumer.consume(5000, timeout=1.0)
        if not batch:
            continue
        if started is None:
            started = time.perf_counter()
        by_topic: dict[str, list] = {}
        for m in batch:
            by_topic.setdefault(m.topic(), []).append(m)
        for topic, msgs in by_topic.items():
            decoded = decoders[topic].decode_batch([m.value() for m in msgs])
            encode = encoders[topic].encode
            for m, rec in zip(msgs, decoded, strict=True):
                value = encode(rec) if isinstance(rec, dict) else m.value()
                while True:
                    try:
                        producer.produce(forward, value, m.key())
                        break
                    except BufferError:
                        producer.poll(0.01)
            producer.poll(0)
        seen += len(batch)
    producer.flush(60)
    elapsed = time.perf_counter() - started
    consumer.close()
    return {
        "messages": seen,
        "seconds": round(elapsed, 3),
        "throughput_per_s": round(seen / elapsed, 1),
    }


def faust_ceiling(
    s: Settings, expected: int, batch_max: int, run_id: str, handoff: str = "take_events"
) -> dict:
    """Run devtools.faust_ceiling on the backlog (a fresh consumer group); its figures.
    ``handoff``: ``take_events`` (Faust's API, the ceiling) or ``bulk`` (the experiment that
    takes everything already queued for the agent in one step)."""
    topics = [s.topics.name("pre_loading"), s.topics.name("pre_arrival")]
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "greenlane.streams.devtools.faust_ceiling",
            s.bootstrap_servers,
            f"greenlane-bench-ceiling-{run_id}-{handoff}",
            str(expected),
            str(batch_max),
            "0.1",
            *topics,
        ],
        capture_output=True,
        text=True,
        timeout=900,
        env=dict(os.environ, GREENLANE_CEILING_HANDOFF=handoff),
    )
    for line in out.stdout.splitlines():
        if line.startswith("{"):
            return json.loads(line)
    raise RuntimeError(f"the Faust ceiling run printed no result: {out.stderr[-2000:]}")


def _worker_settings_file(s: Settings, app_id: str, metrics_port: int, overrides: str) -> Path:
    """A bench worker's settings (its app id, port and ``overrides``); on a secured broker
    the worker principal gets its ACLs for that app id, as `greenlane topics create` grants
    them for the configured one."""
    admin.grant_worker(replace(s, worker=replace(s.worker, app_id=app_id)))
    ours = f'app_id = "{app_id}"\nmetrics_port = {metrics_port}\n'  # tables: --data-dir
    if "[worker]" in overrides:
        text = overrides.replace("[worker]", "[worker]\n" + ours, 1)
    else:
        text = "[worker]\n" + ours + overrides
    fd, name = tempfile.mkstemp(prefix="greenlane-bench-", suffix=".toml")
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    return Path(name)


def _drain_responses(
    s: Settings, expected: int, timeout: float, workers: list[WorkerProcess]
) -> tuple[int, float, float]:
    """Count carrier responses until `expected`; return (count, first ts, last ts) in seconds."""
    c = _consumer(s, f"bench-responses-{uuid.uuid4().hex}")
    c.subscribe([s.topics.name("carrier_response")])
    count, first, last = 0, None, 0.0
    deadline = time.monotonic() + timeout
    try:
        while count < expected and time.monotonic() < deadline:
            for worker in workers:
                if (code := worker.exited()) is not None:
                    raise RuntimeError(f"a worker exited with {code} during the bench")
            for m in c.consume(10000, timeout=0.5):
                if m.error():
                    continue
                ts = m.timestamp()[1] / 1000
                first = ts if first is None else min(first, ts)
                last = max(last, ts)
                count += 1
    finally:
        c.close()
    return count, first or 0.0, last


SPLIT_GROUP_EVERY = 250  # filings between two split-shipment groups in the latency phase
SPLIT_PARCELS = 3
SPLIT_VALUE_EUR = 60.0  # three of them: over the EU's 150 EUR, each under it


def _split_group(base: dict, n: int) -> list[dict]:
    """Three parcels of 60 EUR from one seller to one consignee, cloned from a simulated
    declaration to the EU: a split shipment the worker flags with amendments."""
    parcels = []
    for k in range(SPLIT_PARCELS):
        waybill = f"SPLIT{n:05d}{k}{base['house_waybill'][-6:]}"
        item = dict(base["items"][0], value=SPLIT_VALUE_EUR, currency="EUR")
        parcels.append(dict(base, house_waybill=waybill, message_id=f"PA-{waybill}", items=[item]))
    return parcels


def _latency_phase(
    s: Settings, registered: dict[str, int], rate: float, seconds: float, seed: int
) -> dict:
    """Steady load: time from producing a filing to receiving its carrier response, and from
    completing a split shipment to the amended responses of its members."""
    encoders = {
        r: WireEncoder(load_schema(schema_path(r)), registered[r])
        for r in ("pre_loading", "pre_arrival")
    }
    euro_destinations = {
        country
        for country, adm in load_revenue_settings().by_country.items()
        if adm.currency == "EUR"
    }
    payloads: list[tuple[str, bytes, bytes, str, list[str] | None]] = []
    groups = 0
    since_group = 0
    for f in generate(int(rate * seconds), seed=seed, risky_share=0.05, invalid_share=0.0):
        if f.value is None:
            continue
        value = encoders[f.role].encode(f.value)
        payloads.append((s.topics.name(f.role), f.key, value, f.value["message_id"], None))
        since_group += 1
        if (
            since_group >= SPLIT_GROUP_EVERY
            and f.role == "pre_arrival"
            and f.value["destination_country"] in euro_destinations
        ):
            parcels = _split_group(f.value, groups)
            members = [p["message_id"] for p in parcels]
            topic = s.topics.name("pre_arrival")
            for k, p in enumerate(parcels):
                completes = members if k == len(parcels) - 1 else None
                encoded = encoders["pre_arrival"].encode(p)
                payloads.append(
                    (topic, p["house_waybill"].encode(), encoded, members[k], completes)
                )
            groups += 1
            since_group = 0
    topic = s.topics.name("carrier_response")
    consumer = _consumer(s, f"bench-latency-{uuid.uuid4().hex}")
    consumer.assign(
        [TopicPartition(topic, p, offset) for (_, p), offset in _end_offsets(s, [topic]).items()]
    )
    decoder = WireDecoder(
        load_schema(schema_path("carrier_response")), admin.schema_fetcher(admin.registry_client(s))
    )
    producer = Producer({**s.as_admin(), "linger.ms": 1})
    sent_at: dict[str, float] = {}
    completed_at: dict[str, float] = {}  # split-group member -> when its group was complete
    answered: set[str] = set()
    latencies: list[float] = []
    amendments: list[float] = []
    started = time.perf_counter()
    deadline = started + seconds + 30
    i = 0
    while (i < len(payloads) or sent_at or completed_at) and time.perf_counter() < deadline:
        due = min(len(payloads), int((time.perf_counter() - started) * rate) + 1)
        while i < due:
            topic_name, key, value, message_id, completes = payloads[i]
            producer.produce(topic_name, value, key)
            sent_at[message_id] = time.perf_counter()
            for member in completes or ():
                completed_at[member] = sent_at[message_id]
            i += 1
        producer.poll(0)
        msgs = consumer.consume(1000, timeout=0.002)
        now = time.perf_counter()
        for r in decoder.decode_batch([m.value() for m in msgs if not m.error()]):
            if not isinstance(r, dict):
                continue
            message_id = r["message_id"]
            if message_id in sent_at:
                latencies.append(now - sent_at.pop(message_id))
                answered.add(message_id)
            elif message_id in completed_at and message_id in answered:  # the amendment
                amendments.append(now - completed_at.pop(message_id))
    producer.flush(10)
    consumer.close()
    latencies.sort()
    amendments.sort()
    return {
        "rate_per_s": rate,
        "filings": len(payloads),
        "answered": len(latencies),
        "p50_ms": round(1000 * _percentile(latencies, 0.50), 1),
        "p95_ms": round(1000 * _percentile(latencies, 0.95), 1),
        "p99_ms": round(1000 * _percentile(latencies, 0.99), 1),
        # split shipments found on the seller's partition, amended on the waybill's
        "split_groups": groups,
        "amendments": len(amendments),
        "amendment_p50_ms": round(1000 * _percentile(amendments, 0.50), 1),
        "amendment_p95_ms": round(1000 * _percentile(amendments, 0.95), 1),
    }


def _delete_topics(s: Settings, app_id: str) -> None:
    for failure in admin.delete_run(s, app_id):  # leftovers are harmless; say so and go on
        print(f"could not delete a bench topic or group: {failure}", file=sys.stderr)


PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_mb(pid: int) -> float | None:
    """Resident set size of a live process, from /proc (None once it has gone)."""
    try:
        pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return None
    return pages * PAGE / 2**20


class MemorySampler:
    """Peak and last resident memory of one process, sampled on a thread."""

    def __init__(self, pid: int, every: float = 0.5) -> None:
        self.pid, self.every = pid, every
        self.peak = self.last = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            value = rss_mb(self.pid)
            if value is not None:
                self.last = value
                self.peak = max(self.peak, value)
            self._stop.wait(self.every)

    def stop(self) -> dict:
        self._stop.set()
        self._thread.join()
        return {"peak_rss_mb": round(self.peak, 1), "last_rss_mb": round(self.last, 1)}


def cpu_by_part(before: dict, after: dict, filings: int) -> dict:
    """µs of CPU per filing by part of the work, from two scrapes of one worker: its
    event-loop thread's parts (greenlane_cpu_seconds) and the whole process; ``faust and
    the rest`` is the process less the parts (Faust, aiokafka, librdkafka's threads, timers)."""

    def per_filing(seconds: float) -> float:
        return round(1e6 * seconds / max(filings, 1), 1)

    parts = {}
    for labels, value in after.get("greenlane_cpu_seconds_total", {}).items():
        spent = value - before.get("greenlane_cpu_seconds_total", {}).get(labels, 0.0)
        parts[dict(labels)["part"]] = spent
    process = total(after, "process_cpu_seconds_total") - total(before, "process_cpu_seconds_total")
    figures = {part: per_filing(v) for part, v in sorted(parts.items(), key=lambda kv: -kv[1])}
    figures["faust and the rest"] = per_filing(max(0.0, process - sum(parts.values())))
    figures["process_total"] = per_filing(process)
    return figures


def gc_pauses(before: dict, after: dict, over_seconds: float = 0.02) -> dict:
    """The collector's pauses between two scrapes, by generation: how many, how many longer
    than ``over_seconds``, and the bucket bound of the longest (greenlane_gc_pause_seconds)."""
    out: dict[str, dict] = {}
    counts: dict[str, dict[float, float]] = {}
    for labels, value in after.get("greenlane_gc_pause_seconds_bucket", {}).items():
        tags = dict(labels)
        bound = float("inf") if tags["le"] == "+Inf" else float(tags["le"])
        earlier = before.get("greenlane_gc_pause_seconds_bucket", {}).get(labels, 0.0)
        counts.setdefault(tags["generation"], {})[bound] = value - earlier
    for generation, buckets in sorted(counts.items()):
        n = buckets[float("inf")]
        within = max((c for b, c in buckets.items() if b <= over_seconds), default=0.0)
        longest = min((b for b, c in buckets.items() if c >= n), default=float("inf"))
        out[f"gen{generation}"] = {
            "pauses": int(n),
            f"over_{over_seconds * 1000:g}_ms": int(n - within),
            "longest_ms_at_most": None if not n or longest == float("inf") else longest * 1000,
        }
    return out


def process_cpu_seconds(pid: int | None) -> float | None:
    """User and system CPU seconds of a process so far (None: no such process or no /proc)."""
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class BrokerCpu:
    """How many cores the local broker used over a phase: on a machine whose cores the broker
    shares with the workers, what is left for them."""

    def __init__(self, s: Settings, clock: Callable[[], float] = time.monotonic) -> None:
        self.pid = infra.local_pid(s, infra.KAFKA)
        self.clock = clock
        self.started = (process_cpu_seconds(self.pid), clock())

    def cores(self) -> float | None:
        cpu, began = self.started
        now = process_cpu_seconds(self.pid)
        if cpu is None or now is None:
            return None
        return round((now - cpu) / max(self.clock() - began, 1e-3), 2)


class Workers:
    """N ``greenlane worker`` processes in one consumer group on one set of bench topics, each
    with its own table directory (as on separate machines) and metrics port."""

    def __init__(self, s: Settings, env: dict, app_id: str, n: int, args: argparse.Namespace):
        self.s, self.app_id = s, app_id
        self.ports = [free_port() for _ in range(n)]
        self.data_dirs = [tempfile.mkdtemp(prefix=f"greenlane-bench-w{i}-") for i in range(n)]
        self.log = Path(tempfile.gettempdir()) / f"{app_id}-worker.log"
        self.flags = ("--quiet", *(("--no-uvloop",) if args.no_uvloop else ()))
        self.settings_file = _worker_settings_file(
            s, app_id, 0, args.worker_settings.replace("\\n", "\n")
        )
        self.env = dict(env, GREENLANE_SETTINGS=str(self.settings_file))
        self.processes = [self._process(i) for i in range(n)]

    def _process(self, i: int) -> WorkerProcess:
        args = (*self.flags, "--data-dir", self.data_dirs[i], "--metrics-port", str(self.ports[i]))
        return WorkerProcess(self.log, self.env, args, self.url(i))

    def url(self, i: int = 0) -> str:
        return f"http://127.0.0.1:{self.ports[i]}/metrics"

    def start(self) -> float:
        """Start them all; seconds until every one answered /ready."""
        started = time.monotonic()
        for w in self.processes:
            w.start()
        for w in self.processes:
            w.wait_ready(600)
        return time.monotonic() - started

    def drain(self, expected: int) -> dict:
        """Throughput over the backlog: carrier responses (one per filing) between the first
        and the last, and until the internal topics are committed too."""
        count, first, last = _drain_responses(
            self.s, expected, timeout=1800, workers=self.processes
        )
        span = max(last - first, 1e-3)
        # the last first decision is out; the seller-keyed patterns may still be catching up
        wait_settled(self.s, self.app_id, timeout=1800)
        settled = max(span, time.time() - first)
        return {
            "filings": count,
            "seconds": round(span, 3),
            "throughput_per_s": round(count / span, 1),
            # every amendment of the backlog done too (internal topics committed)
            "settled_seconds": round(settled, 3),
            "settled_throughput_per_s": round(count / settled, 1),
        }

    def restart(self) -> float:
        """Stop the first worker (SIGTERM) and start it again on its table directory; seconds
        from the new process to its /ready (partitions assigned, tables recovered)."""
        self.processes[0].stop(60)
        self.processes[0] = self._process(0)
        self.processes[0].start()
        return self.processes[0].wait_ready(600)

    def stop(self) -> None:
        for w in self.processes:
            w.stop()
        self.settings_file.unlink(missing_ok=True)
        for data_dir in self.data_dirs:
            shutil.rmtree(data_dir, ignore_errors=True)


def _bench_topics(run_id: str, args: argparse.Namespace) -> tuple[Settings, dict, dict]:
    """Settings and environment for one set of fresh bench topics; their schema ids."""
    env = dict(os.environ, GREENLANE_TOPIC_PREFIX=f"bench-{run_id}.")
    s = load_settings(env=env)
    return s, env, admin.prepare(s, partitions=args.partitions, progress=lambda m: None).ids


def _preload(s: Settings, args: argparse.Namespace, log: Callable[[str], None]) -> int:
    """The backlog on the filing topics; how many offsets they hold."""
    log(f"preloading {args.count:,} filings…")
    t0 = time.perf_counter()
    report = CarrierSimulator(s).send(
        generate(args.count, seed=args.seed, risky_share=0.05, invalid_share=0.01)
    )
    log(f"  preloaded in {time.perf_counter() - t0:.1f} s: {report}")
    return sum(
        _end_offsets(s, [s.topics.name("pre_loading"), s.topics.name("pre_arrival")]).values()
    )


def main(args: argparse.Namespace) -> int:
    run_id = uuid.uuid4().hex[:8]
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    s, env, registered = _bench_topics(run_id, args)
    log(f"bench {run_id}: topics bench-{run_id}.*, {args.partitions} partitions")
    log("batch core, stage by stage (in-process, 20,000 simulated filings)…")
    core = core_costs()
    log(f"  {core}")
    expected = _preload(s, args, log)

    log("bare loop (confluent-kafka + fastavro decode/encode/forward)…")
    bare = bare_loop(s, registered, expected)
    log(f"  {bare}")

    log("Faust ceiling (an agent that only takes batches of raw events)…")
    ceiling = faust_ceiling(s, expected, args.ceiling_batch_max, run_id)
    log(f"  {ceiling}")
    log("the same, taking everything already queued for the agent in one step…")
    bulk = faust_ceiling(s, expected, args.ceiling_batch_max, run_id, "bulk")
    log(f"  {bulk}")

    log("one greenlane worker draining the backlog…")
    one = Workers(s, env, f"greenlane-bench-{run_id}", 1, args)
    try:
        ready = one.start()
        memory = MemorySampler(one.processes[0].pid)
        before = scrape(one.url())
        broker = BrokerCpu(s)
        pipeline = one.drain(expected)
        pipeline["broker_cores"] = broker.cores()
        after = scrape(one.url())
        pipeline["first_start_ready_seconds"] = round(ready, 2)
        pipeline["cpu_us_per_filing"] = cpu_by_part(before, after, expected)
        pipeline["memory"] = memory.stop()
        log(f"  {pipeline}")
        capacity = pipeline["throughput_per_s"]
        latency = {}
        for name, rate in (
            ("fixed_rate", args.latency_rate),
            ("half_capacity", max(100.0, round(0.5 * capacity, -2))),
        ):
            log(f"latency at a steady {rate:,.0f} filings/s for {args.latency_seconds:g} s…")
            before = scrape(one.url())
            latency[name] = _latency_phase(
                s, registered, rate, args.latency_seconds, args.seed + 1 + len(latency)
            )
            latency[name]["gc"] = gc_pauses(before, scrape(one.url()))
            log(f"  {latency[name]}")
        pipeline["latency"] = latency
        log("restarting the worker on its table directory…")
        pipeline["restart_ready_seconds"] = round(one.restart(), 2)
        time.sleep(5)
        pipeline["rss_mb_after_restart"] = round(rss_mb(one.processes[0].pid) or 0.0, 1)
        log(f"  ready in {pipeline['restart_ready_seconds']} s")
    finally:
        one.stop()
        if not args.keep_topics:
            _delete_topics(s, f"greenlane-bench-{run_id}")

    scaled = None
    if args.workers > 1:
        log(f"{args.workers} workers in one consumer group draining the same backlog…")
        s2, env2, _ = _bench_topics(f"{run_id}-{args.workers}w", args)
        app_id = f"greenlane-bench-{run_id}-{args.workers}w"
        group = Workers(s2, env2, app_id, args.workers, args)
        try:
            _preload(s2, args, log)
            group.start()
            broker = BrokerCpu(s2)
            scaled = group.drain(expected)
            scaled["broker_cores"] = broker.cores()
            scaled["workers"] = args.workers
            scaled["scaling"] = round(scaled["throughput_per_s"] / capacity, 3)
            log(f"  {scaled}")
        finally:
            group.stop()
            if not args.keep_topics:
                _delete_topics(s2, app_id)
    result = {
        "backlog_filings": expected,
        "partitions": args.partitions,
        "uvloop": not args.no_uvloop,
        "pipeline": pipeline,
        "workers": scaled,
        "bare_loop": bare,
        "faust_ceiling": ceiling,
        # the per-event hand-off measured: what a bulk take would save over take_events
        "faust_bulk_handoff": bulk,
        # µs per filing of each stage of the batch core, in-process (no Kafka, no model)
        "core_us_per_filing": core,
        "ratio": round(capacity / bare["throughput_per_s"], 3),
        "ratio_to_faust_ceiling": round(capacity / ceiling["throughput_per_s"], 3),
        "worker_log": str(one.log),
    }
    print(json.dumps(result))
    return 0
