from __future__ import annotations

import json
import math
import time

import numpy as np
import polars as pl
import pytest

from greenlane.models.drift import DriftMonitor, DriftReference, load_drift_settings, psi
from greenlane.streams.settings import ConfigError

COLUMNS = ["value", "origin", "rate"]


def _frame(n: int, rng: np.random.Generator, shift: float = 0.0, origins=None) -> pl.DataFrame:
    origins = origins or (["CN", "US", "DE", "GB", "FR"], [0.5, 0.2, 0.15, 0.1, 0.05])
    value = rng.lognormal(3 + shift, 1, n)
    value[rng.random(n) < 0.02] = np.nan  # a few missing values
    return pl.DataFrame(
        {
            "value": value,
            "origin": rng.choice(origins[0], n, p=origins[1]),
            "rate": rng.beta(1, 30, n),
        }
    ).with_columns(pl.col("value").fill_nan(None))


@pytest.fixture(scope="module")
def reference():
    rng = np.random.default_rng(1)
    return DriftReference.from_frame(_frame(50_000, rng), rng.beta(1, 25, 50_000), COLUMNS)


def test_psi_near_zero_on_the_reference_distribution(reference):
    rng = np.random.default_rng(2)
    monitor = DriftMonitor(reference)
    for _ in range(5):
        monitor.update(_frame(2_000, rng), rng.beta(1, 25, 2_000))
    assert all(v < 0.02 for v in monitor.psi().values()), monitor.psi()
    assert monitor.score_psi() < 0.02


def test_psi_large_on_a_shifted_distribution(reference):
    rng = np.random.default_rng(3)
    monitor = DriftMonitor(reference)
    monitor.update(_frame(5_000, rng, shift=1.0), rng.beta(1, 5, 5_000))
    values = monitor.psi()
    settings = load_drift_settings()
    assert values["value"] > settings.thresholds["act"]
    assert settings.level(values["value"]) == "act"
    assert values["origin"] < 0.02  # unchanged
    assert monitor.score_psi() > settings.thresholds["act"]


def test_new_categories_count_as_other(reference):
    bins = reference.bins["origin"]
    assert bins.categories[0] == "CN" and len(bins.categories) == 5
    index = bins.index(pl.Series(["CN", "XX", None, "ZZ"]))
    assert index.tolist() == [0, 5, 6, 5]  # then "other", then missing
    rng = np.random.default_rng(4)
    monitor = DriftMonitor(reference)
    monitor.update(_frame(4_000, rng, origins=(["CN", "XX"], [0.5, 0.5])), rng.beta(1, 25, 4_000))
    assert monitor.counts["origin"][5] == pytest.approx(monitor.rows / 2, rel=0.1)
    assert monitor.psi()["origin"] > 0.25


def test_categorical_reference_keeps_the_most_frequent(spec):
    frame = pl.DataFrame({"origin": ["CN"] * 5 + ["US"] * 3 + ["DE"] * 2 + ["FR"]})
    ref = DriftReference.from_frame(frame, np.linspace(0, 1, 11), ["origin"], bins=3)
    assert ref.bins["origin"].categories == ("CN", "US")
    assert ref.expected["origin"].tolist() == pytest.approx([5 / 11, 3 / 11, 3 / 11, 0])


def test_round_trip_through_json(reference):
    text = json.dumps(reference.to_dict(), allow_nan=False)
    back = DriftReference.from_dict(json.loads(text))
    assert back.bins == reference.bins
    assert back.rows == reference.rows
    for c in COLUMNS:
        assert np.array_equal(back.expected[c], reference.expected[c])
    assert np.array_equal(back.score_expected, reference.score_expected)
    rng = np.random.default_rng(5)
    batch, scores = _frame(1_000, rng, shift=0.5), rng.beta(1, 25, 1_000)
    a, b = DriftMonitor(reference), DriftMonitor(back)
    a.update(batch, scores)
    b.update(batch, scores)
    assert a.psi() == b.psi()


def test_unknown_column_is_named():
    with pytest.raises(ValueError, match="seller_rate"):
        DriftReference.from_frame(pl.DataFrame({"x": [1.0]}), np.array([0.1]), ["seller_rate"])


def test_decay_forgets_old_traffic(reference):
    rng = np.random.default_rng(6)
    monitor = DriftMonitor(reference, half_life_rows=2_000)
    monitor.update(_frame(5_000, rng, shift=1.5), rng.beta(1, 25, 5_000))
    shifted = monitor.psi()["value"]
    for _ in range(10):
        monitor.update(_frame(2_000, rng), rng.beta(1, 25, 2_000))
    assert monitor.psi()["value"] < 0.05 < shifted
    assert monitor.rows == pytest.approx(4_000, rel=0.01)  # the steady state of the half-life


def test_score_histogram(reference):
    monitor = DriftMonitor(reference, score_buckets=[0.5, 0.05, 0.2])
    assert math.isnan(monitor.score_psi()) and math.isnan(monitor.psi()["value"])
    monitor.update(_frame(4, np.random.default_rng(7)), np.array([0.01, 0.1, 0.3, 0.9]))
    bounds, counts = monitor.score_histogram()
    assert bounds == [0.05, 0.2, 0.5, math.inf]
    assert counts.tolist() == [1, 1, 1, 1]
    default = DriftMonitor(reference).score_histogram()[0]
    assert default[:-1] == list(reference.score_bins.cuts) and len(default) == 10


def test_psi_by_hand():
    expected = np.array([0.5, 0.5, 0.0])
    assert psi(expected, expected) == 0
    value = psi(np.array([0.25, 0.75, 0.0]), expected)
    assert value == pytest.approx(0.25 * math.log(3))  # -0.25 ln 0.5 + 0.25 ln 1.5


def test_update_is_cheap(reference):
    rng = np.random.default_rng(8)
    batch, scores = _frame(2_000, rng), rng.beta(1, 25, 2_000)
    monitor = DriftMonitor(reference, half_life_rows=50_000)
    monitor.update(batch, scores)
    started = time.perf_counter()
    for _ in range(20):
        monitor.update(batch, scores)
    per_batch = (time.perf_counter() - started) / 20
    assert per_batch < 0.02  # measured well under 1 ms for 3 columns; generous for shared CI


def test_settings_file_checked(tmp_path):
    settings = load_drift_settings()
    assert settings.bins >= 2 and settings.level(0.05) == "stable"
    assert settings.level(0.2) == "watch"
    bad = tmp_path / "drift.yaml"
    bad.write_text(
        "columns: [origin]\nbins: 10\nhalf_life_rows: 0\nepsilon: 0.0001\n"
        "thresholds: {watch: 0.3, act: 0.25}\n"
    )
    with pytest.raises(ConfigError, match=r"drift\.yaml: thresholds"):
        load_drift_settings(bad)


def test_shipped_columns_are_model_features(spec):
    assert set(load_drift_settings().columns) <= set(spec.columns)
