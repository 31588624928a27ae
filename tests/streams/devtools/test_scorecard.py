"""The scorecard against ground truth: by hand, and on the simulated world through the model."""

from __future__ import annotations

import numpy as np
import pytest

from greenlane.streams.devtools.fraud import Truth
from greenlane.streams.devtools.scorecard import (
    Decided,
    format_scorecard,
    latest,
    model_figures,
    read_truth,
    scorecard,
)

CLEAN = Truth(None, False, 10.0, 10.0)
FRAUD = Truth("undervaluation", False, 50.0, 10.0)
HIDDEN = Truth("misdeclared_hs", True, 80.0, 20.0)


def _decision(waybill, route, revision=0, p=None, stage="PRE_ARRIVAL"):
    return {
        "house_waybill": waybill,
        "route": route,
        "revision": revision,
        "model_probability": p,
        "stage": stage,
    }


def test_the_latest_pre_arrival_revision_counts():
    decided = latest(
        [
            _decision("A", "RELEASE", 0),
            _decision("A", "INSPECT", 1),
            _decision("A", "INSPECT", 0, stage="PRE_LOADING"),
            _decision("B", "HOLD", 2),
            _decision("B", "RELEASE", 1),  # an older revision delivered late
        ]
    )
    assert decided["A"].route == "INSPECT" and decided["B"].route == "HOLD"


def test_precision_and_recall_by_hand():
    decided = {
        "A": Decided("A", "INSPECT", 0, None),  # fraud found
        "B": Decided("B", "INSPECT", 0, None),  # honest: a wasted inspection
        "C": Decided("C", "HOLD", 0, None),  # fraud held
        "D": Decided("D", "RELEASE", 0, None),  # fraud missed (hidden)
        "E": Decided("E", "RELEASE", 0, None),
        "F": Decided("F", "RELEASE", 0, None),  # no truth: not counted
    }
    truth = {"A": FRAUD, "B": CLEAN, "C": FRAUD, "D": HIDDEN, "E": CLEAN}
    card = scorecard(decided, truth)
    assert card["declarations"] == 5 and card["frauds"] == 3
    assert card["inspect"] == {"consignments": 2, "precision": 0.5, "recall": 0.3333}
    assert card["hold"] == {"consignments": 1, "precision": 1.0, "recall": 0.3333}
    assert card["stopped"]["recall"] == 0.6667
    assert card["inspection_hit_rate"] == 0.5
    assert card["hidden_share_of_fraud"] == 0.3333
    assert "precision  50.0%" in format_scorecard(card)


def test_the_best_model_is_limited_by_fraud_that_leaves_no_trace():
    rng = np.random.default_rng(1)
    n = 20_000
    fraud = rng.random(n) < 0.04
    hidden = fraud & (rng.random(n) < 0.25)
    perfect = np.where(fraud & ~hidden, 1.0, rng.random(n) * 0.5)  # knows all it can know
    m = model_figures(perfect, fraud, hidden)
    assert m["roc_auc"] == pytest.approx(m["best_roc_auc"], abs=0.01)
    traced, k = (fraud & ~hidden).sum(), n // 20
    fill = (k - traced) * (fraud & hidden).sum() / (n - traced)
    assert m["best_precision@5%"] == pytest.approx((traced + fill) / k, abs=1e-4)
    assert m["share_of_best_precision"] == pytest.approx(1.0, abs=0.02)
    coin = model_figures(rng.random(n), fraud, hidden)
    assert coin["roc_auc"] == pytest.approx(0.5, abs=0.03) and coin["share_of_best_precision"] < 0.2


def test_truth_file_round_trip(tmp_path):
    import json

    path = tmp_path / "truth.jsonl"
    path.write_text(
        "\n".join(json.dumps(t.as_record(w)) for w, t in (("A", FRAUD), ("B", HIDDEN))) + "\n"
    )
    back = read_truth(path)
    assert back["A"].mechanism == "undervaluation" and back["B"].hidden
    assert back["A"].true_value_eur == 50.0
    # a run still writing: its cut last line is left for later; a bad line elsewhere is named
    with path.open("a") as f:
        f.write('{"house_waybill": "C", "fra')
    assert read_truth(path).keys() == {"A", "B"}
    path.write_text('{"nonsense": 1}\n' + json.dumps(FRAUD.as_record("A")) + "\n")
    with pytest.raises(ValueError, match="line 1 is not a ground-truth record"):
        read_truth(path)
