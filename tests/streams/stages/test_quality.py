"""Data-quality stage (Standard 3): each rule fires on a bad filing, stays quiet on a good one."""

import io
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import fastavro
import pytest

from greenlane.streams.settings import SCHEMAS_DIR, ConfigError
from greenlane.streams.stages.quality import (
    DEFAULT_PATH,
    FINDING_CODES,
    PRE_ARRIVAL,
    PRE_LOADING,
    QualityReport,
    assess_batch,
    load_quality_rules,
    value_in_reference_currency,
)

LOADING = datetime(2026, 10, 5, 8, 0, tzinfo=UTC)
ARRIVAL = datetime(2026, 10, 6, 14, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def rules():
    return load_quality_rules()


def party(name="Shenzhen Bright Star Electronics Co Ltd", country="CN"):
    return {
        "name": name,
        "address": "88 Huaqiang North Road, Futian, 518000 Shenzhen",
        "country": country,
        "party_id": None,
    }


def pre_loading(**changes):
    record = {
        "message_id": "MSG-PL-1",
        "carrier_id": "CARRIER-7",
        "house_waybill": "HAWB0001",
        "master_waybill": "MAWB77",
        "shipper": party(),
        "consignee": party("Maria Schmidt", "DE"),
        "pieces": 2,
        "gross_weight_kg": 1.8,
        "cargo_description": "Lithium-ion battery for mobile phone",
        "hs_code": "850760",
        "origin_country": "CN",
        "destination_country": "DE",
        "route": ["CN", "HK", "DE"],
        "planned_loading_time": LOADING,
        "filing_time": LOADING - timedelta(hours=6),
    }
    record.update(changes)
    return record


def item(**changes):
    line = {
        "description": "Women's cotton T-shirt",
        "hs_code": "610910",
        "quantity": 2,
        "net_weight_kg": 0.4,
        "value": 18.5,
        "currency": "USD",
        "origin_country": "CN",
        "listing_url": "https://shop.example/p/123",
    }
    line.update(changes)
    return line


def pre_arrival(**changes):
    record = {
        "message_id": "MSG-PA-1",
        "carrier_id": "CARRIER-7",
        "house_waybill": "HAWB0001",
        "master_waybill": None,
        "seller": party("Guangzhou Fashion Trading Ltd"),
        "consignee": party("Maria Schmidt", "DE"),
        "platform": "example-marketplace",
        "items": [item(), item(description="Stainless steel kitchen knife", hs_code="821191")],
        "vendor_collection_id": "IM2760000001",
        "destination_country": "DE",
        "transport_mode": "AIR",
        "expected_arrival_time": ARRIVAL,
        "filing_time": ARRIVAL - timedelta(hours=20),
    }
    record.update(changes)
    return record


BUILDERS = {PRE_LOADING: pre_loading, PRE_ARRIVAL: pre_arrival}


def assess_one(record, stage, rules) -> QualityReport:
    (report,) = assess_batch([record], stage, rules)
    return report


def with_party(role, **changes):
    return {role: {**party(), **changes}}


def with_item(**changes):
    return {"items": [item(), item(**changes)]}


@pytest.mark.parametrize(
    ("stage", "schema"),
    [(PRE_LOADING, "pre_loading_filing.avsc"), (PRE_ARRIVAL, "pre_arrival_declaration.avsc")],
)
def test_clean_filings_decoded_by_fastavro_have_no_findings(rules, stage, schema):
    parsed = fastavro.parse_schema(json.loads((SCHEMAS_DIR / schema).read_text()))
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, parsed, BUILDERS[stage]())
    buffer.seek(0)
    decoded = fastavro.schemaless_reader(buffer, parsed)
    report = assess_one(decoded, stage, rules)
    assert report == QualityReport([], 1.0, None)


