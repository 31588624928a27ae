"""Data quality of advance filings (WCO E-Commerce FoS Standard 3): completeness, accuracy and
timeliness of what carriers send, as findings a carrier can act on and a score targeting can use.

Thresholds and word lists are national practice, so they live in ``settings/quality.toml``;
this module only knows the finding codes. Everything a record is checked against is compiled
once in :func:`load_quality_rules` (frozensets, one regex per word list), because the stage sits
in the hot path of a stream of tens of thousands of filings a second.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import MappingProxyType
from typing import Any

from greenlane.streams import reference
from greenlane.streams.domain.money import convert
from greenlane.streams.settings import SETTINGS_DIR, ConfigError, build_section, read_toml
from greenlane.streams.stages.bounds import Bounds

PRE_LOADING = "PRE_LOADING"
PRE_ARRIVAL = "PRE_ARRIVAL"
STAGES = (PRE_LOADING, PRE_ARRIVAL)

DQ_MISSING_FIELD = "DQ_MISSING_FIELD"
DQ_UNKNOWN_HS_CODE = "DQ_UNKNOWN_HS_CODE"
DQ_INVALID_COUNTRY = "DQ_INVALID_COUNTRY"
DQ_INVALID_CURRENCY = "DQ_INVALID_CURRENCY"
DQ_VAGUE_DESCRIPTION = "DQ_VAGUE_DESCRIPTION"
DQ_VAGUE_PARTY_NAME = "DQ_VAGUE_PARTY_NAME"
DQ_IMPLAUSIBLE_VALUE = "DQ_IMPLAUSIBLE_VALUE"
DQ_IMPLAUSIBLE_WEIGHT = "DQ_IMPLAUSIBLE_WEIGHT"
DQ_LATE_FILING = "DQ_LATE_FILING"
DQ_MISSING_KEY = "DQ_MISSING_KEY"
DQ_KEY_NOT_WAYBILL = "DQ_KEY_NOT_WAYBILL"
KEY_FINDINGS = (DQ_MISSING_KEY, DQ_KEY_NOT_WAYBILL)
FINDING_CODES = (
    *KEY_FINDINGS,
    DQ_MISSING_FIELD,
    DQ_UNKNOWN_HS_CODE,
    DQ_INVALID_COUNTRY,
    DQ_INVALID_CURRENCY,
    DQ_VAGUE_DESCRIPTION,
    DQ_VAGUE_PARTY_NAME,
    DQ_IMPLAUSIBLE_VALUE,
    DQ_IMPLAUSIBLE_WEIGHT,
    DQ_LATE_FILING,
)

DEFAULT_PATH = SETTINGS_DIR / "quality.toml"

# What a finding does to the decision (quality.toml [effects.<stage>]).
SCORE = "score"  # it costs the quality score; the data-quality rules may weigh it
REQUEST_FOR_INFORMATION = "request_for_information"  # the carrier must answer first
HOLD = "hold"  # a documentary check: not released on data the rules could not read
REJECT = "reject"  # not assessed: dead-lettered, the carrier told why
EFFECTS = (SCORE, REQUEST_FOR_INFORMATION, HOLD, REJECT)
# What an effect forces at each stage (the stricter of it and the score's outcome wins).
EFFECT_OUTCOME = {
    REQUEST_FOR_INFORMATION: {PRE_LOADING: "REQUEST_FOR_INFORMATION", PRE_ARRIVAL: "HOLD"},
    HOLD: {PRE_LOADING: "REQUEST_FOR_INFORMATION", PRE_ARRIVAL: "HOLD"},
}
EFFECT_REASON = {
    REQUEST_FOR_INFORMATION: (
        "Q_REQUEST_FOR_INFORMATION",
        "The filing is incomplete or unclear: answer with the missing data or an amendment",
    ),
    HOLD: (
        "Q_HOLD",
        "Data the risk assessment could not read: held for a documentary check",
    ),
}

# What the carrier must supply, by field name, for DQ_MISSING_FIELD messages.
_WHAT_TO_GIVE = {
    "name": "the full name of the person or company",
    "address": "street address, city and postcode",
    "country": "the ISO 3166-1 alpha-2 country code of the address",
    "pieces": "the number of pieces (1 or more)",
    "quantity": "the number of units (1 or more)",
    "cargo_description": "a plain-language description precise enough to identify the goods",
    "description": "a plain-language description precise enough to identify the goods",
    "hs_code": "the HS 2022 code of the goods (digits only)",
    "currency": "the ISO 4217 currency code of the value",
    "origin_country": "the ISO 3166-1 alpha-2 country of origin of the goods",
    "destination_country": "the ISO 3166-1 alpha-2 country of destination",
}


@dataclass(frozen=True, slots=True)
class QualityReport:
    """The data-quality verdict on one filing."""

    findings: list[dict]  # each {"code", "field", "message"}: the Avro QualityFinding shape
    score: float  # 1.0 = clean, minus the penalty of every finding, floored at 0.0
    unusable: str | None  # why the filing cannot be assessed at all -> dead letter


@dataclass(frozen=True)
class _QualityFile:
    """quality.toml as written; build_section checks its key names and scalar types."""

    vague_description_terms: list
    vague_party_names: list
    min_description_letters: int
    min_line_value: float
    max_line_value: float
    min_net_weight_kg: float
    max_gross_weight_kg_per_piece: float
    min_value_per_kg: float
    max_value_per_kg: float
    late_filing_grace_minutes: float
    min_hs_digits_pre_loading: int
    min_hs_digits_pre_arrival: int
    max_hs_digits: int
    extra_country_codes: list
    reference_currency: str
    reference_rates: dict
    penalties: dict
    effects: dict
    bounds: dict


@dataclass(frozen=True, eq=False)
class QualityRules:
    """Everything quality.toml says, validated, plus what is compiled from it for the hot path.

    Compared and hashed by identity, so a loaded rule set can key a cache.
    """

    vague_description_terms: tuple[str, ...]
    vague_party_names: tuple[str, ...]
    min_description_letters: int
    min_line_value: float
    max_line_value: float
    min_net_weight_kg: float
    max_gross_weight_kg_per_piece: float
    min_value_per_kg: float
    max_value_per_kg: float
    late_filing_grace: timedelta
    late_filing_grace_ms: int  # the same, for timestamps decoded as epoch milliseconds
    min_hs_digits: Mapping[str, int]  # stage -> fewest digits accepted
    max_hs_digits: int
    hs_accept: Mapping[str, frozenset[str]]  # stage -> HS 2022 codes accepted at a glance
    reference_currency: str
    reference_rates: Mapping[str, float]  # currency -> units of reference_currency
    penalties: Mapping[str, float]  # finding code -> cost; other codes cost default_penalty
    default_penalty: float
    effects: Mapping[str, Mapping[str, str]]  # stage -> finding code -> effect (all codes)
    countries: frozenset[str]  # ISO 3166-1 alpha-2 plus extra_country_codes
    currencies: frozenset[str]  # ISO 4217
    source: Path
    digest: str  # first 12 hex digits of the file's SHA-256, for the ruleset version
    vague_description: re.Pattern[str]
    vague_party_name: re.Pattern[str]
    bounds: Bounds  # hard limits checked before any stage (stages.bounds)

    def penalty(self, code: str) -> float:
        return self.penalties.get(code, self.default_penalty)


def value_in_reference_currency(value: float, currency: str, rules: QualityRules) -> float | None:
    """``value`` in the reference currency, or None when ``currency`` has no reference rate."""
    return convert(value, currency, rules.reference_rates)


# --------------------------------------------------------------------------- loading


def _word_list(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise ConfigError(f"{where}: expected a non-empty list of strings, got {value!r}")
    for i, item in enumerate(value):
        if not isinstance(item, str) or not item.strip():
            raise ConfigError(f"{where}[{i}]: expected a non-blank string, got {item!r}")
    return tuple(dict.fromkeys(" ".join(item.lower().split()) for item in value))


def _trie(terms: Sequence[str]) -> str:
    """An alternation of ``terms`` factored by common prefixes ('batter(?:ies|y)'): the regex
    engine then tries one branch per letter instead of every term in turn. A space in a term
    stands for any run of spaces or punctuation ('spare-parts')."""
    root: dict = {}
    for term in terms:
        node = root
        for char in term:
            node = node.setdefault(char, {})
        node[""] = {}  # a term ends here

    def emit(node: dict) -> str:
        branches = [
            (r"[\W_]+" if char == " " else re.escape(char)) + emit(child)
            for char, child in sorted(node.items())
            if char
        ]
        if not branches:
            return ""
        ends = "" in node
        body = branches[0] if len(branches) == 1 and not ends else f"(?:{'|'.join(branches)})"
        return body + ("?" if ends else "")

    return emit(root)


def _whole_text_pattern(terms: Sequence[str], min_letters: int) -> re.Pattern[str]:
    """A regex that matches (with ``match``) a text with fewer than ``min_letters`` letters, or one
    made only of ``terms``, digits and punctuation. Possessive loops keep it linear in the text.
    """
    too_short = rf"(?!(?:[\W\d_]*+[^\W\d_]){{{min_letters}}})"
    only_terms = rf"(?:[\W\d_]|(?<!\w){_trie(terms)}(?!\w))*+\Z"
    return re.compile(f"{too_short}|{only_terms}", re.IGNORECASE)


def _check_range(ok: bool, where: str, what: str) -> None:
    if not ok:
        raise ConfigError(f"{where}: {what}")


def load_quality_rules(path: Path | None = None) -> QualityRules:
    """Read and validate quality.toml (default: ``streams/settings/quality.toml``).

    Raises ConfigError naming the file and the key for an unknown or missing key, a value of
    the wrong type or out of range, an unknown currency or finding code.
    """
    path = DEFAULT_PATH if path is None else Path(path)
    where = str(path)
    raw: _QualityFile = build_section(_QualityFile, read_toml(path), where)

    descriptions = _word_list(raw.vague_description_terms, f"{where}: vague_description_terms")
    party_names = _word_list(raw.vague_party_names, f"{where}: vague_party_names")
    _check_range(
        raw.min_description_letters >= 0,
        f"{where}: min_description_letters",
        "must be >= 0",
    )
    _check_range(
        0 <= raw.min_line_value < raw.max_line_value,
        f"{where}: min_line_value/max_line_value",
        "need 0 <= min_line_value < max_line_value",
    )
    _check_range(
        0 <= raw.min_value_per_kg < raw.max_value_per_kg,
        f"{where}: min_value_per_kg/max_value_per_kg",
        "need 0 <= min_value_per_kg < max_value_per_kg",
    )
    _check_range(raw.min_net_weight_kg >= 0, f"{where}: min_net_weight_kg", "must be >= 0")
    _check_range(
        raw.max_gross_weight_kg_per_piece > 0,
        f"{where}: max_gross_weight_kg_per_piece",
        "must be > 0",
    )
    _check_range(
        raw.late_filing_grace_minutes >= 0, f"{where}: late_filing_grace_minutes", "must be >= 0"
    )
    _check_range(6 <= raw.max_hs_digits <= 14, f"{where}: max_hs_digits", "must be 6 to 14")
    for key in ("min_hs_digits_pre_loading", "min_hs_digits_pre_arrival"):
        _check_range(
            2 <= getattr(raw, key) <= raw.max_hs_digits,
            f"{where}: {key}",
            f"must be between 2 and max_hs_digits ({raw.max_hs_digits})",
        )

    extra = raw.extra_country_codes
    if not isinstance(extra, list):
        raise ConfigError(f"{where}: extra_country_codes: expected a list, got {extra!r}")
    for i, code in enumerate(extra):
        ok = isinstance(code, str) and len(code) == 2 and code.isascii() and code.isupper()
        _check_range(ok, f"{where}: extra_country_codes[{i}]", f"{code!r} is not 2 capitals")
    currencies = reference.currencies()

    rates = _number_table(raw.reference_rates, f"{where}: [reference_rates]")
    for code, rate in rates.items():
        _check_range(code in currencies, f"{where}: [reference_rates].{code}", "not ISO 4217")
        _check_range(rate > 0, f"{where}: [reference_rates].{code}", "must be > 0")
    ref = raw.reference_currency
    _check_range(
        rates.get(ref) == 1.0,
        f"{where}: reference_currency",
        f"{ref!r} needs a rate of exactly 1.0 in [reference_rates]",
    )

    penalties = _number_table(raw.penalties, f"{where}: [penalties]")
    for code, cost in penalties.items():
        _check_range(
            code == "default" or code in FINDING_CODES,
            f"{where}: [penalties].{code}",
            f"unknown finding code; known: {list(FINDING_CODES)}",
        )
        _check_range(0 <= cost <= 1, f"{where}: [penalties].{code}", "must be in [0, 1]")
    _check_range("default" in penalties, f"{where}: [penalties]", "missing key 'default'")
    default_penalty = penalties.pop("default")

    effects = _effects(raw.effects, f"{where}: [effects]")
    limits: Bounds = build_section(Bounds, raw.bounds, f"{where}: [bounds]")
    for key, what in limits.problems():
        raise ConfigError(f"{where}: [bounds].{key}: {what}")

    return QualityRules(
        vague_description_terms=descriptions,
        vague_party_names=party_names,
        min_description_letters=raw.min_description_letters,
        min_line_value=raw.min_line_value,
        max_line_value=raw.max_line_value,
        min_net_weight_kg=raw.min_net_weight_kg,
        max_gross_weight_kg_per_piece=raw.max_gross_weight_kg_per_piece,
        min_value_per_kg=raw.min_value_per_kg,
        max_value_per_kg=raw.max_value_per_kg,
        late_filing_grace=timedelta(minutes=raw.late_filing_grace_minutes),
        late_filing_grace_ms=round(raw.late_filing_grace_minutes * 60_000),
        min_hs_digits=MappingProxyType(
            {
                PRE_LOADING: raw.min_hs_digits_pre_loading,
                PRE_ARRIVAL: raw.min_hs_digits_pre_arrival,
            }
        ),
        max_hs_digits=raw.max_hs_digits,
        hs_accept=MappingProxyType(
            {
                PRE_LOADING: _hs_accept(raw.min_hs_digits_pre_loading, raw.max_hs_digits),
                PRE_ARRIVAL: _hs_accept(raw.min_hs_digits_pre_arrival, raw.max_hs_digits),
            }
        ),
        reference_currency=ref,
        reference_rates=MappingProxyType(rates),
        penalties=MappingProxyType(penalties),
        default_penalty=default_penalty,
        effects=effects,
        countries=reference.countries() | frozenset(extra),
        currencies=currencies,
        source=path,
        digest=hashlib.sha256(path.read_bytes()).hexdigest()[:12],
        vague_description=_whole_text_pattern(descriptions, raw.min_description_letters),
        vague_party_name=_whole_text_pattern(party_names, 1),
        bounds=limits,
    )


def _effects(value: Any, where: str) -> Mapping[str, Mapping[str, str]]:
    """[effects.PRE_LOADING] and [effects.PRE_ARRIVAL]: finding code -> effect, with a
    ``default`` for the codes not listed; the key findings can only reject (a filing under
    another key is read on another partition than its consignment's other filing)."""
    if not isinstance(value, dict) or set(value) != set(STAGES):
        raise ConfigError(f"{where}: expected exactly the tables {list(STAGES)}")
    out = {}
    for stage in STAGES:
        table = value[stage]
        at = f"{where}.{stage}"
        if not isinstance(table, dict) or "default" not in table:
            raise ConfigError(f"{at}: expected a table with a 'default' effect")
        for code, effect in table.items():
            _check_range(
                code == "default" or code in FINDING_CODES,
                f"{at}.{code}",
                f"unknown finding code; known: {list(FINDING_CODES)}",
            )
            _check_range(effect in EFFECTS, f"{at}.{code}", f"expected one of {list(EFFECTS)}")
        by_code = {code: table.get(code, table["default"]) for code in FINDING_CODES}
        for code in KEY_FINDINGS:
            _check_range(
                by_code[code] == REJECT,
                f"{at}.{code}",
                f"must be {REJECT!r}: the filing cannot be linked under that key",
            )
        out[stage] = MappingProxyType(by_code)
    return MappingProxyType(out)


def _hs_accept(low: int, high: int) -> frozenset[str]:
    """The HS 2022 codes of an accepted length; longer national codes take the slow path."""
    return frozenset(code for code in reference.hs_codes() if low <= len(code) <= high)


def _number_table(value: Any, where: str) -> dict[str, float]:
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: expected a table, got {value!r}")
    out = {}
    for key, number in value.items():
        ok = isinstance(number, int | float) and not isinstance(number, bool)
        if not ok or not math.isfinite(number):
            raise ConfigError(f"{where}.{key}: expected a number, got {number!r}")
        out[key] = float(number)
    return out


# --------------------------------------------------------------------------- assessment
# Each check first asks one cheap question of the value (a set probe, a regex match, a
# comparison); only a value that fails goes to a ``_bad_*`` helper, which tells which problem it
# is and builds the field path and message. A clean filing allocates nothing but its report.


def _shown(value: Any) -> str:
    """A field value quoted for a message, cut short so a huge value cannot bloat the response."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _add(out: list[dict], code: str, field: str, message: str) -> None:
    out.append({"code": code, "field": field, "message": message})


def _missing(out: list[dict], field: str, name: str) -> None:
    _add(out, DQ_MISSING_FIELD, field, f"{field} is missing: give {_WHAT_TO_GIVE[name]}.")


def _blank(text: str | None) -> bool:
    return not text or text.isspace()


def _bad_country(out: list[dict], value: str, field: str, name: str) -> None:
    if _blank(value):
        _missing(out, field, name)
    else:
        _add(
            out,
            DQ_INVALID_COUNTRY,
            field,
            f"{_shown(value)} is not an ISO 3166-1 alpha-2 country code: "
            "give two capital letters, e.g. 'DE'.",
        )


def _bad_currency(out: list[dict], value: str, field: str) -> None:
    if _blank(value):
        _missing(out, field, "currency")
    else:
        _add(
            out,
            DQ_INVALID_CURRENCY,
            field,
            f"{_shown(value)} is not an ISO 4217 currency code: give three capital letters, "
            "e.g. 'EUR'.",
        )


def _bad_description(out: list[dict], text: str, field: str, name: str) -> None:
    if _blank(text):
        _missing(out, field, name)
    else:
        _add(
            out,
            DQ_VAGUE_DESCRIPTION,
            field,
            f"Description {_shown(text)} is too vague to identify the goods: say what they are, "
            "of what material and for what use (e.g. 'lithium-ion battery for mobile phone', "
            "not 'battery').",
        )


def _bad_hs_code(out: list[dict], code: str, field: str, stage: str, rules: QualityRules) -> None:
    """Called for a code outside the stage's fast-accept set: a national code may still be valid."""
    low, high = rules.min_hs_digits[stage], rules.max_hs_digits
    if _blank(code):
        _missing(out, field, "hs_code")
        return
    if not (code.isascii() and code.isdigit()):
        message = f"HS code {_shown(code)} must be digits only, without dots or spaces."
    elif not low <= len(code) <= high:
        message = f"HS code {_shown(code)} has {len(code)} digits: give {low} to {high} digits."
    elif not reference.hs_exists(code, high):
        message = (
            f"HS code {_shown(code)} does not exist in HS 2022 (codes of older HS editions are "
            "not accepted): check the classification."
        )
    else:
        return
    _add(out, DQ_UNKNOWN_HS_CODE, field, message)


def _party(out: list[dict], party: dict, path: str, rules: QualityRules) -> None:
    name = party["name"]
    if rules.vague_party_name.match(name):  # a blank name matches too
        if _blank(name):
            _missing(out, f"{path}.name", "name")
        else:
            _add(
                out,
                DQ_VAGUE_PARTY_NAME,
                f"{path}.name",
                f"Name {_shown(name)} identifies nobody: give the full name of the person or "
                "company.",
            )
    if _blank(party["address"]):
        _missing(out, f"{path}.address", "address")
    country = party["country"]
    if country not in rules.countries:
        _bad_country(out, country, f"{path}.country", "country")


def _when(moment: datetime | int) -> str:
    if isinstance(moment, int):
        moment = datetime.fromtimestamp(moment / 1000, UTC)
    return moment.isoformat(" ", "minutes")


def _late(
    out: list[dict],
    filed: datetime | int,
    deadline: datetime | int,
    what: str,
    rules: QualityRules,
) -> None:
    """Timestamps may be datetimes (fastavro with logical types) or epoch milliseconds (the
    pipeline's decoder strips logical types for speed); both work, mixing them does not."""
    grace = rules.late_filing_grace_ms if isinstance(filed, int) else rules.late_filing_grace
    if filed > deadline + grace:
        _add(
            out,
            DQ_LATE_FILING,
            "filing_time",
            f"Filed at {_when(filed)}, after the {what} ({_when(deadline)}): file before it.",
        )


def _pre_loading(record: dict, rules: QualityRules) -> list[dict]:
    out: list[dict] = []
    countries = rules.countries
    _party(out, record["shipper"], "shipper", rules)
    _party(out, record["consignee"], "consignee", rules)
    pieces = record["pieces"]
    if pieces <= 0:
        _missing(out, "pieces", "pieces")
    weight = record["gross_weight_kg"]
    if not weight > 0:
        _add(
            out,
            DQ_IMPLAUSIBLE_WEIGHT,
            "gross_weight_kg",
            f"Gross weight {weight:g} kg is not positive: give the total gross weight in kg.",
        )
    elif pieces > 0 and weight > rules.max_gross_weight_kg_per_piece * pieces:
        _add(
            out,
            DQ_IMPLAUSIBLE_WEIGHT,
            "gross_weight_kg",
            f"Gross weight {weight:g} kg over {pieces} piece(s) is above "
            f"{rules.max_gross_weight_kg_per_piece:g} kg a piece: check the weight is in kg "
            "and the number of pieces.",
        )
    description = record["cargo_description"]
    if rules.vague_description.match(description):
        _bad_description(out, description, "cargo_description", "cargo_description")
    hs_code = record["hs_code"]  # optional at pre-loading: only a given code is checked
    if hs_code not in rules.hs_accept[PRE_LOADING] and not _blank(hs_code):
        _bad_hs_code(out, hs_code, "hs_code", PRE_LOADING, rules)
    origin = record["origin_country"]  # optional too
    if origin not in countries and not _blank(origin):
        _bad_country(out, origin, "origin_country", "origin_country")
    destination = record["destination_country"]
    if destination not in countries:
        _bad_country(out, destination, "destination_country", "destination_country")
    for i, country in enumerate(record["route"]):
        if country not in countries:
            _bad_country(out, country, f"route[{i}]", "country")
    _late(out, record["filing_time"], record["planned_loading_time"], "planned loading", rules)
    return out


def _item(out: list[dict], item: dict, i: int, rules: QualityRules) -> None:
    description = item["description"]
    if rules.vague_description.match(description):
        _bad_description(out, description, f"items[{i}].description", "description")
    hs_code = item["hs_code"]
    if hs_code not in rules.hs_accept[PRE_ARRIVAL]:
        _bad_hs_code(out, hs_code, f"items[{i}].hs_code", PRE_ARRIVAL, rules)
    if item["quantity"] <= 0:
        _missing(out, f"items[{i}].quantity", "quantity")
    weight = item["net_weight_kg"]
    if not (weight > 0 and weight >= rules.min_net_weight_kg):  # written so that NaN fails
        _add(
            out,
            DQ_IMPLAUSIBLE_WEIGHT,
            f"items[{i}].net_weight_kg",
            f"Net weight {weight:g} kg is below {rules.min_net_weight_kg:g} kg: give the net "
            "weight of the line in kg.",
        )
    origin = item["origin_country"]
    if origin not in rules.countries:
        _bad_country(out, origin, f"items[{i}].origin_country", "origin_country")
    currency = item["currency"]
    if currency not in rules.currencies:
        _bad_currency(out, currency, f"items[{i}].currency")
    value = item["value"]
    if not value > 0:
        _add(
            out,
            DQ_IMPLAUSIBLE_VALUE,
            f"items[{i}].value",
            f"Value {value:g} is not positive: give the price paid for the line.",
        )
        return
    converted = value_in_reference_currency(value, currency, rules)
    if converted is None:
        return  # no rate: the range checks would compare unlike units
    ref = rules.reference_currency
    if not rules.min_line_value <= converted <= rules.max_line_value:
        _add(
            out,
            DQ_IMPLAUSIBLE_VALUE,
            f"items[{i}].value",
            f"Value {value:g} {currency} (about {converted:.2f} {ref}) is outside the plausible "
            f"{rules.min_line_value:g}-{rules.max_line_value:g} {ref} for a line: check the "
            "value and the currency.",
        )
    elif weight > 0 and not (
        rules.min_value_per_kg <= converted / weight <= rules.max_value_per_kg
    ):
        _add(
            out,
            DQ_IMPLAUSIBLE_VALUE,
            f"items[{i}].value",
            f"Value per kg {converted / weight:.2f} {ref} is outside the plausible "
            f"{rules.min_value_per_kg:g}-{rules.max_value_per_kg:g} {ref}: check the value, "
            "the currency and the net weight.",
        )


def _pre_arrival(record: dict, rules: QualityRules) -> list[dict]:
    out: list[dict] = []
    _party(out, record["seller"], "seller", rules)
    _party(out, record["consignee"], "consignee", rules)
    for i, item in enumerate(record["items"]):
        _item(out, item, i, rules)
    destination = record["destination_country"]
    if destination not in rules.countries:
        _bad_country(out, destination, "destination_country", "destination_country")
    _late(out, record["filing_time"], record["expected_arrival_time"], "expected arrival", rules)
    return out


def _unusable(record: dict, stage: str) -> str | None:
    for key in ("house_waybill", "message_id", "carrier_id"):
        if _blank(record[key]):
            return f"{key} is blank: the filing cannot be identified or answered"
    if stage == PRE_ARRIVAL and not record["items"]:
        return "the declaration has no item lines: there are no goods to assess"
    return None


def _score(findings: list[dict], rules: QualityRules) -> float:
    cost = sum(rules.penalty(f["code"]) for f in findings)
    return max(0.0, round(1.0 - cost, 6))


def _key_finding(key: bytes | None, waybill: str) -> dict | None:
    """The Kafka key must be the house waybill: filings are partitioned (and linked) by it."""
    if not key:
        return {
            "code": DQ_MISSING_KEY,
            "field": "(key)",
            "message": f"The message has no key: send it keyed by its house waybill {waybill!r}.",
        }
    text = key.decode("utf-8", "replace")
    if text != waybill:
        return {
            "code": DQ_KEY_NOT_WAYBILL,
            "field": "(key)",
            "message": f"Key {_shown(text)} is not the house waybill {waybill!r}: send the "
            "filing keyed by its house waybill.",
        }
    return None


@dataclass(frozen=True, slots=True)
class Effect:
    """What a filing's findings do to its decision (quality.toml [effects])."""

    rejected: dict | None  # the first finding that rejects the filing
    forced: str | None  # the outcome the findings force at the stage (None: only the score)
    reason: dict | None  # the reason the decision gives for it (contribution 0)


NO_EFFECT = Effect(None, None, None)


def effect(report: QualityReport, stage: str, rules: QualityRules) -> Effect:
    """The strictest effect of a report's findings at ``stage``."""
    if not report.findings:
        return NO_EFFECT
    table = rules.effects[stage]
    by_effect: dict[str, list[dict]] = {}
    for f in report.findings:
        by_effect.setdefault(table.get(f["code"], SCORE), []).append(f)
    if REJECT in by_effect:
        return Effect(by_effect[REJECT][0], None, None)
    for kind in (HOLD, REQUEST_FOR_INFORMATION):
        found = by_effect.get(kind)
        if found:
            code, description = EFFECT_REASON[kind]
            fields = ", ".join(dict.fromkeys(f"{f['code']} at {f['field']}" for f in found))
            outcome = EFFECT_OUTCOME[kind][stage]
            reason = {
                "code": code,
                "description": description,
                "contribution": 0.0,
                "evidence": f"{fields}; forces {outcome}",
                "carrier_visible": True,
            }
            return Effect(None, outcome, reason)
    return NO_EFFECT


def assess_batch(
    filings: Sequence[dict],
    stage: str,
    rules: QualityRules,
    keys: Sequence[bytes | None] | None = None,
) -> list[QualityReport]:
    """One QualityReport per filing, in order; ``keys``: the messages' Kafka keys, checked
    against the house waybills (None: not checked, e.g. a kept filing assessed again).

    ``stage`` is PRE_LOADING (records of pre_loading_filing.avsc) or PRE_ARRIVAL
    (pre_arrival_declaration.avsc), as fastavro decodes them (timestamps as UTC datetimes, or as
    epoch milliseconds when logical types are stripped). A filing is ``unusable`` (score
    0.0, no findings; the pipeline dead-letters it instead of deciding) only when no decision
    could be taken or delivered on it at all:

    - a blank house_waybill, message_id or carrier_id: the consignment cannot be identified,
      linked to its other filing, or answered;
    - a pre-arrival declaration without item lines: there are no goods to assess;
    - a record not shaped like the stage's schema (a missing field or a value of the wrong type):
      it was not decoded with the schema, so nothing in it can be trusted.

    Everything else, however poor, is assessed and reported as findings, so the carrier learns
    what to fix.
    """
    if stage == PRE_LOADING:
        check = _pre_loading
    elif stage == PRE_ARRIVAL:
        check = _pre_arrival
    else:
        raise ValueError(f"unknown filing stage {stage!r}; expected one of {STAGES}")
    reports = []
    append = reports.append
    for i, record in enumerate(filings):
        try:
            reason = _unusable(record, stage)
            if reason is None:
                findings = check(record, rules)
                if keys is not None:
                    wrong_key = _key_finding(keys[i], record["house_waybill"])
                    if wrong_key is not None:
                        findings.insert(0, wrong_key)
                append(QualityReport(findings, _score(findings, rules) if findings else 1.0, None))
                continue
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            reason = f"not a {stage} record ({type(exc).__name__}: {exc})"
        append(QualityReport([], 0.0, reason))
    return reports
