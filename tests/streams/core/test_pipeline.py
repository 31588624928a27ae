import base64
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from greenlane.streams.core.pipeline import decision_id, revision_id
from greenlane.streams.domain.batch import InboundMessage
from greenlane.streams.domain.state import Overlay
from greenlane.streams.domain.vocabulary import PRE_ARRIVAL, PRE_LOADING
from greenlane.streams.runtime.serde import WireDecoder, WireEncoder
from tests.factories import NOW_MS, item, party, pre_arrival, pre_loading
from tests.streams.core.wire import IDS, SCHEMAS, SCHEMAS_DECISION, TOPIC, forwarded, messages


def raw(stage, value, offset=0, key=b"K"):
    return InboundMessage(key, value, TOPIC[stage], 3, offset, NOW_MS)


def test_every_filing_gets_exactly_one_decision_and_one_response(assessor):
    recs = [pre_loading(f"H{i}") for i in range(20)]
    committed: dict = {}
    links = Overlay(committed)
    out = assessor.assess(PRE_LOADING, messages(PRE_LOADING, recs), links, NOW_MS)
    assert len(out.decisions) == 20 and len(out.responses) == 20 and not out.dead_letters
    assert {d["placi_outcome"] for d in out.decisions} == {"ASSESSMENT_COMPLETE"}
    assert {r["status"] for _, r in out.responses} == {"ACCEPTED"}
    assert set(links.changes()) == {f"H{i}" for i in range(20)}
    assert committed == {}  # the batch's changes wait in its overlay for the runtime


def test_decisions_are_deterministic(assessor):
    msgs = messages(PRE_ARRIVAL, [pre_arrival("H1"), pre_arrival("H2")])
    a = assessor.assess(PRE_ARRIVAL, msgs, {}, NOW_MS)
    b = assessor.assess(PRE_ARRIVAL, msgs, {}, NOW_MS + 5000)
    assert a.decisions == b.decisions
    assert a.decisions[0]["decision_id"] == decision_id(PRE_ARRIVAL, msgs[0].value)
    assert a.decisions[0]["decision_id"] != a.decisions[1]["decision_id"]


def test_risky_goods_are_routed_with_reasons(assessor):
    rec = pre_arrival("H9", items=[item(description="hunting knife", hs_code="821191")])
    [d] = assessor.assess(PRE_ARRIVAL, messages(PRE_ARRIVAL, [rec]), {}, NOW_MS).decisions
    assert d["route"] == "INSPECT"
    assert d["reasons"][0]["code"] == "R_WEAPON_OR_KNIFE"
    assert d["risk_score"] == sum(r["contribution"] for r in d["reasons"])


def test_bad_bytes_unknown_schema_and_unusable_records_are_dead_lettered(assessor):
    unusable = pre_arrival("H3", items=[])
    enc = WireEncoder(SCHEMAS[PRE_ARRIVAL], IDS[PRE_ARRIVAL])
    batch = [
        raw(PRE_ARRIVAL, b"\xffgarbage", 0),
        raw(PRE_ARRIVAL, b"\x00\x00\x00\x03\xe7" + enc.encode(pre_arrival())[5:], 1),
        raw(PRE_ARRIVAL, enc.encode(unusable), 2, key=b"H3"),
        *messages(PRE_ARRIVAL, [pre_arrival("H4")], start_offset=3),
    ]
    out = assessor.assess(PRE_ARRIVAL, batch, {}, NOW_MS)
    assert [dl["error_code"] for _, dl in out.dead_letters] == [
        "UNDECODABLE",
        "UNKNOWN_SCHEMA_ID",
        "UNUSABLE_RECORD",
    ]
    assert [dl["source_offset"] for _, dl in out.dead_letters] == [0, 1, 2]
    assert out.dead_letters[0][1]["original_value"] == b"\xffgarbage"
    assert out.dead_letters[1][1]["schema_id"] == 999
    assert out.dead_letters[2][1]["carrier_id"] == "EXPRESS-01"
    assert len(out.decisions) == 1
    rejected = [r for _, r in out.responses if r["status"] == "REJECTED"]
    assert len(rejected) == 3 and rejected[0]["codes"][0]["code"] == "DL_UNDECODABLE"
    assert rejected[2]["house_waybill"] == "H3"