# (stage, changes to a clean record, expected code, expected field)
FIRES = [
    # completeness
    (PRE_LOADING, with_party("shipper", name="  "), "DQ_MISSING_FIELD", "shipper.name"),
    (PRE_LOADING, with_party("consignee", address=""), "DQ_MISSING_FIELD", "consignee.address"),
    (PRE_LOADING, with_party("consignee", country=""), "DQ_MISSING_FIELD", "consignee.country"),
    (PRE_LOADING, {"pieces": 0}, "DQ_MISSING_FIELD", "pieces"),
    (PRE_LOADING, {"cargo_description": " "}, "DQ_MISSING_FIELD", "cargo_description"),
    (PRE_LOADING, {"destination_country": ""}, "DQ_MISSING_FIELD", "destination_country"),
    (PRE_ARRIVAL, with_party("seller", name=""), "DQ_MISSING_FIELD", "seller.name"),
    (PRE_ARRIVAL, with_item(hs_code=""), "DQ_MISSING_FIELD", "items[1].hs_code"),
    (PRE_ARRIVAL, with_item(description=""), "DQ_MISSING_FIELD", "items[1].description"),
    (PRE_ARRIVAL, with_item(quantity=0), "DQ_MISSING_FIELD", "items[1].quantity"),
    (PRE_ARRIVAL, with_item(currency=""), "DQ_MISSING_FIELD", "items[1].currency"),
    (PRE_ARRIVAL, with_item(origin_country=""), "DQ_MISSING_FIELD", "items[1].origin_country"),
    # HS 2022
    (PRE_LOADING, {"hs_code": "999999"}, "DQ_UNKNOWN_HS_CODE", "hs_code"),
    (PRE_LOADING, {"hs_code": "85"}, "DQ_UNKNOWN_HS_CODE", "hs_code"),  # chapter: too coarse
    (PRE_ARRIVAL, with_item(hs_code="851712"), "DQ_UNKNOWN_HS_CODE", "items[1].hs_code"),
    (PRE_ARRIVAL, with_item(hs_code="6109"), "DQ_UNKNOWN_HS_CODE", "items[1].hs_code"),
    (PRE_ARRIVAL, with_item(hs_code="6109.10"), "DQ_UNKNOWN_HS_CODE", "items[1].hs_code"),
    (PRE_ARRIVAL, with_item(hs_code="61091000001"), "DQ_UNKNOWN_HS_CODE", "items[1].hs_code"),
    # ISO 3166
    (PRE_LOADING, with_party("shipper", country="XX"), "DQ_INVALID_COUNTRY", "shipper.country"),
    (PRE_LOADING, {"origin_country": "China"}, "DQ_INVALID_COUNTRY", "origin_country"),
    (PRE_LOADING, {"destination_country": "de"}, "DQ_INVALID_COUNTRY", "destination_country"),
    (PRE_LOADING, {"route": ["CN", "UK", "DE"]}, "DQ_INVALID_COUNTRY", "route[1]"),
    (PRE_ARRIVAL, with_item(origin_country="EU"), "DQ_INVALID_COUNTRY", "items[1].origin_country"),
    # ISO 4217
    (PRE_ARRIVAL, with_item(currency="RMB"), "DQ_INVALID_CURRENCY", "items[1].currency"),
    (PRE_ARRIVAL, with_item(currency="eur"), "DQ_INVALID_CURRENCY", "items[1].currency"),
    # vague descriptions and party names
    (PRE_LOADING, {"cargo_description": "battery"}, "DQ_VAGUE_DESCRIPTION", "cargo_description"),
    (PRE_LOADING, {"cargo_description": "Gifts"}, "DQ_VAGUE_DESCRIPTION", "cargo_description"),
    (
        PRE_LOADING,
        {"cargo_description": "2 x Spare-Parts"},
        "DQ_VAGUE_DESCRIPTION",
        "cargo_description",
    ),
    (PRE_LOADING, {"cargo_description": "TV"}, "DQ_VAGUE_DESCRIPTION", "cargo_description"),
    (
        PRE_ARRIVAL,
        with_item(description="clothes, gift"),
        "DQ_VAGUE_DESCRIPTION",
        "items[1].description",
    ),
    (PRE_LOADING, with_party("consignee", name="N/A"), "DQ_VAGUE_PARTY_NAME", "consignee.name"),
    (PRE_ARRIVAL, with_party("seller", name="Unknown"), "DQ_VAGUE_PARTY_NAME", "seller.name"),
    (PRE_ARRIVAL, with_party("consignee", name="12345"), "DQ_VAGUE_PARTY_NAME", "consignee.name"),
    # implausible values (USD 0.92 EUR; min_line_value 0.01, max 100000; value/kg 0.05-200000)
    (PRE_ARRIVAL, with_item(value=0.0), "DQ_IMPLAUSIBLE_VALUE", "items[1].value"),
    (PRE_ARRIVAL, with_item(value=-5.0), "DQ_IMPLAUSIBLE_VALUE", "items[1].value"),
    (PRE_ARRIVAL, with_item(value=float("nan")), "DQ_IMPLAUSIBLE_VALUE", "items[1].value"),
    (PRE_ARRIVAL, with_item(value=120000.0), "DQ_IMPLAUSIBLE_VALUE", "items[1].value"),
    (
        PRE_ARRIVAL,
        with_item(value=0.5, net_weight_kg=20.0),
        "DQ_IMPLAUSIBLE_VALUE",
        "items[1].value",
    ),
    (
        PRE_ARRIVAL,
        with_item(value=9000.0, currency="EUR", net_weight_kg=0.01),
        "DQ_IMPLAUSIBLE_VALUE",
        "items[1].value",
    ),
    # implausible weights (max 500 kg a piece, min net weight 0.001 kg)
    (PRE_LOADING, {"gross_weight_kg": 0.0}, "DQ_IMPLAUSIBLE_WEIGHT", "gross_weight_kg"),
    (PRE_LOADING, {"gross_weight_kg": -1.0}, "DQ_IMPLAUSIBLE_WEIGHT", "gross_weight_kg"),
    (PRE_LOADING, {"gross_weight_kg": 1200.0}, "DQ_IMPLAUSIBLE_WEIGHT", "gross_weight_kg"),
    (PRE_ARRIVAL, with_item(net_weight_kg=0.0), "DQ_IMPLAUSIBLE_WEIGHT", "items[1].net_weight_kg"),
    (
        PRE_ARRIVAL,
        with_item(net_weight_kg=0.0005),
        "DQ_IMPLAUSIBLE_WEIGHT",
        "items[1].net_weight_kg",
    ),
    # timeliness
    (PRE_LOADING, {"filing_time": LOADING + timedelta(minutes=1)}, "DQ_LATE_FILING", "filing_time"),
    (PRE_ARRIVAL, {"filing_time": ARRIVAL + timedelta(hours=2)}, "DQ_LATE_FILING", "filing_time"),
]


