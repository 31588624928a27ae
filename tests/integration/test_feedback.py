"""Inspection outcomes are joined to their decisions and kept as labelled history."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from greenlane.models.feedback import LabelledHistory
from tests.factories import NOW_MS
from tests.integration.test_worker import DECISIONS, arrival, waybills

pytestmark = pytest.mark.integration


def outcome(decision: dict, result: str, revenue: float = 0.0) -> dict:
    return {
        "decision_id": decision["decision_id"],
        "house_waybill": decision["house_waybill"],
        "officer": "OFF-17",
        "result": result,
        "recovered_revenue": revenue,
        "currency": "EUR",
        "inspected_at": NOW_MS + 86_400_000,
        "notes": None,
    }


def test_outcomes_become_labelled_history_and_strays_are_dead_lettered(harness):
    seized, cleared = waybills(2)
    harness.send("pre_arrival", [arrival(seized), arrival(cleared)])
    decisions = {
        r["house_waybill"]: r
        for r in harness.read(
            DECISIONS, lambda rs: {seized, cleared} <= {r["house_waybill"] for r in rs}
        )
    }
    stray = dict(outcome(decisions[cleared], "SEIZED"), decision_id="no-such-decision")
    rambling = dict(outcome(decisions[cleared], "SEIZED"), notes="n" * 5000)
    harness.send(
        "inspection_outcome",
        [
            outcome(decisions[seized], "SEIZED", 42.0),
            outcome(decisions[cleared], "NO_FINDINGS"),
            stray,
            rambling,
        ],
    )

    history = LabelledHistory(Path(harness.env["GREENLANE_HISTORY"]))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not history.parts():
        time.sleep(0.5)
    rows = {r["house_waybill"]: r for r in history.read().to_dicts()}
    assert rows[seized]["fraud"] == 1 and rows[seized]["revenue_recovered"] == 42.0
    assert rows[cleared]["fraud"] == 0
    assert rows[seized]["decision_id"] == decisions[seized]["decision_id"]
    assert rows[seized]["random_pick"] is False and rows[seized]["hs_code"] == "610910"
    outcome_topic = harness.settings.topics.name("inspection_outcome")

    def both(rs: list[dict]) -> bool:
        return len([r for r in rs if r["source_topic"] == outcome_topic]) >= 2

    dead = [r for r in harness.read(["dead_letter"], both) if r["source_topic"] == outcome_topic]
    assert sorted(r["error_code"] for r in dead) == ["OUTCOME_UNKNOWN_DECISION", "OUT_OF_BOUNDS"]
    [bounded] = [r for r in dead if r["error_code"] == "OUT_OF_BOUNDS"]
    assert bounded["error_message"].startswith("notes: 5,000 characters")
