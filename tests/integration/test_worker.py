"""The worker on the real broker: counts, dead letters, linking, responses, metrics."""

from __future__ import annotations

import struct
import uuid

import pytest

from greenlane.streams.devtools.progress import readiness, scrape, total
from greenlane.streams.stages.lanes import is_random_pick, load_lane_settings
from tests.factories import item, party, pre_arrival, pre_loading
from tests.integration.conftest import wait_until

pytestmark = pytest.mark.integration

DECISIONS = ["release", "hold", "inspect"]


def arrival(waybill: str, **over) -> dict:
    """A pre-arrival declaration to a buyer of its own (one buyer receiving parcel after parcel
    from the same seller is a split shipment, which these tests are not about)."""
    over.setdefault("consignee", party("Anna Schmidt", "DE", address=f"Hauptstrasse {waybill}"))
    return pre_arrival(waybill, **over)


def waybills(n: int) -> list[str]:
    """Fresh house waybills that the random selection does not pick (tests assert lanes)."""
    lanes = load_lane_settings().for_destination("DE")
    tag = uuid.uuid4().hex[:6]
    candidates = (f"T{tag}{i:05d}" for i in range(10 * n + 100))
    return [w for w in candidates if not is_random_pick(lanes.salt, w, lanes.min_random_rate)][:n]


def test_n_filings_in_give_exactly_n_decisions_and_n_responses(harness):
    wbs = waybills(150)
    harness.send("pre_loading", [pre_loading(w) for w in wbs])
    harness.send("pre_arrival", [arrival(w) for w in wbs])
    mine = set(wbs)

    def firsts(recs):  # a declaration read before its pre-loading is revised once it is
        return [r for r in recs if r["house_waybill"] in mine and r["revision"] == 0]

    decisions = firsts(harness.read(DECISIONS, lambda rs: len(firsts(rs)) >= 300))
    assert len(decisions) == 300
    assert len({(d["stage"], d["house_waybill"]) for d in decisions}) == 300
    ids = {d["decision_id"] for d in decisions}
    responses = [
        r
        for r in harness.read(
            ["carrier_response"], lambda rs: ids <= {r["response_id"] for r in rs}
        )
        if r["response_id"] in ids
    ]
    assert len(responses) == 300
    assert {r["status"] for r in responses} == {"ACCEPTED"}
    assert {r["outcome"] for r in responses if r["stage"] == "PRE_LOADING"} == {
        "ASSESSMENT_COMPLETE"
    }
    by_key = {r["_key"] for r in responses}
    assert by_key == {w.encode() for w in wbs}


def test_risky_filing_goes_to_inspect_topic_with_reasons(harness):
    [w] = waybills(1)
    harness.send(
        "pre_arrival", [arrival(w, items=[item(description="hunting knife", hs_code="821191")])]
    )
    [d] = [
        r
        for r in harness.read(DECISIONS, lambda rs: any(r["house_waybill"] == w for r in rs))
        if r["house_waybill"] == w
    ]
    assert d["_topic"] == harness.settings.topics.name("inspect")
    assert d["route"] == "INSPECT" and d["reasons"][0]["code"] == "R_WEAPON_OR_KNIFE"


def test_corrupt_unknown_schema_and_unusable_messages_are_dead_lettered_and_answered(harness):
    a, b, c = waybills(3)
    harness.send_raw("pre_arrival", a.encode(), b"\x13 definitely not avro")
    harness.send_raw("pre_arrival", b.encode(), struct.pack(">bI", 0, 2_000_000_001) + b"\x02x")
    harness.send("pre_arrival", [arrival(c, items=[])])
    keys = {a.encode(), b.encode(), c.encode()}
    dead = [
        r
        for r in harness.read(["dead_letter"], lambda rs: sum(r["_key"] in keys for r in rs) >= 3)
        if r["_key"] in keys
    ]
    by_key = {r["_key"]: r for r in dead}
    assert by_key[a.encode()]["error_code"] == "UNDECODABLE"
    assert by_key[a.encode()]["original_value"] == b"\x13 definitely not avro"
    assert by_key[b.encode()]["error_code"] == "UNKNOWN_SCHEMA_ID"
    assert by_key[b.encode()]["schema_id"] == 2_000_000_001
    assert by_key[c.encode()]["error_code"] == "UNUSABLE_RECORD"
    assert by_key[c.encode()]["carrier_id"] == "EXPRESS-01"
    assert {r["source_topic"] for r in dead} == {harness.settings.topics.name("pre_arrival")}
    responses = [
        r
        for r in harness.read(
            ["carrier_response"], lambda rs: sum(r["_key"] in keys for r in rs) >= 3
        )
        if r["_key"] in keys
    ]
    assert {r["status"] for r in responses} == {"REJECTED"}
    assert {r["codes"][0]["code"] for r in responses} == {
        "DL_UNDECODABLE",
        "DL_UNKNOWN_SCHEMA_ID",
        "DL_UNUSABLE_RECORD",
    }
    assert not [r for r in harness.read(DECISIONS, lambda rs: True, timeout=5) if r["_key"] in keys]


