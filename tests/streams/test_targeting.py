from dataclasses import replace
from pathlib import Path

import pytest

from streams.config import ConfigError
from streams.routing import route_for
from streams.targeting import (
    PRE_ARRIVAL,
    PRE_LOADING,
    FilingFacts,
    load_targeting_rules,
    score_batch,
)

RULES = load_targeting_rules()

PLAIN = FilingFacts(
    stage=PRE_ARRIVAL,
    hs_codes=("610910",),
    text="cotton t-shirt",
    origins=frozenset({"CN"}),
    route=frozenset(),
    finding_codes=frozenset(),
    quality_score=1.0,
    value_per_kg=40.0,
    linked_outcome="ASSESSMENT_COMPLETE",
    has_link=True,
    by_air=True,
)


def codes(facts):
    [(score, reasons)] = score_batch([facts], RULES)
    return score, [r["code"] for r in reasons]


def test_plain_consignment_scores_nothing():
    assert codes(PLAIN) == (0.0, [])


@pytest.mark.parametrize(
    "change, code",
    [
        ({"hs_codes": ("850760",)}, "R_LITHIUM_BATTERY"),
        ({"text": "usb power bank 20000mah"}, "R_LITHIUM_BATTERY"),
        ({"text": "hunting knife"}, "R_WEAPON_OR_KNIFE"),
        ({"hs_codes": ("880622",)}, "R_DRONE"),
        ({"hs_codes": ("300490",)}, "R_MEDICINE"),
        ({"origins": frozenset({"CN", "IR"})}, "R_HIGH_RISK_ORIGIN"),
        ({"value_per_kg": 0.5}, "R_UNDERVALUATION"),
        ({"finding_codes": frozenset({"DQ_VAGUE_DESCRIPTION"})}, "R_VAGUE_DESCRIPTION"),
        ({"finding_codes": frozenset({"DQ_VAGUE_PARTY_NAME"})}, "R_VAGUE_PARTY"),
        ({"quality_score": 0.4}, "R_POOR_DATA_QUALITY"),
        ({"linked_outcome": "DO_NOT_LOAD"}, "R_PRE_LOADING_REFERRAL"),
        ({"linked_outcome": "REQUEST_FOR_INFORMATION"}, "R_PRE_LOADING_QUERY"),
        ({"linked_outcome": None, "has_link": False}, "R_NO_PRE_LOADING_FILING"),
    ],
)
def test_each_rule_fires_on_its_signal(change, code):
    _, fired = codes(replace(PLAIN, **change))
    assert fired == [code]


def test_keywords_match_whole_words_only():
    assert codes(replace(PLAIN, text="knifeless butter spreader"))[1] == []


def test_reasons_are_ordered_by_contribution_and_sum_to_the_score():
    score, reasons = score_batch([replace(PLAIN, text="hunting knife", value_per_kg=0.1)], RULES)[0]
    assert [r["code"] for r in reasons] == ["R_WEAPON_OR_KNIFE", "R_UNDERVALUATION"]
    assert score == sum(r["contribution"] for r in reasons)
    assert reasons[0]["evidence"] == "description mentions 'knife'"


def test_pre_arrival_only_conditions_do_not_fire_at_pre_loading():
    facts = replace(
        PLAIN, stage=PRE_LOADING, value_per_kg=0.1, has_link=False, route=frozenset({"AE", "SY"})
    )
    assert codes(facts)[1] == ["R_HIGH_RISK_ROUTE"]


def test_thresholds_map_scores_to_routes_and_placi_outcomes():
    t = RULES.thresholds
    assert route_for(PRE_ARRIVAL, t.hold - 1, t) == ("RELEASE", None)
    assert route_for(PRE_ARRIVAL, t.hold, t) == ("HOLD", None)
    assert route_for(PRE_ARRIVAL, t.inspect, t) == ("INSPECT", None)
    assert route_for(PRE_LOADING, 0, t) == ("RELEASE", "ASSESSMENT_COMPLETE")
    assert route_for(PRE_LOADING, t.request_for_information, t) == (
        "HOLD",
        "REQUEST_FOR_INFORMATION",
    )
    assert route_for(PRE_LOADING, t.high_risk_cargo_screening, t) == (
        "INSPECT",
        "HIGH_RISK_CARGO_SCREENING",
    )
    assert route_for(PRE_LOADING, t.do_not_load, t) == ("INSPECT", "DO_NOT_LOAD")


@pytest.mark.parametrize(
    "text, message",
    [
        ("version: 1\nthresholds: {}\nrules: []\n", "thresholds: missing"),
        ("rules: []\n", "expected 'version'"),
        (
            "version: 1\nthresholds: {pre_arrival: {hold: 50, inspect: 10}, pre_loading: "
            "{request_for_information: 1, high_risk_cargo_screening: 2, do_not_load: 3}}\n"
            "rules: []\n",
            "hold must not exceed inspect",
        ),
    ],
)
def test_invalid_rule_files_fail_with_the_file_named(tmp_path: Path, text, message):
    path = tmp_path / "t.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message) as err:
        load_targeting_rules(path)
    assert str(path) in str(err.value)


def test_invalid_rule_names_rule_and_field(tmp_path: Path):
    good = (
        Path(RULES.source)
        .read_text()
        .replace("value_per_kg_below: 2.0", "value_per_kg_below: cheap")
    )
    path = tmp_path / "t.yaml"
    path.write_text(good)
    with pytest.raises(ConfigError, match=r"\(R_UNDERVALUATION\)\.when\.value_per_kg_below"):
        load_targeting_rules(path)


def test_unknown_condition_is_refused(tmp_path: Path):
    path = tmp_path / "t.yaml"
    path.write_text(Path(RULES.source).read_text().replace("route_in:", "route_inn:"))
    with pytest.raises(ConfigError, match="unknown condition"):
        load_targeting_rules(path)
