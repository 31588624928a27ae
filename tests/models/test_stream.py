"""The risk model in the stream: batch scoring, explained reasons, hot swap from the registry."""

from __future__ import annotations

import json
import time
from dataclasses import replace

import pytest

from greenlane.models.registry import ARTIFACT, Registry
from greenlane.models.stream import (
    MODEL_REASON,
    StreamScorer,
    canonical_rows,
    load_scoring_settings,
)
from greenlane.models.train import train
from greenlane.streams.core.pipeline import Assessor
from greenlane.streams.domain.batch import InboundMessage
from greenlane.streams.domain.vocabulary import PRE_ARRIVAL
from greenlane.streams.runtime.serde import WireDecoder, WireEncoder, load_schema
from greenlane.streams.settings import schema_path
from greenlane.streams.settings.secrets import pseudonymiser
from greenlane.streams.stages import quality
from greenlane.streams.stages.targeting import load_targeting_rules
from tests.factories import NOW_MS, item, pre_arrival

SCHEMA = load_schema(schema_path("pre_arrival"))
RATES = quality.load_quality_rules().reference_rates


@pytest.fixture(scope="module")
def registry(tmp_path_factory, history, spec) -> Registry:
    reg = Registry(tmp_path_factory.mktemp("registry"))
    model = train(history, spec)
    reg.save(model, {"note": "first"})
    reg.promote(reg.versions()[-1])
    return reg


def scorer_for(registry: Registry, check_seconds: float = 10.0) -> StreamScorer:
    settings = replace(load_scoring_settings(), check_seconds=check_seconds, floor=0.0)
    return StreamScorer(registry, settings)


def assessor_for(registry: Registry) -> Assessor:
    """The pre-arrival engine with the shipped rules and lists and the registry's model."""
    fetch = {1: json.dumps(SCHEMA)}.get
    return Assessor(
        quality.load_quality_rules(),
        load_targeting_rules(),
        {PRE_ARRIVAL: WireDecoder(SCHEMA, fetch)},
        scorer=scorer_for(registry),
    )


def test_canonical_rows_sum_lines_and_take_the_main_line():
    rec = pre_arrival(
        "C1",
        items=[
            item(value=10.0, hs_code="610910", net_weight_kg=0.2),
            item(
                value=90.0, currency="USD", hs_code="851713", origin_country="VN", net_weight_kg=0.3
            ),
        ],
    )
    [row] = canonical_rows([rec], RATES).to_dicts()
    assert row["hs_code"] == "851713" and row["origin"] == "VN"
    assert row["value"] == pytest.approx(10.0 + 90.0 * RATES["USD"])
    assert row["net_mass_kg"] == pytest.approx(0.5) and row["quantity"] == 4
    assert row["destination"] == "DE"
    # parties as keyed digests only: the registration id's, as an imported history keys it
    digest = pseudonymiser().party
    assert row["seller_id"] == digest("seller", "SELLER-88") != "SELLER-88"
    consignee = rec["consignee"]
    assert row["importer_id"] == digest(
        "importer", consignee["party_id"], consignee["name"], consignee["address"]
    )
    assert consignee["name"] not in row["importer_id"]


def test_the_stream_scores_exactly_as_the_model_does_offline(registry):
    scorer = scorer_for(registry)
    recs = [
        pre_arrival(f"C{i}", items=[item(value=5.0 + i, net_weight_kg=0.1 + i / 100)])
        for i in range(50)
    ]
    parts = scorer.score(recs, RATES)
    offline = scorer.model.score(canonical_rows(recs, RATES), scorer.model.history)
    assert [p.probability for p in parts] == offline.tolist()
    assert {p.version for p in parts} == {registry.current()}
    assert all(p.reason["code"] == MODEL_REASON for p in parts)


def test_decisions_record_the_model_and_its_reason(registry):
    assessor = assessor_for(registry)
    enc = WireEncoder(SCHEMA, 1)
    msgs = [InboundMessage(b"M1", enc.encode(pre_arrival("M1")), "t", 0, 0, NOW_MS)]
    [d] = assessor.assess(PRE_ARRIVAL, msgs, {}, NOW_MS).decisions
    assert d["model_version"] == registry.current()
    model_reason = next(r for r in d["reasons"] if r["code"] == MODEL_REASON)
    weight = load_scoring_settings().weight
    assert model_reason["contribution"] == pytest.approx(weight * d["model_probability"], abs=1e-3)
    assert d["risk_score"] == pytest.approx(sum(r["contribution"] for r in d["reasons"]))


def test_a_newly_promoted_model_is_picked_up_without_restart(registry, history, spec):
    scorer = scorer_for(registry, check_seconds=0.001)
    first = scorer.version
    reg_model = train(history.head(12_000), spec)
    registry.save(reg_model, {"note": "second"})
    newest = registry.versions()[-1]
    time.sleep(0.01)
    assert not scorer.refresh() and scorer.version == first  # saved, not promoted: unchanged
    registry.promote(newest)
    time.sleep(0.01)
    assert scorer.refresh() and scorer.version == newest != first
    [part] = scorer.score([pre_arrival("H1")], RATES)
    assert part.version == newest