def risky_pre_loading(w: str) -> dict:
    return pre_loading(w, cargo_description="drone with lithium battery", hs_code="880622")


def test_pre_loading_then_pre_arrival_links_the_outcome(harness):
    [w] = waybills(1)
    harness.send("pre_loading", [risky_pre_loading(w)])
    harness.read(DECISIONS, lambda rs: any(r["house_waybill"] == w for r in rs))
    harness.send("pre_arrival", [arrival(w)])
    recs = harness.read(DECISIONS, lambda rs: sum(r["house_waybill"] == w for r in rs) >= 2)
    by_stage = {r["stage"]: r for r in recs if r["house_waybill"] == w}
    assert by_stage["PRE_LOADING"]["placi_outcome"] == "HIGH_RISK_CARGO_SCREENING"
    pa = by_stage["PRE_ARRIVAL"]
    assert pa["linked_placi_outcome"] == "HIGH_RISK_CARGO_SCREENING"
    assert pa["linked_decision_id"] == by_stage["PRE_LOADING"]["decision_id"]
    assert pa["route"] == "INSPECT"


def test_pre_arrival_then_pre_loading_is_reassessed(harness):
    [w] = waybills(1)
    harness.send("pre_arrival", [arrival(w)])
    harness.read(DECISIONS, lambda rs: any(r["house_waybill"] == w for r in rs))
    harness.send("pre_loading", [risky_pre_loading(w)])
    recs = [
        r
        for r in harness.read(DECISIONS, lambda rs: sum(r["house_waybill"] == w for r in rs) >= 3)
        if r["house_waybill"] == w
    ]
    first = [r for r in recs if r["stage"] == "PRE_ARRIVAL" and r["revision"] == 0]
    revised = [r for r in recs if r["stage"] == "PRE_ARRIVAL" and r["revision"] == 1]
    assert first[0]["route"] == "RELEASE" and first[0]["linked_placi_outcome"] is None
    assert revised[0]["route"] == "INSPECT"
    assert revised[0]["linked_placi_outcome"] == "HIGH_RISK_CARGO_SCREENING"


def test_metrics_endpoint_reports_the_traffic(harness):
    [w] = waybills(1)
    harness.send("pre_arrival", [arrival(w, items=[item(description="gift")])])
    harness.read(DECISIONS, lambda rs: any(r["house_waybill"] == w for r in rs))
    samples = scrape(harness.metrics_url)
    topic = harness.settings.topics.name("pre_arrival")
    assert total(samples, "greenlane_messages_consumed_total", topic=topic) >= 1
    assert total(samples, "greenlane_decisions_total", stage="PRE_ARRIVAL") >= 1
    assert total(samples, "greenlane_quality_findings_total", code="DQ_VAGUE_DESCRIPTION") >= 1
    assert total(samples, "greenlane_batch_size_count", stage="PRE_ARRIVAL") >= 1
    assert total(samples, "greenlane_batch_processing_seconds_count") >= 1
    assert total(samples, "greenlane_decision_latency_seconds_count", stage="PRE_ARRIVAL") >= 1
    assert total(samples, "greenlane_carrier_responses_total", status="ACCEPTED") >= 1
    for labels in samples.get("greenlane_decisions_total", {}):
        assert {k for k, _ in labels} == {"stage", "route"}  # no per-shipment labels
    assert readiness(harness.metrics_url) == (True, "ready")