def test_a_pre_loading_filed_on_the_wrong_topic_is_a_dead_letter(assessor):
    enc = WireEncoder(SCHEMAS[PRE_LOADING], IDS[PRE_LOADING])
    out = assessor.assess(PRE_ARRIVAL, [raw(PRE_ARRIVAL, enc.encode(pre_loading()))], {}, NOW_MS)
    assert out.dead_letters[0][1]["error_code"] == "WRONG_SCHEMA"


def test_pre_arrival_sees_the_pre_loading_outcome(assessor):
    pl = pre_loading(
        "H5", cargo_description="lithium battery packs", hs_code="850760", route=["CN", "IR", "DE"]
    )
    links: dict = {}
    first = assessor.assess(PRE_LOADING, messages(PRE_LOADING, [pl]), links, NOW_MS)
    [pl_decision] = first.decisions
    assert pl_decision["placi_outcome"] == "HIGH_RISK_CARGO_SCREENING"
    [pa_decision] = assessor.assess(
        PRE_ARRIVAL, messages(PRE_ARRIVAL, [pre_arrival("H5")]), links, NOW_MS
    ).decisions
    assert pa_decision["linked_placi_outcome"] == "HIGH_RISK_CARGO_SCREENING"
    assert pa_decision["linked_decision_id"] == pl_decision["decision_id"]
    assert pa_decision["route"] == "INSPECT"
    assert "R_PRE_LOADING_REFERRAL" in [r["code"] for r in pa_decision["reasons"]]


def test_pre_arrival_first_is_reassessed_when_its_pre_loading_changes_the_lane(assessor):
    links: dict = {}
    arrival = assessor.assess(
        PRE_ARRIVAL, messages(PRE_ARRIVAL, [pre_arrival("H6")]), links, NOW_MS
    )
    [pa] = arrival.decisions
    assert pa["route"] == "RELEASE" and pa["linked_placi_outcome"] is None
    assert [r["code"] for r in pa["reasons"]] == ["R_NO_PRE_LOADING_FILING"]
    pl = pre_loading("H6", cargo_description="drone with lithium battery", hs_code="880622")
    out = assessor.assess(PRE_LOADING, messages(PRE_LOADING, [pl]), links, NOW_MS)
    assert [d["stage"] for d in out.decisions] == [PRE_LOADING, PRE_ARRIVAL]
    revised = out.decisions[1]
    assert revised["revision"] == 1 and revised["route"] == "INSPECT"
    assert revised["linked_placi_outcome"] == "HIGH_RISK_CARGO_SCREENING"
    assert revised["message_id"] == "PA-H6"
    assert revised["decision_id"] != pa["decision_id"]
    assert len(out.responses) == 2
    entry = links["H6"]["pre_arrival"]
    assert entry["revision"] == 1 and entry["decision_id"] == revised["decision_id"]
    assert entry["route"] == "INSPECT"


def test_a_pre_loading_that_only_answers_the_missing_filing_revises_the_codes(assessor):
    links: dict = {}
    assessor.assess(PRE_ARRIVAL, messages(PRE_ARRIVAL, [pre_arrival("H7")]), links, NOW_MS)
    out = assessor.assess(PRE_LOADING, messages(PRE_LOADING, [pre_loading("H7")]), links, NOW_MS)
    assert [d["stage"] for d in out.decisions] == [PRE_LOADING, PRE_ARRIVAL]
    revised = out.decisions[1]
    assert revised["revision"] == 1 and revised["route"] == "RELEASE"
    assert revised["reasons"] == []  # the carrier is no longer told a filing is missing
    # an amendment of the pre-loading that changes nothing the declaration shows adds nothing
    amended = pre_loading("H7", message_id="PL-H7-2")
    again = assessor.assess(
        PRE_LOADING, messages(PRE_LOADING, [amended], start_offset=1), links, NOW_MS
    )
    assert [(d["stage"], d["revision"]) for d in again.decisions] == [(PRE_LOADING, 1)]
    assert links["H7"]["pre_arrival"]["revision"] == 1


