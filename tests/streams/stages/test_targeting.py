import os
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from greenlane.streams.domain.vocabulary import PRE_ARRIVAL, PRE_LOADING
from greenlane.streams.settings import ConfigError
from greenlane.streams.stages.routing import route_for
from greenlane.streams.stages.targeting import (
    DEFAULT_FOLDER,
    FilingFacts,
    RuleBook,
    load_targeting_rules,
    score_batch,
)

RULES = load_targeting_rules()
DAY_MS = 86_400_000
JAN_2027 = 1_798_761_600_000  # 2027-01-01T00:00:00Z

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
    dispatch=frozenset({"CN"}),
    total_value=20.0,
    weight_kg=0.5,
    carrier_id="EXPRESS-01",
    platform="ShopFast",
    filing_time=JAN_2027,
)


def codes(facts, rules=RULES):
    [(score, reasons, forced)] = score_batch([facts], rules)
    return score, [r["code"] for r in reasons], forced


def test_plain_consignment_scores_nothing():
    assert codes(PLAIN) == (0.0, [], None)


@pytest.mark.parametrize(
    "change, code",
    [
        ({"hs_codes": ("850760",)}, "R_LITHIUM_BATTERY"),
        ({"text": "usb power bank 20000mah"}, "R_LITHIUM_BATTERY"),
        ({"text": "hunting knife"}, "R_WEAPON_OR_KNIFE"),
        ({"hs_codes": ("880622",)}, "R_DRONE"),
        ({"hs_codes": ("300490",)}, "R_MEDICINE"),
        ({"origins": frozenset({"CN", "YE"})}, "R_HIGH_RISK_ORIGIN"),
        ({"value_per_kg": 0.5}, "R_UNDERVALUATION"),
        ({"finding_codes": frozenset({"DQ_VAGUE_DESCRIPTION"})}, "R_VAGUE_DESCRIPTION"),
        ({"finding_codes": frozenset({"DQ_VAGUE_PARTY_NAME"})}, "R_VAGUE_PARTY"),
        ({"quality_score": 0.4}, "R_POOR_DATA_QUALITY"),
        ({"linked_outcome": "DO_NOT_LOAD"}, "R_PRE_LOADING_REFERRAL"),
        ({"linked_outcome": "REQUEST_FOR_INFORMATION"}, "R_PRE_LOADING_QUERY"),
        ({"linked_outcome": None, "has_link": False}, "R_NO_PRE_LOADING_FILING"),
        ({"hs_codes": ("050400",)}, "R_RARE_HS_CODE"),
        ({"weight_kg": 12.0, "total_value": 8.0, "value_per_kg": 3.0}, "R_HEAVY_LOW_VALUE"),
    ],
)
def test_each_rule_fires_on_its_signal(change, code):
    fired = codes(replace(PLAIN, **change))[1]
    assert [c for c in fired if not c.startswith("X_")] == [code]  # X_: referrals only


def test_keywords_match_whole_words_only():
    assert codes(replace(PLAIN, text="knifeless butter spreader"))[1] == []


def test_reasons_are_ordered_by_contribution_and_sum_to_the_score():
    [(score, reasons, _)] = score_batch(
        [replace(PLAIN, text="hunting knife", value_per_kg=0.1)], RULES
    )
    assert [r["code"] for r in reasons] == ["R_WEAPON_OR_KNIFE", "R_UNDERVALUATION"]
    assert score == sum(r["contribution"] for r in reasons)
    assert reasons[0]["evidence"] == "description mentions 'knife'"


def test_list_membership_names_the_list_in_the_evidence():
    [(_, [reason], _)] = score_batch([replace(PLAIN, origins=frozenset({"YE"}))], RULES)
    assert reason["evidence"] == "origin YE on list high_risk_countries"


def test_all_conditions_of_a_rule_must_hold():
    cheap_phone = replace(PLAIN, hs_codes=("851713",), total_value=9.0, value_per_kg=30.0)
    assert codes(cheap_phone)[1] == ["R_ELECTRONICS_FROM_COUNTERFEIT_HUB_CHEAP"]
    assert codes(replace(cheap_phone, origins=frozenset({"DE"})))[1] == []
    assert codes(replace(cheap_phone, total_value=200.0))[1] == []