def test_a_model_that_does_not_load_is_refused_once_and_the_one_in_force_kept(
    registry, history, spec
):
    told: list[tuple[str, str | None]] = []
    settings = replace(load_scoring_settings(), check_seconds=0.001, floor=0.0)
    scorer = StreamScorer(registry, settings, lambda v, e: told.append((v, e and str(e))))
    first = scorer.version
    assert told == [(first, None)]
    damaged = registry.save(train(history.head(12_000), spec), {"note": "damaged"})
    (registry.root / damaged / ARTIFACT).write_bytes(b"not a model")
    registry.promote(damaged)
    try:
        for _ in range(3):
            time.sleep(0.01)
            assert not scorer.refresh()
        assert scorer.version == first and scorer.model is not None
        assert [v for v, e in told if e is not None] == [damaged]  # refused once, not each check
    finally:
        registry.promote(first)
    time.sleep(0.01)
    assert not scorer.refresh() and scorer.refused is None  # rolled back: nothing refused now
    assert told[-1] == (first, None)


def test_without_a_model_the_stream_runs_on_rules_only(tmp_path):
    scorer = StreamScorer(Registry(tmp_path / "empty"), load_scoring_settings())
    assert scorer.model is None and scorer.score([pre_arrival("N1")], RATES) == [None]


def test_scores_are_explained_and_feed_the_drift_monitor(registry):
    settings = replace(load_scoring_settings(), floor=0.0, explain_above=0.0)
    scorer = StreamScorer(registry, settings)
    recs = [pre_arrival(f"E{i}", items=[item(value=1.0 + i, net_weight_kg=2.0)]) for i in range(40)]
    parts = scorer.score(recs, RATES)
    evidence = [p.reason["evidence"] for p in parts]
    assert all(e.startswith("model probability") for e in evidence)
    assert all(f"(model {registry.current()})" in e for e in evidence)
    assert scorer.monitor is not None and scorer.monitor.rows == pytest.approx(40, rel=0.01)
    assert set(scorer.monitor.psi()) and scorer.monitor.score_psi() >= 0


def test_the_indexed_snapshot_gives_the_same_features_as_the_snapshot_frame(registry):
    from greenlane.models.features import build_features, index_history

    model = registry.load()
    rows = canonical_rows([pre_arrival(f"X{i}") for i in range(30)], RATES)
    by_frame = build_features(rows, model.spec, model.history)
    by_index = build_features(rows, model.spec, index_history(model.history))
    assert by_index.equals(by_frame)


def test_an_extra_feature_declared_from_a_filing_field_flows_through_the_stream(tmp_path, history):
    import polars as pl

    from greenlane.models.features import default_spec

    spec = default_spec(extra_categorical=("mode",), extra_filing={"mode": "transport_mode"})
    modes = pl.Series(["AIR", "ROAD"] * (history.height // 2 + 1)).head(history.height)
    model = train(history.with_columns(mode=modes), spec)
    reg = Registry(tmp_path / "reg")
    reg.promote(reg.save(model, {"note": "extra"}))
    recs = [pre_arrival(f"E{i}", transport_mode=("AIR", "ROAD")[i % 2]) for i in range(20)]
    rows = canonical_rows(recs, RATES, spec.extra_filing)
    assert rows["mode"].to_list() == ["AIR", "ROAD"] * 10
    parts = scorer_for(reg).score(recs, RATES)
    assert [p.probability for p in parts] == model.score(rows, model.history).tolist()


def test_a_counterfeit_from_a_watchlisted_seller_is_inspected(registry):
    """In the simulated world, with the shipped rules and lists (thresholds.yaml's
    inspect_together: trust reasons do not lower such a consignment to a hold)."""
    from greenlane.streams.devtools.simulator import default_catalogue, generate

    listed = {name for name, _ in default_catalogue().fraud.watchlist_names}
    filings = [
        f
        for f in generate(80_000, seed=21, invalid_share=0.0)
        if f.role == "pre_arrival"
        and f.truth is not None
        and f.truth.mechanism == "counterfeit"
        and not f.truth.hidden
        and f.value["seller"]["name"] in listed
    ]
    assert filings
    assessor = assessor_for(registry)
    enc = WireEncoder(SCHEMA, 1)
    msgs = [
        InboundMessage(f.key, enc.encode(f.value), "t", 0, i, NOW_MS) for i, f in enumerate(filings)
    ]
    decisions = assessor.assess(PRE_ARRIVAL, msgs, {}, NOW_MS).decisions
    assert {d["forced_outcome"] for d in decisions} == {"INSPECT"}
    assert [d["route"] for d in decisions] == ["INSPECT"] * len(filings), [
        (d["risk_score"], [r["code"] for r in d["reasons"]]) for d in decisions
    ]


def test_the_stream_explains_as_the_model_does_offline(registry):
    """The stream explains from the matrix it scored and the typical row it keeps: the same
    evidence as explaining the batch from its features alone."""
    import numpy as np

    from greenlane.models.explain import format_evidence, top_contributions
    from greenlane.models.features import build_features

    settings = replace(load_scoring_settings(), floor=0.0, explain_above=0.0)
    scorer = StreamScorer(registry, settings)
    recs = [
        pre_arrival(f"O{i}", items=[item(value=3.0 + 7 * i, net_weight_kg=0.05 + i / 50)])
        for i in range(60)
    ]
    evidence = [p.reason["evidence"] for p in scorer.score(recs, RATES)]
    model = scorer.model
    features = build_features(canonical_rows(recs, RATES), model.spec, model.history)
    p = model.predict_proba(features)
    offline = top_contributions(model, features, p, np.arange(len(recs)), settings.top_features)
    assert evidence == [
        f"{format_evidence(c, float(p[i]), scorer.labels)} (model {scorer.version})"
        for i, c in enumerate(offline)
    ]
    assert any(";" in e for e in evidence)  # some rows do carry contributions
