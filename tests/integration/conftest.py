"""A real worker against the real broker and registry (started by `make test`).

Each module gets its own topic prefix and consumer group, so tests never see each other's
messages, and its own worker process, stopped when the module is done.
"""

from __future__ import annotations

import os
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from greenlane.streams.devtools.launcher import WorkerNotReady, WorkerProcess, free_port
from greenlane.streams.runtime import admin
from greenlane.streams.runtime.serde import WireDecoder, load_schema
from greenlane.streams.settings import Settings, load_settings, schema_path

pytestmark = pytest.mark.integration


RAW_IDLE_POLLS = 240  # of 0.5 s each, in a row, before Harness.raw_records gives up


class ReadTimeout(AssertionError):
    """`Harness.read` gave up; ``records`` holds what it had read (for a diagnosis)."""

    def __init__(self, message: str, records: list[dict]) -> None:
        super().__init__(message)
        self.records = records


def wait_until(condition, what: str, give_up_after: float = 600) -> None:
    """Poll until ``condition``; the bound only keeps a broken worker from hanging the suite
    (it is no speed requirement: a loaded machine just waits longer)."""
    deadline = time.monotonic() + give_up_after
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what}")
        time.sleep(0.2)


@dataclass
class Harness:
    settings: Settings
    env: dict[str, str]
    metrics_url: str
    producer: Producer
    log: Path
    worker: WorkerProcess | None = None

    def start_worker(self) -> None:
        """Start the module's worker process and wait until it says it is ready (/ready)."""
        self.worker = self.spawn(metrics_url=self.metrics_url)

    def spawn(self, *args: str, metrics_url: str | None = None) -> WorkerProcess:
        """A ready worker process of this module's app; extra CLI arguments (another
        --data-dir and --metrics-port) make a second worker in the same group."""
        worker = WorkerProcess(
            self.log, self.env, ("--quiet", *args), metrics_url or self.metrics_url
        ).start()
        try:
            worker.wait_ready()
        except WorkerNotReady as exc:
            worker.kill9()
            pytest.fail(str(exc))
        return worker

    def stop_worker(self) -> None:
        if self.worker is None:
            return
        self.worker.stop()
        self.worker = None

    def send(
        self,
        role: str,
        records: list[dict],
        key_of: Callable[[dict], bytes | None] = lambda r: r["house_waybill"].encode(),
    ) -> None:
        """Produce records the way a carrier does: Confluent's Avro serializer, keyed by
        waybill (``key_of``: another key, or None for none)."""
        topic = self.settings.topics.name(role)
        ser = AvroSerializer(
            admin.registry_client(self.settings),
            schema_path(role).read_text(),
            conf={"auto.register.schemas": False, "use.latest.version": True},
        )
        ctx = SerializationContext(topic, MessageField.VALUE)
        for r in records:
            self.producer.produce(topic, ser(r, ctx), key_of(r))
        assert self.producer.flush(30) == 0

    def filing_offsets(self) -> int:
        """How many offsets the two filing topics hold in all (earlier tests' included)."""
        return sum(self.filing_ends().values())

    def filing_ends(self) -> dict[tuple[str, int], int]:
        """The end offset of each filing topic partition."""
        c = Consumer({**self.settings.as_admin(), "group.id": "it-ends"})
        try:
            ends = {}
            for role in ("pre_loading", "pre_arrival"):
                topic = self.settings.topics.name(role)
                for p in c.list_topics(topic, timeout=30).topics[topic].partitions:
                    tp = TopicPartition(topic, p)
                    ends[(topic, p)] = c.get_watermark_offsets(tp, timeout=30)[1]
            return ends
        finally:
            c.close()

    def raw_records(self, topics: list[str]) -> list[tuple[str, int, int, bytes, bytes]]:
        """Every record (topic, partition, offset, key, value) of these topics, read from the
        start to the end each partition has now."""
        c = Consumer(
            {
                **self.settings.as_admin(),
                "group.id": f"it-raw-{uuid.uuid4().hex}",
                "enable.auto.commit": False,
            }
        )
        out: list[tuple[str, int, int, bytes, bytes]] = []
        try:
            for topic in topics:
                for partition in c.list_topics(topic, timeout=30).topics[topic].partitions:
                    end = c.get_watermark_offsets(TopicPartition(topic, partition), timeout=30)[1]
                    if end == 0:
                        continue
                    c.assign([TopicPartition(topic, partition, 0)])
                    offset = -1
                    idle = 0  # polls in a row that brought nothing: a stalled read, not a slow one
                    while offset < end - 1:
                        # short polls: consume() waits out its timeout unless it gets all 1000
                        batch = c.consume(1000, timeout=0.5)
                        idle = 0 if batch else idle + 1
                        if idle >= RAW_IDLE_POLLS:
                            raise ReadTimeout(f"{topic}[{partition}]: not read to {end}", [])
                        for m in batch:
                            if not m.error():
                                offset = m.offset()
                                out.append(
                                    (topic, partition, offset, m.key() or b"", m.value() or b"")
                                )
        finally:
            c.close()
        return out

    def refiled(self) -> dict[tuple[str, int, int], tuple[str, int, int]]:
        """Filing offsets whose bytes repeat an earlier offset of their partition, each mapped
        to the first copy. A carrier's producer without idempotence writes such a copy when
        the broker stored a batch but went away before acknowledging it; greenlane answers
        the copy by republishing the first copy's decision (the replay log), so that decision
        answers both offsets."""
        filings = [self.settings.topics.name(r) for r in ("pre_loading", "pre_arrival")]
        first: dict[tuple[str, int, bytes], int] = {}
        copies: dict[tuple[str, int, int], tuple[str, int, int]] = {}
        for topic, partition, offset, _key, value in self.raw_records(filings):
            seen = first.setdefault((topic, partition, value), offset)
            if seen != offset:
                copies[(topic, partition, offset)] = (topic, partition, seen)
        return copies

    def committed(self) -> dict[tuple[str, int], int]:
        """The worker group's committed offset of each filing topic partition."""
        c = Consumer(
            {
                **self.settings.as_admin(),
                "group.id": self.settings.worker.app_id,
            }
        )
        try:
            tps = [TopicPartition(t, p) for t, p in self.filing_ends()]
            return {(tp.topic, tp.partition): tp.offset for tp in c.committed(tps, timeout=30)}
        finally:
            c.close()

    def send_raw(self, role: str, key: bytes, value: bytes) -> None:
        self.producer.produce(self.settings.topics.name(role), value, key)
        assert self.producer.flush(30) == 0

    def read(
        self, roles: list[str], until: Callable[[list[dict]], bool], timeout: float = 60.0
    ) -> list[dict]:
        """Decoded records of the given output topics, read from the start until `until`."""
        fetch = admin.schema_fetcher(admin.registry_client(self.settings))

        def topic_and_schema(role: str) -> tuple[str, str]:
            if role.startswith("referral:"):  # referral:<agency>: copies of decisions
                return self.settings.topics.referral(role.split(":", 1)[1]), "release"
            return self.settings.topics.name(role), role

        decoders = {
            topic: WireDecoder(load_schema(schema_path(schema)), fetch)
            for topic, schema in map(topic_and_schema, roles)
        }
        c = Consumer(
            {
                **self.settings.as_admin(),
                "group.id": f"it-reader-{uuid.uuid4().hex}",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
            }
        )
        c.subscribe(list(decoders))
        out: list[dict] = []
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                for m in c.consume(500, timeout=0.5):
                    if m.error():
                        continue
                    [rec] = decoders[m.topic()].decode_batch([m.value()])
                    assert isinstance(rec, dict), rec
                    rec["_topic"] = m.topic()
                    rec["_key"] = m.key()
                    rec["_timestamp_ms"] = m.timestamp()[1]
                    out.append(rec)
                if until(out):
                    return out
        finally:
            c.close()
        raise ReadTimeout(f"timed out after {timeout}s with {len(out)} records", out)