@pytest.mark.parametrize(("stage", "changes", "code", "field"), FIRES)
def test_rule_fires(rules, stage, changes, code, field):
    report = assess_one(BUILDERS[stage](**changes), stage, rules)
    assert report.unusable is None
    assert [(f["code"], f["field"]) for f in report.findings] == [(code, field)]
    (finding,) = report.findings
    assert set(finding) == {"code", "field", "message"}
    assert len(finding["message"]) > 20
    assert report.score == pytest.approx(1.0 - rules.penalty(code))


# (stage, changes to a clean record that must NOT produce a finding)
QUIET = [
    (PRE_LOADING, {"cargo_description": "lithium battery"}),  # 'battery' alone is vague
    (PRE_LOADING, {"cargo_description": "Used clothing: men's wool coat"}),
    (PRE_LOADING, {"cargo_description": "手机壳 Mobile phone case"}),
    (PRE_LOADING, {"hs_code": None}),  # optional at pre-loading
    (PRE_LOADING, {"hs_code": ""}),
    (PRE_LOADING, {"hs_code": "8507"}),  # a heading is enough before loading
    (PRE_LOADING, {"hs_code": "8507600010"}),
    (PRE_LOADING, {"origin_country": None}),
    (PRE_LOADING, {"route": []}),
    (PRE_LOADING, {"destination_country": "XK"}),  # extra_country_codes
    (PRE_LOADING, {"gross_weight_kg": 1000.0}),  # 500 kg a piece over 2 pieces
    (PRE_LOADING, {"filing_time": LOADING}),  # at the deadline is on time
    (PRE_LOADING, with_party("consignee", name="Li Wu")),
    (PRE_LOADING, with_party("consignee", name="张伟")),
    (PRE_LOADING, with_party("consignee", name="Nadia Private-Smith")),
    (PRE_ARRIVAL, with_item(hs_code="61091000")),  # EU CN 8 digits
    (PRE_ARRIVAL, with_item(currency="CZK", value=5_000_000.0)),  # no rate: not converted
    (PRE_ARRIVAL, with_item(currency="JPY", value=15000.0)),  # 93 EUR
    (PRE_ARRIVAL, with_item(value=0.02, currency="EUR", net_weight_kg=0.1)),  # 0.2 EUR/kg
    (PRE_ARRIVAL, with_item(net_weight_kg=0.001)),
    (PRE_ARRIVAL, with_item(listing_url=None)),
    (PRE_ARRIVAL, {"platform": None, "vendor_collection_id": None, "master_waybill": "MAWB1"}),
    (PRE_ARRIVAL, {"filing_time": ARRIVAL - timedelta(seconds=1)}),
]


