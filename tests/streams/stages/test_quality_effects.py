"""What data-quality findings do to a decision: quality.toml [effects], per stage."""

import pytest

from greenlane.streams.settings import ConfigError
from greenlane.streams.stages.quality import (
    DQ_KEY_NOT_WAYBILL,
    DQ_MISSING_KEY,
    PRE_ARRIVAL,
    PRE_LOADING,
    assess_batch,
    effect,
    load_quality_rules,
)
from tests.factories import item, party, pre_arrival, pre_loading
from tests.streams.stages.test_quality import write_settings

RULES = load_quality_rules()


def effect_of(record, stage, key=None):
    [report] = assess_batch([record], stage, RULES, [key or record["house_waybill"].encode()])
    return effect(report, stage, RULES)


def test_a_malformed_or_unknown_hs_code_holds_a_declaration():
    for code in ("8518.30", "999999"):
        found = effect_of(pre_arrival(items=[item(hs_code=code)]), PRE_ARRIVAL)
        assert found.forced == "HOLD" and found.rejected is None
        assert found.reason["code"] == "Q_HOLD" and found.reason["carrier_visible"]
        assert "DQ_UNKNOWN_HS_CODE at items[0].hs_code" in found.reason["evidence"]


def test_a_missing_7_plus_1_element_asks_the_carrier_for_information_before_loading():
    record = pre_loading(shipper=party("", "CN"))
    found = effect_of(record, PRE_LOADING)
    assert found.forced == "REQUEST_FOR_INFORMATION"
    assert found.reason["code"] == "Q_REQUEST_FOR_INFORMATION"


def test_a_late_filing_only_costs_the_score():
    [report] = assess_batch([pre_arrival()], PRE_ARRIVAL, RULES)
    assert effect(report, PRE_ARRIVAL, RULES).forced is None
    late = pre_arrival(filing_time=pre_arrival()["expected_arrival_time"] + 86_400_000)
    [report] = assess_batch([late], PRE_ARRIVAL, RULES, [b"HWB0001"])
    assert [f["code"] for f in report.findings] == ["DQ_LATE_FILING"]
    found = effect(report, PRE_ARRIVAL, RULES)
    assert found.forced is None and found.rejected is None and report.score < 1.0


@pytest.mark.parametrize(
    ("key", "code"), [(b"", DQ_MISSING_KEY), (b"SOMETHING-ELSE", DQ_KEY_NOT_WAYBILL)]
)
def test_a_filing_not_keyed_by_its_house_waybill_is_rejected(key, code):
    record = pre_arrival("HWB42")
    [report] = assess_batch([record], PRE_ARRIVAL, RULES, [key or None])
    found = effect(report, PRE_ARRIVAL, RULES)
    assert found.rejected["code"] == code and "HWB42" in found.rejected["message"]


def test_effects_are_settings(tmp_path):
    path = write_settings(
        tmp_path, {r'^DQ_INVALID_CURRENCY = "hold"$': 'DQ_INVALID_CURRENCY = "reject"'}
    )
    rules = load_quality_rules(path)
    [report] = assess_batch([pre_arrival(items=[item(currency="XXQ")])], PRE_ARRIVAL, rules)
    assert effect(report, PRE_ARRIVAL, rules).rejected["code"] == "DQ_INVALID_CURRENCY"


@pytest.mark.parametrize(
    ("replace", "message"),
    [
        ({r'^DQ_INVALID_CURRENCY = "hold"$': 'DQ_INVALID_CURRENCY = "maybe"'}, "expected one of"),
        ({r'^DQ_INVALID_CURRENCY = "hold"$': 'DQ_NO_SUCH = "hold"'}, "unknown finding code"),
        ({r'^DQ_MISSING_KEY = "reject"$': 'DQ_MISSING_KEY = "score"'}, "cannot be linked"),
        ({r"^\[effects\.PRE_ARRIVAL\]$": "[effects.ARRIVAL]"}, "expected exactly the tables"),
    ],
)
def test_a_broken_effect_is_refused_naming_the_file_and_key(tmp_path, replace, message):
    with pytest.raises(ConfigError, match=message) as err:
        load_quality_rules(write_settings(tmp_path, replace))
    assert "quality.toml: [effects]" in str(err.value)
