"""Hostile and broken input, one class at a time: each is dead-lettered with a reason and its
carrier answered, the valid filings of the same batch are decided, nothing raises."""

from __future__ import annotations

import struct

import pytest

from greenlane.streams.core.outcomes import dead_letter_record
from greenlane.streams.domain.batch import InboundMessage, ServiceUnavailable
from greenlane.streams.domain.vocabulary import PRE_ARRIVAL, PRE_LOADING
from greenlane.streams.runtime.serde import WireDecoder, WireEncoder, load_schema
from greenlane.streams.settings import schema_path
from greenlane.streams.stages import watchlists
from greenlane.streams.stages.bounds import OUT_OF_BOUNDS, OVERSIZED
from tests.factories import HOUR_MS, NOW_MS, item, party, pre_arrival, pre_loading
from tests.streams.core.wire import IDS, SCHEMAS, TOPIC, messages

YEAR_10000_MS = 253_402_300_800_000


def encode(stage: str, record: dict) -> bytes:
    return WireEncoder(SCHEMAS[stage], IDS[stage]).encode(record)


def with_valid(stage: str, hostile: list[InboundMessage]) -> list[InboundMessage]:
    valid = pre_arrival("VALID-1") if stage == PRE_ARRIVAL else pre_loading("VALID-1")
    return [*hostile, *messages(stage, [valid], start_offset=len(hostile))]


def assess(assessor, stage: str, hostile: list[InboundMessage]):
    arrival = {} if stage == PRE_ARRIVAL else None
    batch = with_valid(stage, hostile)
    out = assessor.assess_isolated(stage, batch, {}, NOW_MS, arrival, arrival, {}, {})
    assert [d["house_waybill"] for d in out.decisions] == ["VALID-1"]
    rejected = [r for _, r in out.responses if r["status"] == "REJECTED"]
    assert len(rejected) == len(hostile) == len(out.dead_letters)
    return out


def msg(stage: str, value: bytes, key: bytes = b"HWB", offset: int = 0) -> InboundMessage:
    return InboundMessage(key, value, TOPIC[stage], 0, offset, NOW_MS)


def codes(out) -> list[str]:
    return [dl["error_code"] for _, dl in out.dead_letters]


def test_a_schema_id_beyond_signed_32_bits_is_dead_lettered_and_encodable(assessor) -> None:
    body = encode(PRE_ARRIVAL, pre_arrival())[5:]
    value = struct.pack(">bI", 0, 2**32 - 1) + body
    out = assess(assessor, PRE_ARRIVAL, [msg(PRE_ARRIVAL, value)])
    [(_, dead)] = out.dead_letters
    assert dead["schema_id"] == 2**32 - 1
    WireEncoder(load_schema(schema_path("dead_letter")), 1).encode(dead)  # no OverflowError


@pytest.mark.parametrize(
    ("stage", "field", "value"),
    [
        (PRE_ARRIVAL, "expected_arrival_time", YEAR_10000_MS),
        (PRE_ARRIVAL, "filing_time", -62_135_596_800_001),  # before year 1
        (PRE_LOADING, "planned_loading_time", YEAR_10000_MS),
        (PRE_LOADING, "filing_time", NOW_MS - 400 * 24 * HOUR_MS),
    ],
)
def test_timestamps_outside_the_plausible_window(assessor, stage, field, value) -> None:
    base = pre_arrival("H1") if stage == PRE_ARRIVAL else pre_loading("H1")
    out = assess(assessor, stage, [msg(stage, encode(stage, base | {field: value}))])
    assert codes(out) == [OUT_OF_BOUNDS]
    assert out.dead_letters[0][1]["error_message"].startswith(f"{field}: {value} (epoch ms)")


@pytest.mark.parametrize("value", [5e-324, float("nan"), float("inf"), -1e300])
def test_amounts_that_no_filing_carries(assessor, value) -> None:
    # a value norm for the HS code and origin exists: the undervaluation pattern would run
    patterns: dict = {}
    learn = [pre_arrival(f"N{i}", items=[item(value=20.0 + i)]) for i in range(40)]
    assessor.assess(PRE_ARRIVAL, messages(PRE_ARRIVAL, learn), {}, NOW_MS, patterns, {})
    assert any(k.startswith("norm:") for k in patterns)
    hostile = pre_arrival("H1", items=[item(value=value)])
    batch = with_valid(PRE_ARRIVAL, [msg(PRE_ARRIVAL, encode(PRE_ARRIVAL, hostile))])
    out = assessor.assess_isolated(PRE_ARRIVAL, batch, {}, NOW_MS, patterns, {}, {}, {})
    assert codes(out) == [OUT_OF_BOUNDS]
    assert out.dead_letters[0][1]["error_message"].startswith("items[0].value:")
    assert [d["house_waybill"] for d in out.decisions] == ["VALID-1"]