def test_quality_findings_reach_the_decision_the_response_and_the_counts(assessor):
    rec = pre_arrival("H8", items=[item(description="gift", hs_code="999999")])
    out = assessor.assess(PRE_ARRIVAL, messages(PRE_ARRIVAL, [rec]), {}, NOW_MS)
    [d] = out.decisions
    codes = {f["code"] for f in d["quality_findings"]}
    assert {"DQ_VAGUE_DESCRIPTION", "DQ_UNKNOWN_HS_CODE"} <= codes
    assert d["quality_score"] < 1.0
    assert out.findings["DQ_VAGUE_DESCRIPTION"] == 1
    response_codes = {c["code"] for c in out.responses[0][1]["codes"]}
    assert "DQ_VAGUE_DESCRIPTION" in response_codes and "R_VAGUE_DESCRIPTION" in response_codes


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.binary(max_size=64),
            st.builds(lambda body: b"\x00\x00\x00\x00\x02" + body, st.binary(max_size=200)),
            st.sampled_from(
                [
                    pre_arrival("HX"),
                    pre_arrival("HY", items=[]),
                    pre_arrival("", items=[item(currency="???")]),
                ]
            ),
        ),
        max_size=30,
    )
)
def test_nothing_is_lost_and_nothing_raises_whatever_arrives(assessor, batch):
    """Every message yields exactly one carrier response and one decision or dead letter."""
    enc = WireEncoder(SCHEMAS[PRE_ARRIVAL], IDS[PRE_ARRIVAL])
    msgs = [
        raw(PRE_ARRIVAL, b if isinstance(b, bytes) else enc.encode(b), i)
        for i, b in enumerate(batch)
    ]
    out = assessor.assess(PRE_ARRIVAL, msgs, {}, NOW_MS)
    assert len(out.responses) == len(msgs)
    decided = {d["source_offset"] for d in out.decisions}
    dead = {dl["source_offset"] for _, dl in out.dead_letters}
    assert decided | dead == set(range(len(msgs))) and not decided & dead


def test_pre_arrival_decisions_carry_the_revenue_assessment(assessor):
    [d] = assessor.assess(
        PRE_ARRIVAL, messages(PRE_ARRIVAL, [pre_arrival("HR1")]), {}, NOW_MS
    ).decisions
    rev = d["revenue"]
    assert rev["destination"] == "DE" and rev["administration"] == "EU"
    assert rev["currency"] == "EUR" and rev["intrinsic_value"] == pytest.approx(24.0)
    assert rev["tax"] > 0 and rev["revenue_at_risk"] >= rev["duty"]
    [pl] = assessor.assess(
        PRE_LOADING, messages(PRE_LOADING, [pre_loading("HR1")]), {}, NOW_MS
    ).decisions
    assert pl["revenue"] is None


def test_random_picks_are_flagged_explained_and_replayable(assessor):
    recs = [pre_arrival(f"RP{i:05d}") for i in range(3000)]
    out = assessor.assess(PRE_ARRIVAL, messages(PRE_ARRIVAL, recs), {}, NOW_MS)
    picks = [d for d in out.decisions if d["random_pick"]]
    assert 0 < len(picks) < 60  # a small configured share of 3,000
    assert all(d["route"] == "INSPECT" for d in picks)
    assert all("L_RANDOM_SELECTION" in [r["code"] for r in d["reasons"]] for d in picks)
    # examined only because picked: each stands for 1/rate released consignments (feedback)
    rate = assessor.lanes.settings.for_destination("DE").min_random_rate
    assert all(d["selection_propensity"] == rate for d in picks if d["risk_score"] == 0)
    released = [d for d in out.decisions if d["route"] == "RELEASE"]
    assert {d["selection_propensity"] for d in released} <= {rate, 0.003, 0.01, 0.005}
    again = assessor.assess(PRE_ARRIVAL, messages(PRE_ARRIVAL, recs), {}, NOW_MS)
    assert [d["house_waybill"] for d in again.decisions if d["random_pick"]] == [
        d["house_waybill"] for d in picks
    ]


