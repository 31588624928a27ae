from __future__ import annotations

import polars as pl

from greenlane.models.mapping import load_history
from greenlane.models.schema import CANONICAL
from greenlane.streams.devtools.history import generate_history, write_history
from greenlane.streams.devtools.simulator import default_catalogue


def test_seeded_low_fraud_rate_and_canonical_columns(history):
    assert list(history.columns) == list(CANONICAL)
    assert history.height == 20_000
    assert 0.015 <= history["fraud"].mean() <= 0.05
    assert history["date"].is_sorted()
    again = generate_history(20_000, seed=11)
    assert again.equals(history)
    assert not generate_history(2_000, seed=12).equals(history.head(2_000))


def test_consistent_with_the_simulator_catalogue(history):
    cat = default_catalogue()
    known_hs = {g.hs_code for g in (*cat.goods, *cat.restricted_goods)}
    assert set(history["hs_code"].unique()) <= known_hs
    assert set(history["destination"].unique()) <= set(cat.destinations)
    assert set(history["carrier_id"].unique()) <= {c.carrier_id for c in cat.carriers}
    # risky routes and origins come from the targeting profiles, and defraud more often
    risky = history.filter(
        pl.col("departure_country").is_in(list(cat.risk.high_risk_routes))
        | pl.col("origin").is_in(list(cat.risk.high_risk_origins))
    )
    assert risky.height > 0
    assert risky["fraud"].mean() > 2 * history["fraud"].mean()


def test_fraud_patterns_are_present(history):
    cat = default_catalogue()
    fraud, clean = history.filter(pl.col("fraud") == 1), history.filter(pl.col("fraud") == 0)
    vpk = pl.col("value") / pl.col("net_mass_kg")
    blatant = fraud.filter(vpk < cat.risk.undervaluation_below).height / fraud.height
    assert blatant > 5 * clean.filter(vpk < cat.risk.undervaluation_below).height / clean.height
    # every true finding recovers revenue; only false findings (label noise) recover none
    assert (fraud["revenue_recovered"] > 0).mean() > 0.9
    assert clean["revenue_recovered"].max() == 0
    # split shipments: the same seller and importer again within days
    pairs = fraud.group_by("seller_id", "importer_id").len()
    assert pairs["len"].max() >= 2


def test_written_csv_and_parquet_read_back(tmp_path, history):
    small = history.head(300)
    for name in ("h.csv", "h.parquet"):
        path = write_history(small, tmp_path / name)
        back = load_history(path)
        assert back.height == 300
        assert back["fraud"].sum() == small["fraud"].sum()
        assert back["date"].to_list() == small["date"].to_list()
