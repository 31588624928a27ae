"""Amendments and re-assessment: the latest filing of each stage counts, and a change on one
side assesses the other again with the full engine (core.pipeline)."""

from dataclasses import replace

from greenlane.models.feedback import join_outcomes
from greenlane.streams.core.pipeline import Assessor, decision_id, revision_id
from greenlane.streams.domain.vocabulary import PRE_ARRIVAL, PRE_LOADING
from greenlane.streams.runtime.serde import WireDecoder, WireEncoder
from greenlane.streams.settings import SETTINGS_DIR
from greenlane.streams.stages import quality
from greenlane.streams.stages.lanes import load_lane_settings
from greenlane.streams.stages.targeting import load_targeting_rules
from tests.factories import NOW_MS, item, party, pre_arrival, pre_loading
from tests.streams.core.wire import SCHEMAS, SCHEMAS_DECISION, fetch, messages

KNIFE = [item(description="hunting knife with fixed blade", hs_code="821191")]
PISTOL = {"cargo_description": "pistol replica parts", "hs_code": "930510"}
DRONE = {"cargo_description": "drone with lithium battery", "hs_code": "880622"}


class Consignment:
    """One consignment's filings through the batch core, with its tables."""

    def __init__(self, assessor, waybill):
        self.assessor = assessor
        self.waybill = waybill
        self.links: dict = {}
        self.summaries: dict = {}
        self.patterns: dict = {}
        self.offset = 0
        self.published: list[dict] = []

    def file(self, stage, **over):
        make = pre_loading if stage == PRE_LOADING else pre_arrival
        record = make(self.waybill, **over)
        msgs = messages(stage, [record], start_offset=self.offset)
        self.offset += 1
        out = self.assessor.assess(
            stage,
            msgs,
            self.links,
            NOW_MS,
            self.patterns if stage == PRE_ARRIVAL else None,
            self.summaries,
        )
        self.published += out.decisions
        for d in out.decisions:  # every revision is whole
            assert d["risk_score"] == sum(r["contribution"] for r in d["reasons"])
            assert WireEncoder(SCHEMAS_DECISION, 9).encode(d)
        return out, msgs[0]


def test_an_amended_declaration_that_raises_the_route_is_the_next_revision(assessor):
    c = Consignment(assessor, "AM1")
    c.file(PRE_LOADING)
    [first] = c.file(PRE_ARRIVAL)[0].decisions
    assert first["route"] == "RELEASE" and first["revision"] == 0
    out, msg = c.file(PRE_ARRIVAL, message_id="PA-AM1-2", items=KNIFE)
    [amended] = out.decisions  # the pre-loading reads nothing of the declaration: not revised
    assert amended["route"] == "INSPECT" and amended["revision"] == 1
    assert (first["revision_cause"], amended["revision_cause"]) == ("FILING", "AMENDMENT")
    assert amended["decision_id"] == decision_id(PRE_ARRIVAL, msg.value)
    assert amended["revenue"] is not None and amended["linked_placi_outcome"]
    assert c.links["AM1"]["pre_arrival"]["decision_id"] == amended["decision_id"]
    assert amended["decision_id"] in c.summaries  # an outcome for the revision joins


def test_an_amended_declaration_that_lowers_the_route_is_published_too(assessor):
    c = Consignment(assessor, "AM2")
    c.file(PRE_LOADING)
    [first] = c.file(PRE_ARRIVAL, items=KNIFE)[0].decisions
    assert first["route"] == "INSPECT"
    [amended] = c.file(PRE_ARRIVAL, message_id="PA-AM2-2")[0].decisions
    assert amended["route"] == "RELEASE" and amended["revision"] == 1
    assert amended["reasons"] == []


def test_an_amended_pre_loading_that_stops_loading_raises_the_declaration(assessor):
    c = Consignment(assessor, "AM3")
    c.file(PRE_LOADING)
    [declared] = c.file(PRE_ARRIVAL)[0].decisions
    assert declared["route"] == "RELEASE"
    out, _ = c.file(PRE_LOADING, message_id="PL-AM3-2", **PISTOL)
    pl, pa = out.decisions
    assert (pl["stage"], pl["placi_outcome"], pl["revision"]) == (PRE_LOADING, "DO_NOT_LOAD", 1)
    assert pa["stage"] == PRE_ARRIVAL and pa["route"] == "INSPECT" and pa["revision"] == 1
    assert pa["linked_placi_outcome"] == "DO_NOT_LOAD" and pa["revision_cause"] == "OTHER_FILING"
    assert pa["linked_decision_id"] == pl["decision_id"]
    assert pa["decision_id"] == revision_id(declared["decision_id"], 1)
    assert "R_PRE_LOADING_REFERRAL" in {r["code"] for r in pa["reasons"]}


def test_an_amended_pre_loading_that_clears_screening_lowers_the_declaration(assessor):
    c = Consignment(assessor, "AM4")
    c.file(PRE_LOADING, **DRONE)
    [pa] = c.file(PRE_ARRIVAL)[0].decisions
    assert pa["linked_placi_outcome"] == "HIGH_RISK_CARGO_SCREENING" and pa["route"] == "INSPECT"
    pl, revised = c.file(PRE_LOADING, message_id="PL-AM4-2")[0].decisions
    assert pl["placi_outcome"] == "ASSESSMENT_COMPLETE"
    assert revised["route"] == "RELEASE" and revised["revision"] == 1
    assert "R_PRE_LOADING_REFERRAL" not in {r["code"] for r in revised["reasons"]}