def test_decision_schema_embeds_the_revenue_record_of_the_revenue_module():
    from greenlane.streams.stages.revenue import avro_schema

    fields = {f["name"]: f for f in SCHEMAS_DECISION["fields"]}
    assert fields["revenue"]["type"][1] == avro_schema()


def test_decisions_encode_with_the_registered_schema(assessor):
    recs = [pre_arrival("HE1"), pre_arrival("HE2", items=[item(description="tramadol")])]
    out = assessor.assess(PRE_ARRIVAL, messages(PRE_ARRIVAL, recs), {}, NOW_MS)
    enc = WireEncoder(SCHEMAS_DECISION, 9)
    dec = WireDecoder(SCHEMAS_DECISION, lambda i: json.dumps(SCHEMAS_DECISION))
    decoded = dec.decode_batch([enc.encode(d) for d in out.decisions])
    assert [d["forced_outcome"] for d in decoded] == [None, "INSPECT"]
    assert decoded[0]["revenue"]["administration"] == "EU"


def test_split_shipments_flag_the_group_on_the_sellers_partition_and_amend_every_member(
    assessor, sellers
):
    state: dict = {}
    links: dict = {}
    buyer = {
        "consignee": {
            "name": "Jan Kowalski",
            "address": "ul. Lipowa 5, 00-001 Warszawa",
            "country": "PL",
            "party_id": None,
        }
    }

    def parcel(n):
        return pre_arrival(
            f"SP{n}", destination_country="PL", items=[item(value=60.0, net_weight_kg=0.4)], **buyer
        )

    def commit(*pairs):
        for committed, overlay in pairs:
            assert None not in overlay.changes().values()
            committed.update(overlay.changes())

    firsts, amended = [], []
    for n in range(3):  # one parcel per batch, 60 EUR each; the EU's IOSS cap is 150 EUR
        now = NOW_MS + n * 3_600_000
        batch_links, batch_state = Overlay(links), Overlay(state)
        msgs = messages(PRE_ARRIVAL, [parcel(n)], start_offset=n)
        out = assessor.assess(PRE_ARRIVAL, msgs, batch_links, now, patterns=batch_state)
        commit((links, batch_links), (state, batch_state))
        [d] = out.decisions
        assert d["revision"] == 0 and "P_SPLIT_SHIPMENT" not in {r["code"] for r in d["reasons"]}
        firsts.append(d)
        # the declaration, re-keyed by seller: digests only, to the seller's partition
        [obs] = out.forwards
        assert obs.role == "pattern_observation" and obs.key == obs.record["seller_key"].encode()
        assert "Kowalski" not in json.dumps(obs.record)
        assert obs.record["filing_partition"] == 0
        seller_state = Overlay(state)
        found = sellers.assess(forwarded(out, "pattern_observation"), seller_state, now)
        commit((state, seller_state))
        amend_links = Overlay(links)
        changed = assessor.amend(forwarded(found, "pattern_finding"), amend_links, now)
        commit((links, amend_links))
        amended.append(changed)
    assert [o.decisions for o in amended[:2]] == [[], []]
    third = {d["house_waybill"]: d for d in amended[2].decisions}
    assert set(third) == {"SP0", "SP1", "SP2"}  # every member of the group, once
    for n, waybill in enumerate(("SP0", "SP1", "SP2")):
        d = third[waybill]
        assert d["revision"] == 1 and d["reasons"][0]["code"] == "P_SPLIT_SHIPMENT"
        assert d["revision_cause"] == "PATTERN_FINDING"
        assert "180" in d["reasons"][0]["evidence"]
        assert d["decision_id"] == revision_id(firsts[n]["decision_id"], 1)
        assert d["message_id"] == f"PA-{waybill}"
        assert d["risk_score"] == firsts[n]["risk_score"] + d["reasons"][0]["contribution"]
        assert links[waybill]["pre_arrival"]["revision"] == 1
        assert [f["code"] for f in links[waybill]["pre_arrival"]["flags"]] == ["P_SPLIT_SHIPMENT"]
    assert len(amended[2].responses) == 3 and len(amended[2].amended_from) == 3
    enc = WireEncoder(SCHEMAS_DECISION, 9)
    assert all(enc.encode(d) for d in amended[2].decisions)  # amendments are complete records
    for d in amended[2].decisions:
        assert d["risk_score"] == sum(r["contribution"] for r in d["reasons"])
        assert d["revenue"] is not None

    # a re-assessment (the pre-loading arrives) keeps the pattern's reason
    pl = pre_loading("SP0", cargo_description="drone with lithium battery", hs_code="880622")
    reassessed = assessor.assess(PRE_LOADING, messages(PRE_LOADING, [pl]), Overlay(links), NOW_MS)
    revised = reassessed.decisions[1]
    assert revised["revision"] == 2 and revised["route"] == "INSPECT"
    assert {"P_SPLIT_SHIPMENT", "R_PRE_LOADING_REFERRAL"} <= {r["code"] for r in revised["reasons"]}

    # a finding delivered twice amends once (the link remembers the pattern)
    again = assessor.amend(forwarded(found, "pattern_finding"), Overlay(links), NOW_MS)
    assert again.decisions == [] and again.unapplied == 3
    # and through the replay log it republishes the same revisions
    log: dict = {}
    fresh_links = Overlay(
        {k: dict(v, pre_arrival=dict(v["pre_arrival"], flags=[])) for k, v in links.items()}
    )
    first = assessor.amend(forwarded(found, "pattern_finding"), fresh_links, NOW_MS, replay_log=log)
    replayed = assessor.amend(
        forwarded(found, "pattern_finding"), Overlay(links), NOW_MS, replay_log=log
    )
    assert replayed.decisions == first.decisions and replayed.replayed == 3

    other_seller = parcel(9)
    other_seller["seller"] = {
        "name": "Another Shop Ltd",
        "address": "2 High St, Leeds",
        "country": "GB",
        "party_id": "S-2",
    }
    out = assessor.assess(
        PRE_ARRIVAL,
        messages(PRE_ARRIVAL, [other_seller], start_offset=9),
        Overlay(links),
        NOW_MS + 4 * 3_600_000,
        patterns=Overlay(state),
    )
    found = sellers.assess(forwarded(out, "pattern_observation"), Overlay(state), NOW_MS)
    assert found.forwards == []