@pytest.mark.parametrize(("stage", "changes"), QUIET)
def test_rule_stays_quiet(rules, stage, changes):
    report = assess_one(BUILDERS[stage](**changes), stage, rules)
    assert report == QualityReport([], 1.0, None)


def test_messages_name_the_bad_value_and_what_to_do(rules):
    report = assess_one(
        pre_arrival(**with_item(hs_code="851712", currency="RMB")), PRE_ARRIVAL, rules
    )
    by_code = {f["code"]: f["message"] for f in report.findings}
    assert "'851712'" in by_code["DQ_UNKNOWN_HS_CODE"]
    assert "HS 2022" in by_code["DQ_UNKNOWN_HS_CODE"]
    assert "'RMB'" in by_code["DQ_INVALID_CURRENCY"]
    assert "ISO 4217" in by_code["DQ_INVALID_CURRENCY"]
    huge = "x" * 10_000
    (finding,) = assess_one(pre_loading(origin_country=huge), PRE_LOADING, rules).findings
    assert len(finding["message"]) < 200


def test_every_item_line_is_checked_with_its_index(rules):
    items = [item(), item(hs_code="999999"), item(), item(description="goods", currency="XXX")]
    report = assess_one(pre_arrival(items=items), PRE_ARRIVAL, rules)
    assert [(f["code"], f["field"]) for f in report.findings] == [
        ("DQ_UNKNOWN_HS_CODE", "items[1].hs_code"),
        ("DQ_VAGUE_DESCRIPTION", "items[3].description"),
        ("DQ_INVALID_CURRENCY", "items[3].currency"),
    ]


def test_score_subtracts_each_findings_penalty(rules):
    record = pre_loading(cargo_description="parts", hs_code="999999", pieces=0)
    report = assess_one(record, PRE_LOADING, rules)
    codes = sorted(f["code"] for f in report.findings)
    assert codes == ["DQ_MISSING_FIELD", "DQ_UNKNOWN_HS_CODE", "DQ_VAGUE_DESCRIPTION"]
    assert report.score == pytest.approx(1.0 - 0.4 - 0.25 - 0.3)


