from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from greenlane.models.features import ALL, build_features, history_table, merge_history
from greenlane.models.schema import conform


def test_stream_history_gives_identical_features(history, spec):
    """Offline (frame history) and stream (snapshot table) features of the same rows match."""
    dates = history["date"].unique().sort()
    for day in (dates[40], dates[200], dates[-1]):
        offline = build_features(history, spec).filter(history["date"] == day)
        before = history.filter(pl.col("date") < day)
        batch = history.filter(pl.col("date") == day).drop("fraud", "revenue_recovered")
        online = build_features(batch, spec, history=history_table(before, spec))
        assert offline.height > 0
        assert online.equals(offline)


def test_snapshot_built_batch_by_batch_equals_snapshot_of_all(history, spec):
    """The stream adds batches to its state; integer counts make the sums exact."""
    first = history.head(7_000)
    rest = [history.slice(7_000, 5_000), history.slice(12_000, 8_000)]
    incremental = merge_history(history_table(first, spec), *(history_table(b, spec) for b in rest))
    whole = history_table(history, spec)
    key = ["role", "key"]
    assert incremental.sort(key).equals(whole.sort(key))


def _rows(days: list[int], frauds: list[int], seller: str = "S1") -> pl.DataFrame:
    start = dt.date(2025, 3, 1)
    return conform(
        pl.DataFrame(
            {
                "date": [start + dt.timedelta(days=d) for d in days],
                "seller_id": [seller] * len(days),
                "hs_code": ["640399"] * len(days),
                "value": [20.0] * len(days),
                "net_mass_kg": [0.5] * len(days),
                "quantity": [1.0] * len(days),
                "fraud": frauds,
            }
        )
    )


def test_history_ignores_same_day_and_later_rows(spec):
    frame = _rows([0, 1, 1, 2], [1, 1, 1, 0])
    features = build_features(frame, spec)
    log_n = features["seller_log_n"].to_list()
    # day 0 sees nothing; both day-1 rows see only day 0; day 2 sees the three before it
    assert log_n == pytest.approx([0.0, 0.6931, 0.6931, 1.3863], abs=1e-4)
    rate = features["seller_rate"].to_list()
    assert rate[1] == rate[2] > rate[0]
    # changing a same-day or later label changes nothing for a row
    flipped = frame.with_columns(pl.Series("fraud", [1, 0, 0, 1], dtype=pl.Int8))
    again = build_features(flipped, spec)
    assert again["seller_rate"][0] == rate[0]
    assert again["seller_rate"][1] == rate[1]


def test_unknown_entity_in_stream_gets_the_overall_rate(history, spec):
    snapshot = history_table(history, spec)
    batch = _rows([400], [0], seller="NEVER-SEEN").drop("fraud")
    features = build_features(batch, spec, history=snapshot)
    assert features["seller_log_n"][0] == 0.0
    assert features["seller_rate"][0] == pytest.approx(features["overall_rate"][0])
    overall = snapshot.filter(pl.col("role") == ALL)
    assert overall["n"][0] == history.height


def test_description_signals_use_quality_vague_terms(spec):
    frame = _rows([0, 0, 0], [0, 0, 0]).with_columns(
        pl.Series("description", ["Gift", "Leather wallet", "said to contain parts"])
    )
    share = build_features(frame, spec)["description_vague_share"].to_list()
    assert share == [1.0, 0.0, 1.0]


def test_feature_columns_match_spec(history, spec):
    features = build_features(history.head(500), spec)
    assert tuple(features.columns) == spec.columns
    assert features.height == 500
