"""Hostile input against the running worker: thousands of generated and mutated messages
interleaved with valid filings, and one of every input class that once crashed or stalled it.

Afterwards every input has exactly one first decision or one dead letter, every dead-lettered
filing's carrier was answered, and no agent failed or restarted.
"""

from __future__ import annotations

import random
import struct
from collections import Counter

import pytest
from confluent_kafka import Producer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from greenlane.streams.devtools.progress import scrape, total
from greenlane.streams.runtime import admin
from greenlane.streams.runtime.serde import WireEncoder, load_schema
from greenlane.streams.settings import schema_path
from tests.factories import NOW_MS, item, pre_arrival, pre_loading
from tests.integration.conftest import Harness, wait_until
from tests.integration.test_worker import DECISIONS, arrival, waybills

pytestmark = pytest.mark.integration

STAGE_ROLES = ("pre_loading", "pre_arrival")
GENERATED = 1500  # per stage, from the schemas
MUTATED = 1500  # byte-level mutations of valid payloads
VALID = 300


@pytest.fixture(scope="module")
def harness_env_extra() -> str:
    return "batch_max = 500\n"


# --- generating records from the Avro schemas -----------------------------------------------

TEXT = st.one_of(
    st.text(max_size=20),
    st.text(min_size=90, max_size=1200),
    st.sampled_from(["", " ", "DE", "CN", "EUR", "610910", "85.18.30", "gift", "\x00", "🦀" * 50]),
)
NUMBER = st.floats(allow_nan=True, allow_infinity=True, allow_subnormal=True)
TIMESTAMP = st.one_of(
    st.integers(NOW_MS - 10 * 3_600_000, NOW_MS + 40 * 3_600_000),
    st.integers(-(2**63), 2**63 - 1),
    st.sampled_from([0, 253_402_300_800_000, -62_135_596_800_001]),
)


def from_schema(schema, names: dict | None = None, field: str = ""):
    """A hypothesis strategy of records a writer of ``schema`` could send."""
    names = {} if names is None else names
    if isinstance(schema, list):
        return st.one_of(*(from_schema(b, names, field) for b in schema))
    if isinstance(schema, str):
        if schema in names:
            return from_schema(names[schema], names, field)
        return {
            "null": st.none(),
            "string": TEXT,
            "int": st.integers(-(2**31), 2**31 - 1),
            "long": st.integers(-(2**63), 2**63 - 1),
            "double": NUMBER,
            "boolean": st.booleans(),
        }[schema]
    kind = schema["type"]
    if isinstance(kind, dict | list):
        return TIMESTAMP if "timestamp" in str(kind) else from_schema(kind, names, field)
    if schema.get("logicalType", "").startswith("timestamp"):
        return TIMESTAMP
    if kind == "record":
        names[schema["name"]] = schema
        fields = {f["name"]: from_schema(f["type"], names, f["name"]) for f in schema["fields"]}
        return st.fixed_dictionaries(fields)
    if kind == "enum":
        names[schema["name"]] = schema
        return st.sampled_from(schema["symbols"])
    if kind == "array":
        return st.lists(from_schema(schema["items"], names, field), max_size=4)
    return from_schema(kind, names, field)


def perturbed(stage_record: dict) -> st.SearchStrategy:
    """A valid filing with a few of its fields replaced by generated values."""
    scalar = {
        k: v for k, v in stage_record.items() if isinstance(v, str | int | float) or v is None
    }
    keys = sorted(scalar)

    def apply(changes: dict) -> dict:
        return stage_record | changes

    values = st.one_of(TEXT, NUMBER.map(lambda x: x), TIMESTAMP)
    return st.dictionaries(st.sampled_from(keys), values, max_size=3).map(apply)