def test_score_counts_repeated_findings_and_floors_at_zero(rules):
    items = [item(description="gift")] * 3
    report = assess_one(pre_arrival(items=items), PRE_ARRIVAL, rules)
    assert len(report.findings) == 3
    assert report.score == pytest.approx(1.0 - 3 * 0.3)
    items = [item(description="gift", hs_code="1", currency="XYZ")] * 3
    assert assess_one(pre_arrival(items=items), PRE_ARRIVAL, rules).score == 0.0


def test_score_uses_default_penalty_for_codes_not_listed(tmp_path):
    rules = load_quality_rules(write_settings(tmp_path, {r"DQ_LATE_FILING = 0\.1\n": ""}))
    assert rules.penalty("DQ_LATE_FILING") == rules.default_penalty == 0.1
    rules = load_quality_rules(
        write_settings(
            tmp_path, {r"DQ_LATE_FILING = 0\.1": "", r"default = 0\.1": "default = 0.05"}
        )
    )
    late = pre_loading(filing_time=LOADING + timedelta(hours=1))
    assert assess_one(late, PRE_LOADING, rules).score == pytest.approx(0.95)


@pytest.mark.parametrize(
    ("stage", "changes", "reason"),
    [
        (PRE_LOADING, {"house_waybill": ""}, "house_waybill"),
        (PRE_LOADING, {"message_id": "   "}, "message_id"),
        (PRE_ARRIVAL, {"carrier_id": ""}, "carrier_id"),
        (PRE_ARRIVAL, {"items": []}, "no item lines"),
        (PRE_LOADING, {"shipper": None}, "not a PRE_LOADING record"),
        (PRE_ARRIVAL, {"items": [{"description": "T-shirt"}]}, "not a PRE_ARRIVAL record"),
        (PRE_LOADING, {"pieces": "two"}, "not a PRE_LOADING record"),
    ],
)
def test_unusable_filings_are_set_aside_not_scored(rules, stage, changes, reason):
    report = assess_one(BUILDERS[stage](**changes), stage, rules)
    assert reason in report.unusable
    assert report.findings == []
    assert report.score == 0.0


def test_a_record_of_the_other_stage_is_unusable(rules):
    report = assess_one(pre_loading(), PRE_ARRIVAL, rules)
    assert "not a PRE_ARRIVAL record" in report.unusable


def test_batch_keeps_order_and_one_bad_record_does_not_spoil_the_rest(rules):
    batch = [pre_loading(), pre_loading(house_waybill=""), pre_loading(pieces=-1), pre_loading()]
    reports = assess_batch(batch, PRE_LOADING, rules)
    assert [r.unusable is None for r in reports] == [True, False, True, True]
    assert [r.score for r in reports] == [1.0, 0.0, pytest.approx(0.6), 1.0]
    assert assess_batch([], PRE_LOADING, rules) == []


def test_unknown_stage_is_a_programming_error(rules):
    with pytest.raises(ValueError, match="PRE_DEPARTURE"):
        assess_batch([pre_loading()], "PRE_DEPARTURE", rules)


def millis(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


@pytest.mark.parametrize(
    ("stage", "deadline_field", "deadline"),
    [
        (PRE_LOADING, "planned_loading_time", LOADING),
        (PRE_ARRIVAL, "expected_arrival_time", ARRIVAL),
    ],
)
def test_late_filing_works_on_epoch_milliseconds_too(tmp_path, stage, deadline_field, deadline):
    """The pipeline's decoder strips logical types: timestamps arrive as ints."""
    rules = load_quality_rules(
        write_settings(
            tmp_path, {r"late_filing_grace_minutes = 0": "late_filing_grace_minutes = 5"}
        )
    )
    build = BUILDERS[stage]
    on_time = build(filing_time=millis(deadline) + 300_000, **{deadline_field: millis(deadline)})
    late = build(filing_time=millis(deadline) + 300_001, **{deadline_field: millis(deadline)})
    assert assess_one(on_time, stage, rules) == QualityReport([], 1.0, None)
    (finding,) = assess_one(late, stage, rules).findings
    assert finding["code"] == "DQ_LATE_FILING"
    assert deadline.isoformat(" ", "minutes") in finding["message"]


def test_clean_filings_decoded_without_logical_types_have_no_findings(rules):
    schema = json.loads((SCHEMAS_DIR / "pre_arrival_declaration.avsc").read_text())
    text = json.dumps(schema).replace(', "logicalType": "timestamp-millis"', "")
    parsed = fastavro.parse_schema(json.loads(text))
    record = pre_arrival(
        filing_time=millis(ARRIVAL - timedelta(hours=3)), expected_arrival_time=millis(ARRIVAL)
    )
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, parsed, record)
    buffer.seek(0)
    decoded = fastavro.schemaless_reader(buffer, parsed)
    assert isinstance(decoded["filing_time"], int)
    assert assess_one(decoded, PRE_ARRIVAL, rules) == QualityReport([], 1.0, None)