def test_forced_outcomes_override_the_score_and_map_to_the_stage():
    pills = replace(PLAIN, text="tramadol 50mg")
    score, fired, forced = codes(pills)
    assert "R_CONTROLLED_SUBSTANCE" in fired and forced == "INSPECT"
    assert route_for(PRE_ARRIVAL, score, RULES.thresholds, forced) == ("INSPECT", None)
    pl = replace(pills, stage=PRE_LOADING)
    assert codes(pl)[2] == "HIGH_RISK_CARGO_SCREENING"
    gun = replace(PLAIN, stage=PRE_LOADING, text="pistol grip", hs_codes=("930200",))
    _, fired, forced = codes(gun)
    assert forced == "DO_NOT_LOAD" and "R_FIREARM_PARTS_DO_NOT_LOAD" in fired
    assert route_for(PRE_LOADING, 0, RULES.thresholds, forced) == ("INSPECT", "DO_NOT_LOAD")


def test_a_forced_outcome_never_lowers_a_stricter_score_route():
    t = RULES.thresholds
    assert route_for(PRE_LOADING, t.do_not_load, t, "HIGH_RISK_CARGO_SCREENING") == (
        "INSPECT",
        "DO_NOT_LOAD",
    )


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


def test_reasons_inspected_together_force_an_inspection_before_arrival_only():
    from greenlane.streams.stages.routing import forced_by_reasons

    t = RULES.thresholds
    both = {"W_PARTY_WATCHLIST", "W_IPR_BRAND", "T_AEO_CARRIER"}
    assert forced_by_reasons(PRE_ARRIVAL, both, t, None) == "INSPECT"
    assert forced_by_reasons(PRE_ARRIVAL, {"W_IPR_BRAND"}, t, None) is None
    assert forced_by_reasons(PRE_LOADING, both, t, None) is None
    assert forced_by_reasons(PRE_ARRIVAL, both, t, "INSPECT") == "INSPECT"


def test_inspect_together_must_list_code_lists(folder: Path):
    (folder / "thresholds.yaml").write_text(
        "pre_arrival: {hold: 10, inspect: 50, inspect_together: [W_IPR_BRAND]}\npre_loading: "
        "{request_for_information: 1, high_risk_cargo_screening: 2, do_not_load: 3}\n"
    )
    with pytest.raises(ConfigError, match=r"pre_arrival\.inspect_together: expected a list"):
        load_targeting_rules(folder)


def test_the_version_names_every_profile_and_a_digest_of_the_files():
    names = {part.split("@")[0] for part in RULES.version.split("#")[0].split(",")}
    assert names == {
        "data-quality",
        "linking",
        "restricted-goods",
        "routes-and-origins",
        "valuation",
        "referrals",
    }
    assert len(RULES.version.split("#")[1]) == 8


# -- profiles as data: a copy of the default folder to edit ---------------------------------


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    target = tmp_path / "targeting"
    shutil.copytree(DEFAULT_FOLDER, target)
    return target


def add_profile(folder: Path, rules: list[dict], name: str = "extra", version: int = 1) -> Path:
    path = folder / "profiles" / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"profile": name, "version": version, "rules": rules}))
    return path


def test_validity_periods_are_judged_on_the_filing_time(folder: Path):
    add_profile(
        folder,
        [
            {
                "id": "R_SEASONAL",
                "description": "seasonal fireworks watch",
                "weight": 50,
                "when": {"goods": {"keywords": ["sparkler"]}},
                "valid_from": "2026-12-01",
                "valid_until": "2027-01-02",
            }
        ],
    )
    rules = load_targeting_rules(folder)
    sparkler = replace(PLAIN, text="sparkler candles")
    assert codes(sparkler, rules)[1] == ["R_SEASONAL"]
    assert codes(replace(sparkler, filing_time=JAN_2027 + 2 * DAY_MS), rules)[1] == []
    assert codes(replace(sparkler, filing_time=JAN_2027 - 40 * DAY_MS), rules)[1] == []


