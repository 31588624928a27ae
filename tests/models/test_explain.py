from __future__ import annotations

import dataclasses
import json

import numpy as np
import polars as pl
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier

from greenlane.models.explain import (
    feature_baseline,
    format_evidence,
    load_feature_labels,
    top_contributions,
    typical_row,
)
from greenlane.models.train import CategoryCodes, PlattScaled, RiskModel
from greenlane.streams.settings import ConfigError

DECIDES = "seller_rate"  # the one feature the synthetic frauds depend on


def _features(spec, n: int, rng: np.random.Generator) -> pl.DataFrame:
    columns: dict[str, object] = {
        c: rng.choice(["CN", "US", "DE", "GB"], n, p=[0.55, 0.25, 0.15, 0.05])
        for c in spec.categorical
    }
    columns.update({c: rng.normal(size=n) for c in spec.numeric})
    columns[DECIDES] = rng.beta(1, 20, n)
    return pl.DataFrame(columns).select(spec.columns)


@pytest.fixture(scope="module")
def model(spec):
    """A small RiskModel trained where the seller's past fraud rate alone decides."""
    rng = np.random.default_rng(5)
    features = _features(spec, 6_000, rng)
    y = (features[DECIDES].to_numpy() > 0.12).astype(int)
    codes = CategoryCodes(min_count=1).fit(features, spec.categorical)
    matrix = codes.transform(features).to_numpy()
    n_cat = len(spec.categorical)
    trees = HistGradientBoostingClassifier(
        max_iter=40, categorical_features=[i < n_cat for i in range(matrix.shape[1])]
    ).fit(matrix[:4_000], y[:4_000])
    calibrated = PlattScaled.fit(trees, matrix[4_000:], y[4_000:])
    info = {"baseline": feature_baseline(features)}
    return RiskModel(spec, codes, calibrated, pl.DataFrame(), info)


@pytest.fixture
def batch(spec):
    return _features(spec, 2_000, np.random.default_rng(9))


class CountingCalibrated:
    def __init__(self, inner):
        self.inner, self.calls, self.rows = inner, 0, 0

    def predict_proba(self, x):
        self.calls += 1
        self.rows += len(x)
        return self.inner.predict_proba(x)


def test_feature_changed_on_purpose_comes_first(model, batch):
    low = batch.with_columns(pl.lit(0.01).alias(DECIDES))
    high = batch.with_columns(pl.lit(0.4).alias(DECIDES))
    p_low, p_high = model.predict_proba(low), model.predict_proba(high)
    assert p_high.min() > 0.5 > p_low.max()
    rows = np.arange(50)
    explained = top_contributions(model, high, p_high, rows)
    assert len(explained) == 50
    for top in explained:
        assert top[0][0] == DECIDES
        assert top[0][1] > 0.4
        assert [c for _, c in top] == sorted((c for _, c in top), reverse=True)
    # at a typical seller rate the decisive feature raises nothing
    assert all(DECIDES not in dict(t) for t in top_contributions(model, low, p_low, rows))


def test_one_predict_proba_call_per_batch(model, batch, spec):
    counting = CountingCalibrated(model.calibrated)
    probe = dataclasses.replace(model, calibrated=counting)
    p = model.predict_proba(batch)
    rows = np.flatnonzero(p >= np.quantile(p, 0.95))  # ~5% of the batch
    top_contributions(probe, batch, p, rows)
    assert counting.calls == 1
    assert 0 < counting.rows <= len(rows) * len(spec.columns)
    assert top_contributions(probe, batch, p, np.array([], dtype=int)) == []
    assert counting.calls == 1  # nothing to explain, nothing scored


def test_explanation_is_stable_and_independent_of_the_batch(model, batch):
    p = model.predict_proba(batch)
    rows = np.argsort(-p, kind="stable")[:20]
    first = top_contributions(model, batch, p, rows, k=5)
    assert top_contributions(model, batch, p, rows, k=5) == first
    alone = top_contributions(model, batch, p, rows[::-1][:3], k=5)
    assert alone == first[::-1][:3]
    assert all(len(t) <= 5 and all(c > 0 for _, c in t) for t in first)


def test_typical_declaration_has_nothing_to_explain(model, spec):
    typical = pl.DataFrame([model.info["baseline"]]).select(spec.columns)
    p = model.predict_proba(typical)
    assert top_contributions(model, typical, p, np.array([0])) == [[]]


def test_baseline_is_json_and_typical(spec):
    frame = pl.DataFrame({"origin": ["CN", "CN", "US", None], "tax_rate": [0.1, 0.2, 0.9, None]})
    baseline = feature_baseline(frame)
    assert baseline == {"origin": "CN", "tax_rate": pytest.approx(0.2)}
    json.dumps(baseline, allow_nan=False)


def test_missing_baseline_is_named(model, batch):
    bare = dataclasses.replace(model, info={})
    with pytest.raises(KeyError, match="feature_baseline"):
        top_contributions(bare, batch, model.predict_proba(batch), np.array([0]))


def test_every_default_feature_has_an_officer_label(spec):
    labels = load_feature_labels()
    for column in spec.columns:
        assert column in labels.features or labels.label(column) != column.replace("_", " ")
    assert labels.label("seller_rate") == "seller's past fraud rate"
    assert labels.label("importer_id_seller_log_n") == "consignee-seller pair's past filings"
    assert labels.label("value_vs_hs6_origin_norm") == "value against the HS subheading from " + (
        "this origin norm"
    )
    assert labels.label("my_extra_flag") == "my extra flag"


def test_evidence_text():
    labels = load_feature_labels()
    text = format_evidence([("seller_rate", 0.213), ("log_value_per_kg", 0.08)], 0.4214)
    assert text == (
        "model probability 0.42; seller's past fraud rate +0.21, declared value per kg +0.08"
    )
    tiny = labels.min_contribution / 2
    assert format_evidence([("origin", tiny)], 0.1, labels).endswith("no single feature stands out")


def test_bad_labels_file_is_named(tmp_path):
    path = tmp_path / "explain.yaml"
    path.write_text(
        "features: {origin: origin}\nentities: {seller_id: seller}\n"
        "templates: {rate: past rate, log_n: '{entity} n', norm: '{entity} norm'}\n"
        "reason: {min_contribution: 0.01}\n"
    )
    with pytest.raises(ConfigError, match=r"explain\.yaml: templates\.rate"):
        load_feature_labels(path)


def test_the_stream_s_matrix_and_typical_row_give_the_same_explanations(model, batch):
    """The stream passes the matrix it scored from and the typical row it keeps: the same
    contributions as explaining from the features alone."""
    p = model.predict_proba(batch)
    rows = np.argsort(-p, kind="stable")[:30]
    typical = typical_row(model, batch.select(model.spec.columns).schema)
    shortcut = top_contributions(
        model, batch, p, rows, k=5, matrix=model.matrix(batch), typical=typical
    )
    assert shortcut == top_contributions(model, batch, p, rows, k=5)
    assert any(shortcut)