def test_late_filing_grace_comes_from_settings(tmp_path):
    rules = load_quality_rules(
        write_settings(
            tmp_path, {r"late_filing_grace_minutes = 0": "late_filing_grace_minutes = 30"}
        )
    )
    on_time = pre_loading(filing_time=LOADING + timedelta(minutes=30))
    late = pre_loading(filing_time=LOADING + timedelta(minutes=31))
    assert assess_one(on_time, PRE_LOADING, rules).findings == []
    assert assess_one(late, PRE_LOADING, rules).findings[0]["code"] == "DQ_LATE_FILING"


def test_zero_net_weight_is_implausible_even_when_the_minimum_is_zero(tmp_path):
    rules = load_quality_rules(
        write_settings(tmp_path, {r"^min_net_weight_kg = .*$": "min_net_weight_kg = 0"})
    )
    for weight in (0.0, float("nan")):
        report = assess_one(pre_arrival(**with_item(net_weight_kg=weight)), PRE_ARRIVAL, rules)
        assert [f["code"] for f in report.findings] == ["DQ_IMPLAUSIBLE_WEIGHT"]
    assert assess_one(pre_arrival(**with_item(net_weight_kg=0.0001)), PRE_ARRIVAL, rules) == (
        QualityReport([], 1.0, None)
    )


def test_hs_precision_comes_from_settings(tmp_path):
    rules = load_quality_rules(
        write_settings(
            tmp_path, {r"min_hs_digits_pre_loading = 4": "min_hs_digits_pre_loading = 6"}
        )
    )
    assert assess_one(pre_loading(hs_code="8507"), PRE_LOADING, rules).findings[0]["code"] == (
        "DQ_UNKNOWN_HS_CODE"
    )


def test_value_in_reference_currency(rules):
    assert rules.reference_currency == "EUR"
    assert value_in_reference_currency(100.0, "USD", rules) == pytest.approx(92.0)
    assert value_in_reference_currency(100.0, "EUR", rules) == 100.0
    assert value_in_reference_currency(100.0, "CZK", rules) is None  # ISO, but no rate
    assert value_in_reference_currency(100.0, "XYZ", rules) is None


def test_default_settings_load_and_are_compiled(rules):
    assert rules.source == DEFAULT_PATH
    assert re.fullmatch(r"[0-9a-f]{12}", rules.digest)
    assert "battery" in rules.vague_description_terms
    assert "DE" in rules.countries and "XK" in rules.countries and "XX" not in rules.countries
    assert "851713" in rules.hs_accept[PRE_ARRIVAL] and "8517" not in rules.hs_accept[PRE_ARRIVAL]
    assert "8517" in rules.hs_accept[PRE_LOADING]
    assert set(rules.penalties) <= set(FINDING_CODES)


# --------------------------------------------------------------------------- settings errors


def write_settings(tmp_path: Path, replacements: dict[str, str]) -> Path:
    """A copy of the default quality.toml with each regex replaced (each must match once)."""
    text = DEFAULT_PATH.read_text(encoding="utf-8")
    for pattern, new in replacements.items():
        text, count = re.subn(pattern, new, text, count=1, flags=re.MULTILINE)
        assert count == 1, pattern
    path = tmp_path / "quality.toml"
    path.write_text(text, encoding="utf-8")
    return path