@pytest.fixture(scope="module")
def harness_env_extra() -> str:
    """Extra [worker] settings for a module's worker (modules override this fixture)."""
    return ""


@contextmanager
def open_harness(
    tmp_path_factory, env_extra: str = "", partitions: int = 2, start: bool = True
) -> Iterator[Harness]:
    """Topics of a fresh prefix, an app id of their own and (``start``) a ready worker;
    the worker is stopped and the topics deleted afterwards."""
    run = uuid.uuid4().hex[:8]
    port = free_port()
    settings_file = tmp_path_factory.mktemp("settings") / "it.toml"
    settings_file.write_text(
        f'[worker]\napp_id = "greenlane-it-{run}"\nmetrics_port = {port}\n'
        f'data_dir = "{tmp_path_factory.mktemp("worker")}"\nbatch_within_seconds = 0.05\n'
        f"{env_extra}"
        f"[topics]\npartitions = {partitions}\n"
    )
    env = dict(
        os.environ,
        GREENLANE_TOPIC_PREFIX=f"it-{run}.",
        GREENLANE_SETTINGS=str(settings_file),
        # a registry of the module's own: rules only unless the module promotes a model
        GREENLANE_MODEL_REGISTRY=str(tmp_path_factory.mktemp("models")),
        GREENLANE_HISTORY=str(tmp_path_factory.mktemp("history")),
    )
    s = load_settings(env=env)
    admin.prepare(s, progress=lambda m: None)
    log = Path(tmp_path_factory.mktemp("logs")) / "worker.log"
    producer = Producer({**s.as_admin(), "linger.ms": 1})
    h = Harness(s, env, f"http://127.0.0.1:{port}/metrics", producer, log)
    try:
        if start:
            h.start_worker()
        yield h
    finally:
        h.stop_worker()
        producer.flush(10)
        for failure in admin.delete_run(s, s.worker.app_id):
            warnings.warn(f"left on the broker: {failure}", stacklevel=1)


@pytest.fixture(scope="module")
def harness(tmp_path_factory, harness_env_extra: str) -> Iterator[Harness]:
    with open_harness(tmp_path_factory, harness_env_extra) as h:
        yield h
