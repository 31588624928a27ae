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
    # the filing names no declarant, so neither does the history; every row has a tax rate
    assert history["declarant_id"].null_count() == history.height
    assert history["tax_rate"].null_count() == 0
    # risky routes and origins come from the targeting profiles, and defraud more often
    risky = history.filter(
        pl.col("departure_country").is_in(list(cat.risk.high_risk_routes))
        | pl.col("origin").is_in(list(cat.risk.high_risk_origins))
    )
    assert risky.height > 0
    assert risky["fraud"].mean() > 2 * history["fraud"].mean()


def test_the_history_is_the_simulators_world_mapped_as_the_stream_maps_it():
    from greenlane.models.stream import canonical_rows
    from greenlane.streams.devtools.simulator import generate
    from greenlane.streams.stages.quality import load_quality_rules

    truth = generate_history(3_000, seed=4, truth=True)
    assert set(truth["mechanism"].drop_nulls()) >= {"undervaluation", "split_shipment"}
    found = truth.filter(pl.col("fraud") == 1)
    assert found["mechanism"].null_count() < 0.05 * found.height  # label noise only
    # a live run meets the history's sellers
    live = [f.value for f in generate(4_000, seed=99, invalid_share=0) if f.role == "pre_arrival"]
    rows = canonical_rows(live, load_quality_rules().reference_rates)
    common = set(rows["seller_id"]) & set(truth["seller_id"])
    assert len(common) > 0.3 * rows["seller_id"].n_unique()


def test_fraud_patterns_are_present(history):
    fraud, clean = history.filter(pl.col("fraud") == 1), history.filter(pl.col("fraud") == 0)
    # every true finding recovers revenue; only false findings (label noise) recover none
    assert (fraud["revenue_recovered"] > 0).mean() > 0.9
    assert clean["revenue_recovered"].max() == 0
    # split shipments: the same seller and importer again within days
    pairs = fraud.group_by("seller_id", "importer_id").len()
    assert pairs["len"].max() >= 2
    # undervaluation: frauds declare less per kg than honest declarations of the same goods
    vpk = (pl.col("value") / pl.col("net_mass_kg")).log().median()
    assert fraud.select(vpk).item() < clean.select(vpk).item()


def test_written_csv_and_parquet_read_back(tmp_path, history):
    small = history.head(300)
    for name in ("h.csv", "h.parquet"):
        path = write_history(small, tmp_path / name)
        back = load_history(path)
        assert back.height == 300
        assert back["fraud"].sum() == small["fraud"].sum()
        assert back["date"].to_list() == small["date"].to_list()