BAD_TYPES = [
    ({r"^min_line_value = .*$": 'min_line_value = "cheap"'}, "min_line_value"),
    (
        {r"^min_description_letters = .*$": "min_description_letters = 4.5"},
        "min_description_letters",
    ),
    (
        {r"^min_description_letters = .*$": "min_description_letters = true"},
        "min_description_letters",
    ),
    ({r"^reference_currency = .*$": "reference_currency = 1"}, "reference_currency"),
    ({r"^vague_party_names = \[": "vague_party_names = [5, "}, "vague_party_names[0]"),
    ({r"^vague_party_names = \[": 'vague_party_names = ["  ", '}, "vague_party_names[0]"),
    ({r"^extra_country_codes = .*$": 'extra_country_codes = "XK"'}, "extra_country_codes"),
    ({r"^extra_country_codes = .*$": 'extra_country_codes = ["xk"]'}, "extra_country_codes[0]"),
    ({r"^USD = .*$": 'USD = "0.92"'}, "[reference_rates].USD"),
    ({r"^DQ_LATE_FILING = .*$": "DQ_LATE_FILING = 2"}, "[penalties].DQ_LATE_FILING"),
]

UNKNOWN_KEYS = [
    ({r"\A": "min_line_valeu = 1.0\n"}, "min_line_valeu"),
    ({r"^DQ_LATE_FILING = .*$": "DQ_LATE_FILLING = 0.1"}, "DQ_LATE_FILLING"),
    ({r"^USD = .*$": "USX = 0.92"}, "USX"),
]

OUT_OF_RANGE_OR_MISSING = [
    ({r"^max_line_value = .*$": "max_line_value = 0.001"}, "max_line_value"),
    ({r"^min_value_per_kg = .*$": "min_value_per_kg = -1"}, "min_value_per_kg"),
    (
        {r"^max_gross_weight_kg_per_piece = .*$": "max_gross_weight_kg_per_piece = 0"},
        "max_gross_weight_kg_per_piece",
    ),
    (
        {r"^late_filing_grace_minutes = .*$": "late_filing_grace_minutes = -5"},
        "late_filing_grace_minutes",
    ),
    (
        {r"^min_hs_digits_pre_arrival = .*$": "min_hs_digits_pre_arrival = 12"},
        "min_hs_digits_pre_arrival",
    ),
    ({r"^reference_currency = .*$": 'reference_currency = "USD"'}, "reference_currency"),
    ({r"^EUR = .*$": "EUR = 0"}, "[reference_rates].EUR"),
    ({r"^default = .*\n": ""}, "default"),
    ({r"^max_hs_digits = .*\n": ""}, "max_hs_digits"),
    ({r"^max_text_chars = .*$": "max_text_chars = 0"}, "[bounds].max_text_chars"),
    ({r"^min_nonzero_amount = .*$": "min_nonzero_amount = 0"}, "[bounds].min_nonzero_amount"),
    ({r"^max_ahead_days = .*$": 'max_ahead_days = "soon"'}, "[bounds].max_ahead_days"),
    ({r"^max_list_items = .*\n": ""}, "max_list_items"),
]


@pytest.mark.parametrize(
    ("replacements", "key"), BAD_TYPES + UNKNOWN_KEYS + OUT_OF_RANGE_OR_MISSING
)
def test_invalid_settings_name_file_and_key(tmp_path, replacements, key):
    path = write_settings(tmp_path, replacements)
    with pytest.raises(ConfigError) as error:
        load_quality_rules(path)
    assert str(path) in str(error.value)
    assert key in str(error.value)


def test_missing_or_malformed_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_quality_rules(tmp_path / "absent.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("min_line_value = = 1\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_quality_rules(broken)
