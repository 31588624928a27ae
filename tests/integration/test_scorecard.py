"""The scorecard on the real broker: simulated traffic with its ground truth, a worker deciding
it, and the decision topics read back and judged against the truth (`greenlane scorecard`);
then the simulated officers examine what it held or inspected and the worker joins their
outcomes into the labelled history (the loop `make run` closes)."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import polars as pl
import pytest

from greenlane.models.feedback import LabelledHistory
from greenlane.streams.devtools.fraud import SEIZED_MECHANISMS
from greenlane.streams.devtools.officers import Officers, OutcomeDesk, load_officer_settings
from greenlane.streams.devtools.scorecard import DecisionTap, TruthLog, read_truth, scorecard
from greenlane.streams.devtools.simulator import CarrierSimulator, generate
from greenlane.streams.runtime import admin
from tests.integration.conftest import wait_until

pytestmark = pytest.mark.integration


def test_decisions_are_judged_against_the_simulators_ground_truth(harness, tmp_path):
    log = TruthLog(tmp_path / "truth.jsonl")
    report = CarrierSimulator(harness.settings).send(
        log.tap(generate(6_000, seed=31, invalid_share=0.0))
    )
    assert report.failed == 0
    truth = read_truth(log.path)
    assert truth.keys() == log.truth.keys() and len(truth) > 2_500

    officers = Officers(dataclasses.replace(load_officer_settings(), delay_seconds=0), seed=3)
    tap = DecisionTap(
        harness.settings, start="beginning", listener=lambda d: officers.receive(d, 0.0)
    )
    try:
        wait_until(
            lambda: tap.poll(1.0) >= 0 and truth.keys() <= tap.decided.keys(),
            "a decision for every consignment sent",
        )
    finally:
        tap.close()
    card = scorecard(tap.decided, truth)
    assert card["declarations"] == len(truth)
    assert card["frauds"] == sum(t.fraud for t in truth.values()) > 50
    # rules alone (this worker has no model): inspections hit fraud far above its base rate
    assert card["inspect"]["precision"] > 4 * card["fraud_rate"]
    assert card["model"]["roc_auc"] is None  # no model, no model figures

    # the targeting centre works its queues; the worker joins every outcome to its decision
    now = time.time()
    outcomes = officers.due(now, log.truth, log.tax_rate, int(now * 1000))
    examined = {w for w, d in tap.decided.items() if d.route in ("HOLD", "INSPECT")}
    assert {o["house_waybill"] for o in outcomes} <= set(tap.decided)  # pre-arrival only
    assert len(outcomes) >= 0.9 * len(examined) > 50  # (a late revision may still be read)
    desk = OutcomeDesk(
        harness.settings, admin.register_schemas(harness.settings).ids["inspection_outcome"]
    )
    desk.file(outcomes)
    assert desk.close() == 0
    history = LabelledHistory(Path(harness.env["GREENLANE_HISTORY"]))

    def joined() -> set[str]:
        return set(history.read()["decision_id"].to_list()) if history.parts() else set()

    wanted = {o["decision_id"] for o in outcomes}
    wait_until(lambda: wanted <= joined(), "every outcome joined into the labelled history")
    rows = history.read().filter(pl.col("decision_id").is_in(list(wanted)))
    assert rows.height == len(outcomes)
    for row in rows.iter_rows(named=True):
        t = truth[row["house_waybill"]]
        if row["result"] == "SEIZED":
            assert t.mechanism in SEIZED_MECHANISMS
        if not t.fraud:
            assert row["fraud"] == 0 or row["result"] == "DUTY_ADJUSTED"  # a false finding
    assert rows["fraud"].mean() > 4 * card["fraud_rate"]
    # what retraining weighs: 1 for what rules held or inspected, the random rate otherwise
    picked = rows.filter(pl.col("selection_propensity") < 1)
    assert picked.height > 0 and picked["random_pick"].all()
    assert rows.filter(~pl.col("random_pick"))["selection_propensity"].eq(1.0).all()