def test_list_matches_are_reasons_but_watchlist_internals_never_reach_the_carrier(assessor):
    seller = {
        "name": "Huaxin Supply Chain Co., Ltd.",
        "address": "8 Gangwan Rd, Shenzhen",
        "country": "CN",
        "party_id": None,
    }
    rec = pre_arrival("WL1", seller=seller, carrier_id="DHLEXPRESS")
    out = assessor.assess(PRE_ARRIVAL, messages(PRE_ARRIVAL, [rec]), {}, NOW_MS)
    [d] = out.decisions
    by_code = {r["code"]: r for r in d["reasons"]}
    assert "W-0001" in by_code["W_PARTY_WATCHLIST"]["evidence"]
    assert by_code["T_AEO_CARRIER"]["contribution"] < 0
    response_codes = {c["code"] for c in out.responses[0][1]["codes"]}
    assert "T_AEO_CARRIER" in response_codes and "W_PARTY_WATCHLIST" not in response_codes


def test_link_entries_remember_when_and_where_for_the_retention_sweep(assessor):
    msgs = messages(PRE_LOADING, [pre_loading("RT1")])
    links: dict = {}
    assessor.assess(PRE_LOADING, msgs, links, NOW_MS)
    entry = links["RT1"]
    assert entry["partition"] == msgs[0].partition
    assert entry["filed_at"] == pre_loading("RT1")["filing_time"]


