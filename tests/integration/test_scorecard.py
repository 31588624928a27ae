"""The scorecard on the real broker: simulated traffic with its ground truth, a worker deciding
it, and the decision topics read back and judged against the truth (`greenlane scorecard`)."""

from __future__ import annotations

import pytest

from greenlane.streams.devtools.scorecard import DecisionTap, TruthLog, read_truth, scorecard
from greenlane.streams.devtools.simulator import CarrierSimulator, generate
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

    tap = DecisionTap(harness.settings, start="beginning")
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