def test_table_sizes_are_exported_for_each_table(harness):
    [w] = waybills(1)
    harness.send("pre_loading", [pre_loading(w)])
    harness.read(DECISIONS, lambda rs: any(r["house_waybill"] == w for r in rs))
    wait_until(  # the gauges are refreshed every 10 s
        lambda: (
            total(scrape(harness.metrics_url), "greenlane_table_entries", table="consignment_links")
            >= 1
        ),
        "a link table size",
    )
    samples = scrape(harness.metrics_url)
    entries = samples.get("greenlane_table_entries", {})
    tables = {dict(labels)["table"] for labels in entries}
    assert tables == {
        "consignment_links",
        "pattern_state",
        "decision_summaries",
        "replay_log",
        "lane_quotas",
    }
    assert total(samples, "greenlane_table_bytes", table="consignment_links") > 0


def test_referred_consignments_are_copied_to_the_agency_topic_with_the_route_unchanged(harness):
    toy, plain = waybills(2)
    harness.send(
        "pre_arrival",
        [
            arrival(toy, items=[item(description="wooden toy train", hs_code="950300")]),
            arrival(plain),
        ],
    )
    [copy] = [
        r
        for r in harness.read(
            ["referral:product_safety"], lambda rs: any(r["house_waybill"] == toy for r in rs)
        )
        if r["house_waybill"] == toy
    ]
    assert copy["referrals"] == ["product_safety"] and copy["route"] == "RELEASE"
    decisions = harness.read(DECISIONS, lambda rs: {toy, plain} <= {r["house_waybill"] for r in rs})
    original = next(r for r in decisions if r["house_waybill"] == toy)
    assert original["decision_id"] == copy["decision_id"]
    assert not [
        r
        for r in harness.read(["referral:product_safety"], lambda rs: True, timeout=3)
        if r["house_waybill"] == plain
    ]


def test_split_shipments_across_several_filings_flag_every_consignment_of_the_group(harness):
    parcels = waybills(3)
    buyer = party("Jan Kowalski", "PL", address=f"ul. Lipowa {parcels[0]}, 00-001 Warszawa")
    for w in parcels:  # one at a time: 60 EUR each, together over the EU's 150 EUR IOSS cap
        harness.send(
            "pre_arrival",
            [
                arrival(
                    w,
                    destination_country="PL",
                    consignee=buyer,
                    items=[item(value=60.0, net_weight_kg=0.4)],
                )
            ],
        )
        harness.read(DECISIONS, lambda rs, w=w: any(r["house_waybill"] == w for r in rs))

    def flagged(recs):
        return {
            r["house_waybill"]
            for r in recs
            if any(x["code"] == "P_SPLIT_SHIPMENT" for x in r["reasons"])
        }

    recs = harness.read(DECISIONS, lambda rs: set(parcels) <= flagged(rs))
    mine = [r for r in recs if r["house_waybill"] in parcels]
    evidence = [
        x["evidence"] for r in mine for x in r["reasons"] if x["code"] == "P_SPLIT_SHIPMENT"
    ]
    assert any("180" in e for e in evidence)
    assert {r["revision"] for r in mine if r["house_waybill"] == parcels[0]} == {0, 1}


def test_an_unkeyed_filing_is_dead_lettered_and_answered_under_its_house_waybill(harness):
    [w] = waybills(1)
    harness.send("pre_arrival", [arrival(w)], key_of=lambda r: None)

    def rejected(rs: list[dict]) -> bool:
        return any(r["house_waybill"] == w and r["status"] == "REJECTED" for r in rs)

    [answer] = [r for r in harness.read(["carrier_response"], rejected) if r["house_waybill"] == w]
    assert answer["_key"] == w.encode()
    assert answer["codes"][0]["code"] == "DL_DQ_MISSING_KEY"
    dead = harness.read(["dead_letter"], lambda rs: any(r["message_id"] == f"PA-{w}" for r in rs))
    [letter] = [r for r in dead if r["message_id"] == f"PA-{w}"]
    assert letter["error_code"] == "DQ_MISSING_KEY" and letter["original_key"] is None