def test_every_transport_mode_is_re_assessed_when_a_pre_loading_arrives(assessor):
    c = Consignment(assessor, "AM5")
    [first] = c.file(PRE_ARRIVAL, transport_mode="SEA")[0].decisions
    assert first["route"] == "RELEASE"
    _, revised = c.file(PRE_LOADING, **PISTOL)[0].decisions
    assert revised["route"] == "INSPECT" and revised["linked_placi_outcome"] == "DO_NOT_LOAD"


def test_a_re_assessment_runs_the_lists_revenue_and_model_again(assessor):
    watched = party("Huaxin Supply Chain Co., Ltd.", "CN", address="8 Gangwan Rd, Shenzhen")
    c = Consignment(assessor, "AM6")
    [first] = c.file(PRE_ARRIVAL, seller=watched)[0].decisions
    _, revised = c.file(PRE_LOADING, **DRONE)[0].decisions
    kinds = lambda d: {r["code"] for r in d["reasons"]}  # noqa: E731
    listed = {k for k in kinds(first) if k.startswith("W_")}
    assert listed and listed <= kinds(revised)  # the list reasons were found again
    assert revised["revenue"] == first["revenue"]
    assert revised["referrals"] == assessor.targeting_rules.referrals(revised["reasons"])


def test_two_versions_in_one_batch_are_a_filing_and_its_amendment(assessor):
    links: dict = {}
    batch = [pre_arrival("AM7"), pre_arrival("AM7", message_id="PA-AM7-2", items=KNIFE)]
    out = assessor.assess(PRE_ARRIVAL, messages(PRE_ARRIVAL, batch), links, NOW_MS)
    assert [(d["revision"], d["route"]) for d in out.decisions] == [(0, "RELEASE"), (1, "INSPECT")]
    assert links["AM7"]["pre_arrival"]["revision"] == 1


def test_an_outcome_for_a_revision_joins_its_decision(assessor):
    c = Consignment(assessor, "AM8")
    c.file(PRE_ARRIVAL)
    _, revised = c.file(PRE_LOADING, **DRONE)[0].decisions
    outcome = {
        "decision_id": revised["decision_id"],
        "house_waybill": "AM8",
        "result": "NO_FINDINGS",
        "recovered_revenue": 0.0,
        "currency": "EUR",
        "officer": "T-1",
        "inspected_at": NOW_MS,
        "notes": None,
    }
    rows, unmatched = join_outcomes([outcome], c.summaries, assessor.rates)
    assert unmatched == [] and rows[0]["decision_id"] == revised["decision_id"]


def test_a_declaration_with_an_unreadable_hs_code_is_held_not_released(assessor):
    rec = pre_arrival("QE1", items=[item(hs_code="8518.30")])
    out = assessor.assess(PRE_ARRIVAL, messages(PRE_ARRIVAL, [rec]), {}, NOW_MS)
    [d] = out.decisions
    assert d["route"] == "HOLD" and d["forced_outcome"] == "HOLD"
    codes = {c["code"] for c in out.responses[0][1]["codes"]}
    assert {"DQ_UNKNOWN_HS_CODE", "Q_HOLD"} <= codes


def test_a_pre_loading_missing_a_7_plus_1_element_gets_a_request_for_information(assessor):
    rec = pre_loading("QE2", consignee=party("Anna Schmidt", "DE", address=""))
    [d] = assessor.assess(PRE_LOADING, messages(PRE_LOADING, [rec]), {}, NOW_MS).decisions
    assert d["placi_outcome"] == "REQUEST_FOR_INFORMATION" and d["route"] == "HOLD"


def test_an_unkeyed_or_wrongly_keyed_filing_is_dead_lettered_and_answered_by_waybill(assessor):
    recs = [pre_arrival("QE3"), pre_arrival("QE4")]
    msgs = messages(PRE_ARRIVAL, recs)
    msgs = [replace(msgs[0], key=None), replace(msgs[1], key=b"QE3")]
    links: dict = {}
    out = assessor.assess(PRE_ARRIVAL, msgs, links, NOW_MS)
    assert out.decisions == [] and links == {}
    assert [dl["error_code"] for _, dl in out.dead_letters] == [
        "DQ_MISSING_KEY",
        "DQ_KEY_NOT_WAYBILL",
    ]
    assert [(key, r["status"]) for key, r in out.responses] == [
        (b"QE3", "REJECTED"),
        (b"QE4", "REJECTED"),
    ]
    assert out.responses[1][1]["codes"][0]["code"] == "DL_DQ_KEY_NOT_WAYBILL"


def test_a_decision_records_the_version_of_every_settings_set(tmp_path):
    fresh = Assessor(
        quality.load_quality_rules(),
        load_targeting_rules(),
        {s: WireDecoder(SCHEMAS[s], fetch) for s in SCHEMAS},
    )
    msgs = messages(PRE_ARRIVAL, [pre_arrival("SV1")])
    [d] = fresh.assess(PRE_ARRIVAL, msgs, {}, NOW_MS).decisions
    versions = d["settings_versions"]
    assert set(versions) == {"profiles", "lists", "lanes", "revenue", "quality", "patterns"}
    assert versions["profiles"] == d["ruleset_version"]
    assert versions["quality"] == fresh.quality_rules.digest
    assert "watchlist_parties.yaml@" in versions["lists"]
    lanes = tmp_path / "lanes.yaml"
    lanes.write_text((SETTINGS_DIR / "lanes.yaml").read_text().replace("2026.12.1", "2027.2"))
    fresh.reconfigure(lanes=load_lane_settings(lanes))
    [again] = fresh.assess(PRE_ARRIVAL, msgs, {}, NOW_MS).decisions
    assert again["settings_versions"]["lanes"] == "2027.2"
    assert again["settings_versions"]["quality"] == versions["quality"]