def test_a_filing_that_breaks_the_assessment_is_dead_lettered_alone(assessor, monkeypatch):
    real = assessor._decision

    def fragile(stage, record, *args, **kwargs):
        if record["house_waybill"] == "BOOM":
            raise ZeroDivisionError("an unforeseen defect")
        return real(stage, record, *args, **kwargs)

    monkeypatch.setattr(assessor, "_decision", fragile)
    committed: dict = {}
    links = Overlay(committed)
    msgs = messages(PRE_LOADING, [pre_loading("OK1"), pre_loading("BOOM"), pre_loading("OK2")])
    out = assessor.assess_isolated(PRE_LOADING, msgs, links, NOW_MS)
    assert [d["house_waybill"] for d in out.decisions] == ["OK1", "OK2"]
    assert out.decision_sources == [0, 2]
    [(_, dead)] = out.dead_letters
    assert dead["error_code"] == "ASSESSMENT_FAILED"
    assert "an unforeseen defect" in dead["error_message"]
    assert dead["source_offset"] == msgs[1].offset
    assert {r["status"] for _, r in out.responses} == {"ACCEPTED", "REJECTED"}
    assert len(out.responses) == 3  # the carrier hears about every filing
    assert set(links.changes()) == {"OK1", "OK2"} and committed == {}


def _commit(tables: dict, views: dict) -> None:
    for name, view in views.items():
        for key, value in view.changes().items():
            if value is None:
                tables[name].pop(key, None)
            else:
                tables[name][key] = value


def _assess(assessor, stage, msgs, tables, now_ms=NOW_MS):
    views = {name: Overlay(table) for name, table in tables.items()}
    arrival = stage == PRE_ARRIVAL
    out = assessor.assess(
        stage,
        msgs,
        views["links"],
        now_ms,
        views["patterns"] if arrival else None,
        views["summaries"] if arrival else None,
        views["replay"],
    )
    return out, views


def test_a_replayed_batch_republishes_the_same_decisions_and_changes_no_state(assessor):
    tables = {"links": {}, "patterns": {}, "summaries": {}, "replay": {}}
    buyer = party("Jan Kowalski", "PL", address="ul. Lipowa 5, 00-001 Warszawa")
    parcels = [
        pre_arrival(
            f"RP{n}",
            destination_country="PL",
            consignee=buyer,
            items=[item(value=60.0, net_weight_kg=0.4)],
        )
        for n in range(3)
    ]  # together over the EU's 150 EUR (found on the seller's partition, core.entities)
    first_out, views = _assess(assessor, PRE_ARRIVAL, messages(PRE_ARRIVAL, parcels[:2]), tables)
    _commit(tables, views)
    msgs = messages(PRE_ARRIVAL, parcels[2:], start_offset=2)
    out, views = _assess(assessor, PRE_ARRIVAL, msgs, tables)
    _commit(tables, views)
    # RP2's decision, and its observation re-keyed for the seller's partition
    assert len(out.decisions) == 1 and len(out.forwards) == 1 and out.replayed == 0
    state_before = json.dumps(tables, sort_keys=True)

    # the worker crashed before the batch's offsets were committed: it comes again, later
    again, views = _assess(assessor, PRE_ARRIVAL, msgs, tables, now_ms=NOW_MS + 60_000)
    assert again.decisions == out.decisions and again.replayed == 1
    assert again.forwards == out.forwards  # the observation is sent again as it was
    assert [k for k, _ in again.responses] == [k for k, _ in out.responses]
    assert all(not v.changes() for v in views.values())  # nothing applied twice
    _commit(tables, views)
    assert json.dumps(tables, sort_keys=True) == state_before

    # a batch cut differently on replay: the known filing is republished, the new one assessed
    mixed = messages(PRE_ARRIVAL, [parcels[1], pre_arrival("RP9")], start_offset=1)
    out, views = _assess(assessor, PRE_ARRIVAL, mixed, tables)
    assert out.replayed == 1
    assert [d["house_waybill"] for d in out.decisions] == ["RP9", "RP1"]
    assert out.decisions[1] == first_out.decisions[1]
    assert set(views["replay"].changes()) == {decision_id(PRE_ARRIVAL, mixed[1].value)}