def generate(strategy, n: int, seed: int) -> list:
    found: list = []

    @settings(
        max_examples=n,
        database=None,
        deadline=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def collect(value) -> None:
        found.append(value)

    random.seed(seed)
    collect()
    return found


def encodable(encoder: WireEncoder, record: dict) -> bytes | None:
    try:
        return encoder.encode(record)
    except Exception:  # a type the writer could not have sent (a float in an int field)
        return None


def mutate(value: bytes, rng: random.Random) -> bytes:
    """One byte-level mutation of a valid wire-format payload."""
    data = bytearray(value)
    op = rng.randrange(7)
    if op == 0:  # flip some bytes of the body
        for _ in range(rng.randint(1, 8)):
            i = rng.randrange(5, len(data))
            data[i] ^= 1 << rng.randrange(8)
    elif op == 1:  # truncate
        del data[rng.randrange(1, len(data)) :]
    elif op == 2:  # garbage appended
        data += rng.randbytes(rng.randint(1, 64))
    elif op == 3:  # another schema id, up to unsigned 32 bits
        data[1:5] = struct.pack(">I", rng.choice([0, 1, 2**31, 2**32 - 1, rng.getrandbits(32)]))
    elif op == 4:  # not the magic byte
        data[0] = rng.randint(1, 255)
    elif op == 5:  # a length prefix made huge
        i = rng.randrange(5, len(data))
        data[i] = 0xFE
        data[i + 1 : i + 1] = b"\xff\xff\xff\x0f"
    else:  # bytes inserted in the middle
        i = rng.randrange(5, len(data))
        data[i:i] = rng.randbytes(rng.randint(1, 16))
    return bytes(data)


# --- sending and reading --------------------------------------------------------------------


def send_raw(harness: Harness, messages: list[tuple[str, bytes | None, bytes]]) -> None:
    producer = Producer(
        {
            **harness.settings.as_admin(),
            "linger.ms": 5,
            "compression.type": "lz4",
            "message.max.bytes": 8_000_000,
        }
    )
    for role, key, value in messages:
        topic = harness.settings.topics.name(role)
        while True:
            try:
                producer.produce(topic, value, key)
                break
            except BufferError:
                producer.poll(0.1)
    assert producer.flush(60) == 0


def answered(harness: Harness, inputs: int) -> tuple[Counter, list[dict], list[dict], set[str]]:
    """Read the answers to filings (first filings and amendments, not re-assessments) and
    dead letters until every filing offset has one; returns the answers per source, the
    carrier responses, the filings' dead letters and the house waybills decided."""
    filing_topics = {harness.settings.topics.name(r) for r in STAGE_ROLES}

    def source(r: dict) -> tuple[str, int, int]:
        return r["source_topic"], r["source_partition"], r["source_offset"]

    def first_answers(records: list[dict]) -> Counter:
        return Counter(
            source(r)
            for r in records
            if r.get("source_topic") in filing_topics
            and r.get("revision_cause", "FILING") in ("FILING", "AMENDMENT")
        )

    def complete(rs: list[dict]) -> bool:
        """Every filing offset answered, and every dead letter's REJECTED response read too
        (they are on different topics: one read may see a batch's dead letters first)."""
        if len(first_answers(rs)) < inputs:
            return False
        dead = sum(1 for r in rs if "error_code" in r and r["source_topic"] in filing_topics)
        return sum(1 for r in rs if r.get("status") == "REJECTED") >= dead

    records = harness.read([*DECISIONS, "dead_letter", "carrier_response"], complete, timeout=900)
    responses = [r for r in records if "response_id" in r]
    dead = [r for r in records if "error_code" in r and r["source_topic"] in filing_topics]
    decided = {r["house_waybill"] for r in records if "route" in r}
    return first_answers(records), responses, dead, decided


def no_agent_failed(harness: Harness) -> None:
    samples = scrape(harness.metrics_url)
    assert total(samples, "greenlane_agent_failures_total") == 0
    assert harness.worker.process.poll() is None, "the worker is still running"
    log = harness.log.read_text()
    assert "Crashed reason" not in log and "failed; stopping the worker" not in log


# --- the tests -------------------------------------------------------------------------------


def test_every_known_hostile_input_class_is_answered_and_valid_filings_decided(harness):
    ids = admin.register_schemas(harness.settings).ids
    enc = {r: WireEncoder(load_schema(schema_path(r)), ids[r]) for r in STAGE_ROLES}
    valid = waybills(4)
    norm = [arrival(f"N{w}", items=[item(value=20.0 + i)]) for i, w in enumerate(waybills(40))]
    body = enc["pre_arrival"].encode(pre_arrival("H-ID"))[5:]
    hostile: list[tuple[str, bytes | None, bytes, str]] = [
        ("pre_arrival", b"H-ID", struct.pack(">bI", 0, 2**31 + 5) + body, "UNKNOWN_SCHEMA_ID"),
        (
            "pre_arrival",
            b"H-Y10K",
            enc["pre_arrival"].encode(
                pre_arrival("H-Y10K", expected_arrival_time=253_402_300_800_000)
            ),
            "OUT_OF_BOUNDS",
        ),
        (
            "pre_loading",
            b"H-Y10K-PL",
            enc["pre_loading"].encode(pre_loading("H-Y10K-PL", filing_time=253_402_300_800_000)),
            "OUT_OF_BOUNDS",
        ),
        (
            "pre_arrival",
            b"H-SUB",
            enc["pre_arrival"].encode(arrival("H-SUB", items=[item(value=5e-324)])),
            "OUT_OF_BOUNDS",
        ),
        ("pre_arrival", b"H-1MB", b"\x00\x00\x00\x00\x01" + b"\xfe" * 1_000_000, "OVERSIZED"),
        (
            "pre_arrival",
            b"H-WAYBILL",
            enc["pre_arrival"].encode(pre_arrival("W" * 600_000)),
            "OVERSIZED",
        ),
        (
            "pre_arrival",
            b"H-TEXT",
            enc["pre_arrival"].encode(arrival("H-TEXT", items=[item(description="ü" * 600_000)])),
            "OVERSIZED",
        ),
        (
            "pre_arrival",
            b"H-5MB",
            enc["pre_arrival"].encode(arrival("H-5MB", items=[item(description="ab" * 2_500_000)])),
            "OVERSIZED",
        ),
        (
            "pre_arrival",
            b"H-WORD",
            enc["pre_arrival"].encode(arrival("H-WORD", items=[item(description="q" * 400_000)])),
            "OVERSIZED",
        ),
        (
            "pre_arrival",
            b"H-WORD25K",
            enc["pre_arrival"].encode(arrival("H-WORD25K", items=[item(description="q" * 25_000)])),
            "OUT_OF_BOUNDS",
        ),
        (
            "pre_loading",
            b"K" * 600_000,
            enc["pre_loading"].encode(pre_loading("H-KEY")),
            "OVERSIZED",
        ),
    ]
    before = harness.filing_offsets()
    harness.send("pre_arrival", norm)  # a value norm exists for the subnormal value to meet
    send_raw(harness, [(role, key, value) for role, key, value, _ in hostile])
    harness.send("pre_arrival", [arrival(w) for w in valid])
    inputs = harness.filing_offsets()
    assert inputs == before + len(norm) + len(hostile) + len(valid)

    first, responses, dead, decided = answered(harness, inputs)
    assert all(n == 1 for n in first.values()), "exactly one first answer per input"
    codes = Counter(d["error_code"] for d in dead)
    assert codes == Counter(code for *_, code in hostile)
    for d in dead:
        assert len(d["original_value"] or b"") <= harness.settings.worker.dead_letter_keep_bytes
        assert d["original_value_bytes"] >= len(d["original_value"] or b"")
    rejected = [r for r in responses if r["status"] == "REJECTED"]
    assert len(rejected) == len(hostile)
    assert set(valid) <= decided
    no_agent_failed(harness)


def test_fuzzed_messages_interleaved_with_valid_filings_are_each_answered_once(harness):
    ids = admin.register_schemas(harness.settings).ids
    enc = {r: WireEncoder(load_schema(schema_path(r)), ids[r]) for r in STAGE_ROLES}
    rng = random.Random(8)
    generated: list[tuple[str, bytes | None, bytes]] = []
    for n, role in enumerate(STAGE_ROLES):
        schema = load_schema(schema_path(role))
        base = pre_loading() if role == "pre_loading" else pre_arrival()
        records = generate(from_schema(schema), GENERATED // 2, seed=n) + generate(
            perturbed(base), GENERATED // 2, seed=10 + n
        )
        for r in records:
            value = encodable(enc[role], r)
            if value is not None:
                key = rng.choice(
                    [None, b"", rng.randbytes(8), str(r.get("house_waybill"))[:50].encode()]
                )
                generated.append((role, key, value))
    valid_waybills = waybills(VALID)
    valid = [
        ("pre_loading", w.encode(), enc["pre_loading"].encode(pre_loading(w)))
        if i % 2
        else ("pre_arrival", w.encode(), enc["pre_arrival"].encode(arrival(w)))
        for i, w in enumerate(valid_waybills)
    ]
    mutated = [
        (role, key, mutate(value, rng)) for role, key, value in rng.choices(valid, k=MUTATED)
    ]
    # the same bytes twice are one filing sent twice (answered again as it was, at the first
    # copy's offset): each message here is distinct
    seen: set[bytes] = {value for _, _, value in valid}
    stream = []
    for m in generated + mutated:
        if m[2] not in seen:
            seen.add(m[2])
            stream.append(m)
    rng.shuffle(stream)
    # valid filings spread through the hostile stream, and some after it
    every = max(1, len(stream) // (len(valid) - 20))
    mixed: list[tuple[str, bytes | None, bytes]] = []
    pending = list(valid)
    for i, m in enumerate(stream):
        mixed.append(m)
        if i % every == 0 and len(pending) > 20:
            mixed.append(pending.pop())
    mixed += pending

    before = harness.filing_offsets()
    send_raw(harness, mixed)
    inputs = harness.filing_offsets()
    assert inputs - before == len(mixed) >= 3000

    first, responses, dead, decided = answered(harness, inputs)
    assert all(n == 1 for n in first.values()), [s for s, n in first.items() if n > 1][:5]
    assert len(first) == inputs
    assert set(valid_waybills) <= decided, "every valid filing decided"
    rejected = sum(1 for r in responses if r["status"] == "REJECTED")
    assert rejected == len(dead), "every dead-lettered filing's carrier answered"
    no_agent_failed(harness)
    wait_until(
        lambda: total(scrape(harness.metrics_url), "greenlane_worker_live") == 1,
        "the worker to report itself live",
    )
