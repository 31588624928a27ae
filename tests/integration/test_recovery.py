"""The link table is rebuilt from its changelog when a worker restarts."""

from __future__ import annotations

import pytest

from tests.factories import pre_loading
from tests.integration.test_worker import DECISIONS, arrival, risky_pre_loading, waybills

pytestmark = pytest.mark.integration


def test_a_restarted_worker_still_links_filings_decided_before_the_restart(harness):
    risky, plain = waybills(2)
    harness.send("pre_loading", [risky_pre_loading(risky), pre_loading(plain)])
    harness.read(DECISIONS, lambda rs: {r["house_waybill"] for r in rs} >= {risky, plain})

    harness.stop_worker()
    harness.start_worker()  # in-memory store: everything it knows comes from the changelog

    harness.send("pre_arrival", [arrival(risky), arrival(plain)])
    recs = harness.read(
        DECISIONS,
        lambda rs: (
            sum(r["stage"] == "PRE_ARRIVAL" and r["house_waybill"] in (risky, plain) for r in rs)
            >= 2
        ),
    )
    arrivals = {r["house_waybill"]: r for r in recs if r["stage"] == "PRE_ARRIVAL"}
    assert arrivals[risky]["linked_placi_outcome"] == "HIGH_RISK_CARGO_SCREENING"
    assert arrivals[risky]["route"] == "INSPECT"
    assert arrivals[plain]["linked_placi_outcome"] == "ASSESSMENT_COMPLETE"
    assert arrivals[plain]["route"] == "RELEASE"
    # filings decided before the restart are not decided again
    pre_loadings = [
        r for r in recs if r["stage"] == "PRE_LOADING" and r["house_waybill"] in (risky, plain)
    ]
    assert len(pre_loadings) == 2