def test_a_message_larger_than_the_bound_is_not_even_decoded(assessor, monkeypatch) -> None:
    huge = b"\x00\x00\x00\x00\x02" + b"x" * 1_000_000  # ~1 MB undecodable
    waybill = encode(PRE_ARRIVAL, pre_arrival("W" * 600_000))  # a 600 KB house waybill
    text = encode(PRE_ARRIVAL, pre_arrival("H2", items=[item(description="ü" * 600_000)]))
    out = assess(
        assessor,
        PRE_ARRIVAL,
        [
            msg(PRE_ARRIVAL, huge),
            msg(PRE_ARRIVAL, waybill, offset=1),
            msg(PRE_ARRIVAL, text, offset=2),
        ],
    )
    assert codes(out) == [OVERSIZED] * 3
    assert "max_message_bytes" in out.dead_letters[0][1]["error_message"]


def test_a_key_longer_than_the_bound(assessor) -> None:
    value = encode(PRE_LOADING, pre_loading("H1"))
    out = assess(assessor, PRE_LOADING, [msg(PRE_LOADING, value, key=b"K" * 300)])
    assert codes(out) == [OVERSIZED]
    assert "max_key_bytes" in out.dead_letters[0][1]["error_message"]
    [(key, response)] = [(k, r) for k, r in out.responses if r["status"] == "REJECTED"]
    assert key == b"K" * 256 and response["house_waybill"] == "K" * 256  # small enough to send


@pytest.mark.parametrize(
    ("record", "field"),
    [
        (pre_arrival("X" * 101, message_id="M1"), "house_waybill: 101 characters, at most 100"),
        (pre_arrival("H1", items=[item(description="a" * 1001)]), "items[0].description"),
        (pre_arrival("H1", items=[item()] * 101), "items: 101 entries, at most 100"),
        (pre_arrival("H1", items=[item(quantity=2_000_000)]), "items[0].quantity"),
        (pre_arrival("H1", seller=party("S" * 5000, "CN")), "seller.name"),
    ],
)
def test_fields_beyond_their_bounds(assessor, record, field) -> None:
    out = assess(assessor, PRE_ARRIVAL, [msg(PRE_ARRIVAL, encode(PRE_ARRIVAL, record))])
    assert codes(out) == [OUT_OF_BOUNDS]
    assert field in out.dead_letters[0][1]["error_message"]


def test_a_long_word_is_never_expanded_into_its_deletions(assessor, monkeypatch) -> None:
    """Fuzzy brand matching costs the square of a word's length: a word longer than every
    brand by more than a letter is not compared at all (a 400 KB word froze the worker)."""
    norm = assessor.lists.normaliser
    names = [n for b in assessor.lists.brands for n in (b.name, *b.aliases)]
    longest = max(len(norm.fold(n).replace(" ", "")) for n in names) + 1
    seen: list[int] = []
    real = watchlists._deletions

    def counting(word: str) -> set[str]:
        seen.append(len(word))
        return real(word)

    monkeypatch.setattr(watchlists, "_deletions", counting)
    word = "q" * 950
    rec = pre_arrival("H1", items=[item(description=f"cotton {word} t-shirt")])
    out = assessor.assess(PRE_ARRIVAL, messages(PRE_ARRIVAL, [rec]), {}, NOW_MS)
    assert len(out.decisions) == 1
    assert all(n <= longest for n in seen)


def test_a_registry_that_cannot_be_reached_fails_the_batch_not_its_messages(assessor) -> None:
    def unreachable(schema_id: int) -> str | None:
        raise ServiceUnavailable("schema registry unreachable: connection refused")

    decoder = WireDecoder(SCHEMAS[PRE_ARRIVAL], unreachable)
    saved = assessor.decoders
    assessor.decoders = {**saved, PRE_ARRIVAL: decoder}
    try:
        with pytest.raises(ServiceUnavailable):
            assessor.assess_isolated(
                PRE_ARRIVAL, messages(PRE_ARRIVAL, [pre_arrival()]), {}, NOW_MS, {}, {}, {}, {}
            )
    finally:
        assessor.decoders = saved


def test_dead_letters_carry_the_size_and_digest_of_the_whole_original() -> None:
    m = InboundMessage(b"k", b"abc", "t", 1, 2, NOW_MS)
    dead = dead_letter_record(m, "UNDECODABLE", "why", None, None, NOW_MS)
    assert dead["original_value_bytes"] == 3
    assert dead["original_value_sha256"] == (
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    )