@pytest.mark.parametrize(
    "rule, message",
    [
        (
            {"id": "R_X", "description": "d", "when": {"goods": {"keywords": ["x"]}}},
            r"rules\[0\] \(R_X\): needs an effect",
        ),
        (
            {
                "id": "R_X",
                "description": "d",
                "weight": "high",
                "when": {"goods": {"keywords": ["x"]}},
            },
            r"\(R_X\)\.weight: expected a number",
        ),
        (
            {"id": "R_X", "description": "d", "weight": 1, "when": {"route_inn": ["AF"]}},
            r"\(R_X\)\.when\.route_inn: unknown condition",
        ),
        (
            {
                "id": "R_X",
                "description": "d",
                "force": "SHRED",
                "when": {"goods": {"keywords": ["x"]}},
            },
            r"\(R_X\)\.force: expected one of",
        ),
        (
            {
                "id": "R_X",
                "description": "d",
                "weight": 1,
                "when": {"in_list": {"field": "origin", "list": "nope"}},
            },
            r"\(R_X\)\.when\.in_list\.list: no list named 'nope'",
        ),
        (
            {
                "id": "R_X",
                "description": "d",
                "weight": 1,
                "when": {"description_regex": "(unclosed"},
            },
            r"\(R_X\)\.when\.description_regex: invalid regular expression",
        ),
        (
            {"id": "R_X", "description": "d", "weight": 1, "when": {"value_between": [50, 10]}},
            r"\(R_X\)\.when\.value_between: min 50 is above max 10",
        ),
        (
            {
                "id": "R_X",
                "description": "d",
                "weight": 1,
                "when": {"goods": {"keywords": ["x"]}},
                "valid_from": "2027-02-01",
                "valid_until": "2027-01-01",
            },
            r"\(R_X\): valid_until must be after valid_from",
        ),
        (
            {
                "id": "R_DRONE",
                "description": "dup",
                "weight": 1,
                "when": {"goods": {"keywords": ["x"]}},
            },
            r"rule id\(s\) used twice: \['R_DRONE'\]",
        ),
    ],
)
def test_invalid_profiles_name_the_file_rule_and_field(folder: Path, rule, message):
    path = add_profile(folder, [rule])
    with pytest.raises(ConfigError, match=message) as err:
        load_targeting_rules(folder)
    if "used twice" not in message:
        assert str(path) in str(err.value)


def test_invalid_thresholds_name_the_file(folder: Path):
    (folder / "thresholds.yaml").write_text(
        "pre_arrival: {hold: 50, inspect: 10}\npre_loading: "
        "{request_for_information: 1, high_risk_cargo_screening: 2, do_not_load: 3}\n"
    )
    with pytest.raises(ConfigError, match="hold must not exceed inspect") as err:
        load_targeting_rules(folder)
    assert "thresholds.yaml" in str(err.value)


def test_rule_book_picks_up_a_changed_profile_and_refuses_a_broken_one(folder: Path):
    events = []
    book = RuleBook(folder, check_seconds=0, on_reload=lambda r, e: events.append((r, e)))
    before = book.current.version
    assert not book.refresh()  # nothing changed
    path = add_profile(
        folder,
        [
            {
                "id": "R_TSHIRT",
                "description": "t-shirts this week",
                "weight": 70,
                "when": {"goods": {"keywords": ["t-shirt"]}},
            }
        ],
    )
    assert book.refresh()
    assert book.current.version != before and "extra@1" in book.current.version
    assert codes(PLAIN, book.current)[1] == ["R_TSHIRT"]
    good = book.current
    path.write_text("profile: extra\nversion: 2\nrules: [{id: R_BROKEN}]\n")
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    assert not book.refresh()
    assert book.current is good  # the previous set stays in force
    assert events[-1][0] is None and "R_BROKEN" in str(events[-1][1])


def test_referral_rules_name_the_agency_without_changing_the_score():
    facts = replace(PLAIN, hs_codes=("950300",), text="wooden toy train")
    [(score, reasons, forced)] = score_batch([facts], RULES)
    assert score == 0.0 and forced is None
    assert RULES.referrals(reasons) == ["product_safety"]
    assert reasons[0]["evidence"].endswith("refers to product_safety")


def test_a_referral_to_an_unknown_agency_is_refused(folder: Path):
    add_profile(
        folder,
        [
            {
                "id": "R_X",
                "description": "d",
                "refer": ["customs_of_mars"],
                "when": {"goods": {"keywords": ["x"]}},
            }
        ],
    )
    with pytest.raises(ConfigError, match=r"\(R_X\)\.refer: unknown agency \['customs_of_mars'\]"):
        load_targeting_rules(folder)
