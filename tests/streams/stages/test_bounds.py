"""The bounds checker compiled from a schema: the first field out of bounds, by path."""

from __future__ import annotations

import math

import pytest

from greenlane.streams.runtime.serde import load_schema
from greenlane.streams.settings import schema_path
from greenlane.streams.stages.bounds import Bounds, compile_checker, message_problem
from greenlane.streams.stages.quality import load_quality_rules
from tests.factories import NOW_MS, item, pre_arrival

BOUNDS = load_quality_rules().bounds
DAY_MS = 86_400_000


def checker(role: str):
    return compile_checker(load_schema(schema_path(role)), BOUNDS)


def test_a_real_filing_is_within_bounds() -> None:
    assert checker("pre_arrival")(pre_arrival(), NOW_MS) is None


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"master_waybill": "M" * 101}, "master_waybill: 101 characters, at most 100"),
        ({"platform": "P" * 101}, "platform: 101 characters"),
        ({"items": [item(), item(listing_url="u" * 1001)]}, "items[1].listing_url: 1,001"),
        ({"items": [item(net_weight_kg=math.inf)]}, "items[0].net_weight_kg: inf is not"),
        ({"items": [item(value=1e-12)]}, "items[0].value: 1e-12 is too close to zero"),
        ({"items": [item(quantity=-2_000_000)]}, "items[0].quantity: -2000000 is outside"),
        ({"filing_time": NOW_MS + 367 * DAY_MS}, "filing_time: "),
    ],
)
def test_the_first_field_out_of_bounds_is_named(change, why) -> None:
    found = checker("pre_arrival")(pre_arrival(**change), NOW_MS)
    assert found is not None and found.startswith(why), found


def test_zero_and_negative_amounts_are_left_to_data_quality() -> None:
    check = checker("pre_arrival")
    assert check(pre_arrival(items=[item(value=0.0), item(value=-3.0)]), NOW_MS) is None


def test_free_text_of_an_inspection_outcome_is_bounded() -> None:
    outcome = {
        "decision_id": "d",
        "house_waybill": "H",
        "officer": "o",
        "result": "SEIZED",
        "recovered_revenue": 0.0,
        "currency": "EUR",
        "inspected_at": NOW_MS,
        "notes": "n" * 1001,
    }
    assert checker("inspection_outcome")(outcome, NOW_MS).startswith("notes: 1,001")
    assert checker("inspection_outcome")(outcome | {"notes": None}, NOW_MS) is None


def test_raw_size_and_key_are_checked_before_decoding() -> None:
    assert message_problem(b"k", b"v" * BOUNDS.max_message_bytes, BOUNDS) is None
    assert "max_message_bytes" in message_problem(
        b"k", b"v" * (BOUNDS.max_message_bytes + 1), BOUNDS
    )
    assert "max_key_bytes" in message_problem(b"k" * 257, b"v", BOUNDS)
    assert message_problem(None, None, BOUNDS) is None


def test_inconsistent_limits_are_reported_by_key() -> None:
    bad = Bounds(0, 1, 1, 1, 1, 1, math.nan, 2.0, 0.0, 40_000.0)
    assert [k for k, _ in bad.problems()] == [
        "max_message_bytes",
        "max_amount",
        "min_nonzero_amount",
        "max_age_days",
        "max_ahead_days",
    ]
