"""Inspection outcomes are joined to their decisions and kept as labelled history."""

from __future__ import annotations

import time
from pathlib import Path

import polars as pl
import pytest

from greenlane.models.feedback import LabelledHistory
from greenlane.streams.domain.vocabulary import PRE_ARRIVAL as PA
from greenlane.streams.domain.vocabulary import PRE_LOADING as PL
from greenlane.streams.runtime import admin
from greenlane.streams.runtime.state import SEAL_MARK
from tests.factories import NOW_MS, party, pre_loading
from tests.integration.conftest import wait_until
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


def test_an_amendment_revises_the_declaration_and_an_outcome_for_the_revision_joins(harness):
    [w] = waybills(1)
    harness.send("pre_loading", [pre_loading(w)])
    harness.read(DECISIONS, lambda rs: any(r["house_waybill"] == w for r in rs))
    harness.send("pre_arrival", [arrival(w)])
    harness.read(DECISIONS, lambda rs: sum(r["house_waybill"] == w for r in rs) >= 2)
    amended = pre_loading(
        w, message_id=f"PL-{w}-2", cargo_description="pistol replica parts", hs_code="930510"
    )
    harness.send("pre_loading", [amended])

    def revised(rs: list[dict]) -> bool:
        return any(r["house_waybill"] == w and r["revision"] == 1 for r in rs if r["stage"] == PA)

    mine = [r for r in harness.read(DECISIONS, revised) if r["house_waybill"] == w]
    [first] = [r for r in mine if r["stage"] == PA and r["revision"] == 0]
    [revision] = [r for r in mine if r["stage"] == PA and r["revision"] == 1]
    [loading] = [r for r in mine if r["stage"] == PL and r["revision"] == 1]
    assert first["route"] == "RELEASE" and loading["placi_outcome"] == "DO_NOT_LOAD"
    assert (
        revision["route"] == "INSPECT" and revision["linked_decision_id"] == loading["decision_id"]
    )
    assert revision["risk_score"] == sum(r["contribution"] for r in revision["reasons"])

    harness.send("inspection_outcome", [outcome(revision, "SEIZED", 10.0)])
    history = LabelledHistory(Path(harness.env["GREENLANE_HISTORY"]))

    def joined() -> bool:
        if not history.parts():
            return False
        return w in set(history.read()["house_waybill"].to_list())

    wait_until(joined, f"the outcome for {w}'s revision in the labelled history")
    [row] = [r for r in history.read().to_dicts() if r["house_waybill"] == w]
    assert row["decision_id"] == revision["decision_id"] and row["fraud"] == 1


def test_no_changelog_nor_the_labelled_history_holds_a_party_in_clear(harness):
    """Watchlisted parties (their names go into the officers' evidence) on both filings and an
    outcome, so every table, the pattern statistics and the history hold something of them:
    their names and addresses are nowhere outside the filing and decision topics."""
    [w] = waybills(1)
    consignee = party("Patricia Anderson", "US", address="150 Elm St, Denver CO 80202")
    seller = party("Lakeside Goods Inc", "US", address="88 Harbour View Road, Duluth MN 55802")
    harness.send("pre_loading", [pre_loading(w, consignee=consignee, shipper=seller)])
    harness.send("pre_arrival", [arrival(w, consignee=consignee, seller=seller)])
    decisions = harness.read(DECISIONS, lambda rs: sum(r["house_waybill"] == w for r in rs) >= 2)
    [decided] = [d for d in decisions if d["house_waybill"] == w and d["stage"] == PA]
    assert "Patricia Anderson" in str(decided["reasons"])  # the officers' topic keeps it
    harness.send("inspection_outcome", [outcome(decided, "SEIZED", 10.0)])
    history = LabelledHistory(Path(harness.env["GREENLANE_HISTORY"]))
    wait_until(
        lambda: w in set(history.read()["house_waybill"].to_list()) if history.parts() else False,
        "the outcome in the labelled history",
        60,
    )
    secrets = [v.encode() for p in (consignee, seller) for v in (p["name"], p["address"])]

    topics = admin.admin_client(harness.settings).list_topics(timeout=30).topics
    app_id = harness.settings.worker.app_id
    changelogs = sorted(t for t in topics if t.startswith(app_id) and t.endswith("-changelog"))
    assert len(changelogs) >= 4, changelogs  # links, patterns, summaries, replay log
    names = harness.settings.topics
    internal = [names.name(r) for r in ("pattern_observation", "pattern_finding")]
    stored = harness.raw_records([*changelogs, *internal, names.name("carrier_response")])
    assert len(stored) > 10
    for topic, _p, _o, key, value in stored:
        for s in secrets:
            assert s not in key and s not in value, topic
    # table values are sealed: the link entries' filings are base64, not searchable as text
    sealed = [v.startswith(SEAL_MARK) for t, _p, _o, _k, v in stored if t in changelogs and v]
    assert sealed and all(sealed)
    rows = history.read()
    for column, dtype in rows.schema.items():
        if dtype == pl.String:
            cells = rows[column].drop_nulls().to_list()
            assert not [c for c in cells for s in secrets if s.decode() in c], column
    # the search finds what is there: the filing topic holds the names in clear
    filings = harness.raw_records([names.name("pre_arrival")])
    assert any(secrets[0] in value for *_, value in filings)