def test_a_replayed_pre_loading_filing_republishes_the_revision_it_caused(assessor):
    tables = {"links": {}, "patterns": {}, "summaries": {}, "replay": {}}
    _, views = _assess(assessor, PRE_ARRIVAL, messages(PRE_ARRIVAL, [pre_arrival("RV1")]), tables)
    _commit(tables, views)
    pl = pre_loading("RV1", cargo_description="drone with lithium battery", hs_code="880622")
    msgs = messages(PRE_LOADING, [pl])
    out, views = _assess(assessor, PRE_LOADING, msgs, tables)
    _commit(tables, views)
    assert [d["revision"] for d in out.decisions] == [0, 1]
    again, views = _assess(assessor, PRE_LOADING, msgs, tables)
    assert again.decisions == out.decisions and again.decision_sources == [0, 0]
    assert not views["links"].changes()


def test_a_filing_delivered_twice_in_one_batch_is_a_replay_not_an_amendment(assessor):
    tables = {"links": {}, "patterns": {}, "summaries": {}, "replay": {}}
    _, views = _assess(assessor, PRE_ARRIVAL, messages(PRE_ARRIVAL, [pre_arrival("RT1")]), tables)
    _commit(tables, views)
    pl = pre_loading("RT1", cargo_description="drone with lithium battery", hs_code="880622")
    out, views = _assess(assessor, PRE_LOADING, messages(PRE_LOADING, [pl, pl]), tables)
    first = [d for d, pos in zip(out.decisions, out.decision_sources, strict=True) if pos == 0]
    second = [d for d, pos in zip(out.decisions, out.decision_sources, strict=True) if pos == 1]
    assert [(d["stage"], d["revision"]) for d in first] == [("PRE_LOADING", 0), ("PRE_ARRIVAL", 1)]
    assert second == first and out.replayed == 2  # the copy answers as the first did
    assert {d["revision_cause"] for d in out.decisions} == {"FILING", "OTHER_FILING"}
    _commit(tables, views)
    assert tables["links"]["RT1"]["pre_loading"]["revision"] == 0


def test_a_link_entry_keeps_each_stage_latest_filing_as_received(assessor):
    rec = pre_arrival("PD1", seller=party("Huaxin Supply Chain Co., Ltd.", "CN"))
    links: dict = {}
    msgs = messages(PRE_ARRIVAL, [rec])
    assessor.assess(PRE_ARRIVAL, msgs, links, NOW_MS)
    side = links["PD1"]["pre_arrival"]
    assert base64.b64decode(side["filing"]) == msgs[0].value  # the bytes, not decoded fields
    assert "Huaxin" not in json.dumps(links)
    [again] = assessor.decoders[PRE_ARRIVAL].decode_batch([base64.b64decode(side["filing"])])
    assert again["seller"]["name"] == "Huaxin Supply Chain Co., Ltd."
    assert side["source"] == [msgs[0].topic, msgs[0].partition, msgs[0].offset]


def test_re_assessment_from_the_kept_facts_equals_assessing_in_filing_order(assessor):
    pl = pre_loading("RO1", cargo_description="drone with lithium battery", hs_code="880622")
    pa = pre_arrival("RO1")
    in_order: dict = {}
    assessor.assess(PRE_LOADING, messages(PRE_LOADING, [pl]), in_order, NOW_MS)
    [expected] = assessor.assess(
        PRE_ARRIVAL, messages(PRE_ARRIVAL, [pa]), in_order, NOW_MS
    ).decisions
    reversed_order: dict = {}
    assessor.assess(PRE_ARRIVAL, messages(PRE_ARRIVAL, [pa]), reversed_order, NOW_MS)
    out = assessor.assess(PRE_LOADING, messages(PRE_LOADING, [pl]), reversed_order, NOW_MS)
    revised = out.decisions[1]
    same = ("route", "risk_score", "reasons", "referrals", "revenue", "quality_findings")
    assert {k: revised[k] for k in same} == {k: expected[k] for k in same}
    assert set(revised) == set(expected)  # one builder: every revision has every field
