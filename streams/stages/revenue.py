"""Revenue assessment of pre-arrival declarations (WCO E-Commerce FoS Standards 8 and 9): the
duty and tax a consignment owes at its destination, the de minimis thresholds that relieved it,
whether the tax was already collected at sale under a vendor-collection scheme (an IOSS-like
registration), and how much revenue rides on the declaration being right.

De minimis thresholds, rates, tariffs and schemes are national decisions that change by law,
so every value lives in ``settings/revenue/<administration>.yaml`` (one file per destination
administration, e.g. the EU for its member states); this module only knows how to apply them.
Everything is validated and compiled once in :func:`load_revenue_settings` (regexes, frozensets,
per-country lookups) because the assessment runs in the hot path of the pre-arrival stream.

Simplifications, on purpose: values are the intrinsic value of the goods (transport and
insurance are not in the declaration); one tax rate per destination country (no reduced rates,
no provincial sales taxes); duty rates by HS chapter or heading, not full national tariff lines
or preferential origin.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

from greenlane.streams import reference
from greenlane.streams.domain.money import convert
from greenlane.streams.settings import SETTINGS_DIR, ConfigError

DEFAULT_FOLDER = SETTINGS_DIR / "revenue"

REV_VENDOR_ID_MALFORMED = "REV_VENDOR_ID_MALFORMED"
REV_VENDOR_ID_UNREGISTERED = "REV_VENDOR_ID_UNREGISTERED"
REV_VENDOR_ID_NO_SCHEME = "REV_VENDOR_ID_NO_SCHEME"
REV_VENDOR_SCHEME_OVER_CAP = "REV_VENDOR_SCHEME_OVER_CAP"
REV_SALE_TAX_NOT_EVIDENCED = "REV_SALE_TAX_NOT_EVIDENCED"
REV_NEAR_THRESHOLD = "REV_NEAR_THRESHOLD"
REV_UNDERVALUED = "REV_UNDERVALUED"
REV_NO_EXCHANGE_RATE = "REV_NO_EXCHANGE_RATE"

# What each code means, for the officer. How much it weighs and whether the carrier may see it
# are national choices: the ``reasons`` table of each administration's file.
REASON_DESCRIPTIONS: Mapping[str, str] = MappingProxyType(
    {
        REV_VENDOR_ID_MALFORMED: "Vendor-collection number does not have the scheme's format",
        REV_VENDOR_ID_UNREGISTERED: "Vendor-collection number is not a known registration",
        REV_VENDOR_ID_NO_SCHEME: "Vendor-collection number given, but the destination has no "
        "vendor-collection scheme",
        REV_VENDOR_SCHEME_OVER_CAP: "Consignment value is above what the vendor-collection "
        "scheme covers: tax is due at import",
        REV_SALE_TAX_NOT_EVIDENCED: "Tax must be collected at sale below the threshold, but no "
        "valid vendor registration is declared",
        REV_NEAR_THRESHOLD: "Consignment value just under a revenue threshold",
        REV_UNDERVALUED: "Declared value per kg far below the floor for such goods",
        REV_NO_EXCHANGE_RATE: "Line currency has no exchange rate: the line is left out of the "
        "revenue assessment",
    }
)
REASON_CODES = tuple(REASON_DESCRIPTIONS)

_COUNTINGS = ("distinct_hs6", "lines", "units")
_BELOW_TAX_THRESHOLD = ("relief", "collected_at_sale")

# ------------------------------------------------------------------------ compiled settings


@dataclass(frozen=True, slots=True)
class HsTable:
    """A number by HS code: the heading's (4 digits) if listed, else the chapter's (2), else
    the default. Used for duty rates and value-per-kg floors."""

    default: float
    chapters: Mapping[str, float]
    headings: Mapping[str, float]

    def of(self, hs_code: str) -> float:
        value = self.headings.get(hs_code[:4])
        if value is None:
            return self.chapters.get(hs_code[:2], self.default)
        return value


@dataclass(frozen=True, slots=True)
class Threshold:
    """A de minimis threshold that may depend on where the consignment is shipped from
    (Canada's CUSMA thresholds), taken as the seller's country. None = no threshold."""

    default: float | None
    by_seller_country: Mapping[str, float]

    def for_seller(self, country: str) -> float | None:
        return self.by_seller_country.get(country, self.default)


@dataclass(frozen=True, slots=True)
class FlatDuty:
    """A fixed duty per item instead of ad valorem rates, on consignments up to ``max_value``."""

    amount: float
    max_value: float
    counting: str  # distinct_hs6 | lines | units


@dataclass(frozen=True, slots=True)
class VendorScheme:
    """Tax collected at sale by registered sellers or platforms (EU IOSS, UK VAT, AU LVIG)."""

    name: str
    id_pattern: re.Pattern[str]
    max_value: float | None  # consignments above it cannot use the scheme
    registrations: frozenset[str]


@dataclass(frozen=True, slots=True)
class ReasonTemplate:
    code: str
    description: str
    contribution: float
    carrier_visible: bool

    def reason(self, evidence: str) -> dict:
        return {
            "code": self.code,
            "description": self.description,
            "contribution": self.contribution,
            "evidence": evidence,
            "carrier_visible": self.carrier_visible,
        }


@dataclass(frozen=True)
class Administration:
    """One destination administration's revenue settings, validated."""

    name: str
    countries: frozenset[str]
    currency: str
    duty_threshold: Threshold
    flat_duty: FlatDuty | None
    duty_rates: HsTable
    tax_name: str
    tax_rates: Mapping[str, float]  # destination country -> rate (every country listed)
    tax_threshold: Threshold
    tax_at_sale_below_threshold: bool  # UK/AU: below the threshold the seller collects it
    tax_base_includes_duty: bool
    vendor_scheme: VendorScheme | None
    value_per_kg_floor: HsTable | None  # destination currency per kg
    near_threshold_margin: float
    exchange_rates: Mapping[str, float]  # units of ``currency`` per unit of another currency
    reasons: Mapping[str, ReasonTemplate]  # codes not listed are not reported
    source: Path


@dataclass(frozen=True)
class RevenueSettings:
    """Every destination administration's revenue settings, validated and indexed by country."""

    administrations: Mapping[str, Administration]
    by_country: Mapping[str, Administration]
    folder: Path
    digest: str  # first 12 hex digits of the SHA-256 over the files, for the ruleset version


# ------------------------------------------------------------------------ assessment result


@dataclass(frozen=True, slots=True)
class RevenueAssessment:
    """What a pre-arrival declaration owes at its destination, and what is at risk."""

    destination: str  # destination country
    administration: str  # whose settings applied (EU for DE, FR, ...)
    currency: str  # the administration's currency; every amount below is in it
    intrinsic_value: float  # of the consignment, converted with the settings' table
    duty: float
    tax: float  # assessed, whether collected at sale or at import
    duty_threshold: float | None  # de minimis threshold applied (None = none)
    tax_threshold: float | None
    duty_relief: bool  # the consignment fell under the duty threshold
    tax_relief: bool  # ... under the tax threshold (relieved, or collected at sale instead)
    vendor_collected: bool  # tax collected at sale under a valid registration within the cap
    vendor_collection_id_valid: bool | None  # None when no id was given
    revenue_at_risk: float
    reasons: list[dict]

    def as_record(self) -> dict:
        """The flat fields for an Avro record (see :func:`avro_schema`); the reasons are not in
        it: they join the decision's reasons."""
        # not dataclasses.asdict: it deep-copies the reasons, a fifth of the batch core's time
        return {name: getattr(self, name) for name in _RECORD_FIELDS}


_RECORD_FIELDS = tuple(f.name for f in fields(RevenueAssessment) if f.name != "reasons")


def avro_schema() -> dict:
    """The Avro record schema of :meth:`RevenueAssessment.as_record`, for the decision schema."""
    types = {
        "str": "string",
        "float": "double",
        "bool": "boolean",
        "float | None": ["null", "double"],
        "bool | None": ["null", "boolean"],
    }
    docs = {
        "destination": "ISO 3166-1 alpha-2 destination country.",
        "administration": "Revenue administration whose settings applied (e.g. EU for DE).",
        "currency": "ISO 4217 currency of every amount in this record.",
        "intrinsic_value": "Intrinsic value of the consignment, converted.",
        "duty": "Customs duty assessed.",
        "tax": "VAT/GST assessed, collected at sale or at import.",
        "duty_threshold": "Duty de minimis threshold applied; null when there is none.",
        "tax_threshold": "Tax de minimis threshold applied; null when there is none.",
        "duty_relief": "The consignment fell under the duty threshold.",
        "tax_relief": "The consignment fell under the tax threshold.",
        "vendor_collected": "Tax was collected at sale under a valid vendor registration.",
        "vendor_collection_id_valid": "Whether the declared registration is valid; null when "
        "none was declared.",
        "revenue_at_risk": "Duty and tax lost if the declaration is wrong in the usual ways.",
    }
    out = []
    for f in fields(RevenueAssessment):
        if f.name == "reasons":
            continue
        field: dict[str, Any] = {"name": f.name, "type": types[str(f.type)], "doc": docs[f.name]}
        if isinstance(field["type"], list):
            field["default"] = None
        out.append(field)
    return {
        "type": "record",
        "name": "RevenueAssessment",
        "namespace": "org.greenlane.decision",
        "doc": "Duty and tax of a pre-arrival declaration (WCO E-Commerce FoS Standards 8, 9).",
        "fields": out,
    }


# ------------------------------------------------------------------------ loading


class _Node:
    """A mapping from a settings file, with the path of the place it came from for errors."""

    def __init__(
        self, data: Any, where: str, known: set[str], required: set[str], prefix: str = ""
    ) -> None:
        if not isinstance(data, dict):
            raise ConfigError(f"{where}: expected a mapping, got {data!r}")
        unknown = set(data) - known
        if unknown:
            raise ConfigError(
                f"{where}: unknown key(s) {sorted(map(str, unknown))}; known: {sorted(known)}"
            )
        missing = required - set(data)
        if missing:
            raise ConfigError(f"{where}: missing key(s) {sorted(missing)}")
        self.data = data
        self.where = where
        self.prefix = prefix or f"{where}."

    def at(self, key: str) -> str:
        """Where a key's value is, e.g. 'revenue/eu.yaml: EU: duty.rates.default'."""
        return self.prefix + str(key)

    def has(self, key: str) -> bool:
        return self.data.get(key) is not None

    def text(self, key: str) -> str:
        value = self.data[key]
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(f"{self.at(key)}: expected a non-blank string, got {value!r}")
        return value

    def flag(self, key: str) -> bool:
        value = self.data[key]
        if not isinstance(value, bool):
            raise ConfigError(f"{self.at(key)}: expected true or false, got {value!r}")
        return value

    def number(self, key: str, low: float = 0.0, high: float = math.inf) -> float:
        return _number(self.data[key], self.at(key), low, high)

    def sub(self, key: str, known: set[str], required: set[str] | None = None) -> _Node:
        return _Node(self.data[key], self.at(key), known, known if required is None else required)


def _number(value: Any, where: str, low: float = 0.0, high: float = math.inf) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    if not low <= value <= high:
        raise ConfigError(f"{where}: {value!r} is outside [{low:g}, {high:g}]")
    return float(value)


def _country(code: Any, where: str) -> str:
    if not isinstance(code, str) or code not in reference.countries():
        raise ConfigError(f"{where}: {code!r} is not an ISO 3166-1 alpha-2 country code")
    return code


def _number_by_country(value: Any, where: str, high: float) -> dict[str, float]:
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: expected a mapping of country -> number, got {value!r}")
    return {
        _country(k, f"{where}.{k}"): _number(v, f"{where}.{k}", 0.0, high) for k, v in value.items()
    }


def _threshold(value: Any, where: str) -> Threshold:
    """``null`` (no threshold), a number, or ``{default: number|null, by_seller_country: {..}}``."""
    if value is None or not isinstance(value, dict):
        return Threshold(None if value is None else _number(value, where), MappingProxyType({}))
    node = _Node(value, where, {"default", "by_seller_country"}, {"default"})
    default = node.data["default"]
    return Threshold(
        None if default is None else node.number("default"),
        MappingProxyType(
            _number_by_country(
                node.data.get("by_seller_country", {}), node.at("by_seller_country"), math.inf
            )
        ),
    )


def _hs_table(node: _Node, high: float) -> HsTable:
    """``{default: x, chapters: {'61': y}, headings: {'8517': z}}``; codes must exist in HS 2022."""
    tables = {}
    for key, digits in (("chapters", 2), ("headings", 4)):
        table = node.data.get(key) or {}
        if not isinstance(table, dict):
            raise ConfigError(f"{node.at(key)}: expected a mapping of HS code -> number")
        out = {}
        for code, number in table.items():
            where = f"{node.at(key)}.{code}"
            if not (isinstance(code, str) and len(code) == digits and code.isdigit()):
                raise ConfigError(
                    f"{where}: expected a quoted {digits}-digit HS code, got {code!r}"
                )
            if code not in reference.hs_codes():
                raise ConfigError(f"{where}: {code!r} is not an HS 2022 code")
            out[code] = _number(number, where, 0.0, high)
        tables[key] = MappingProxyType(out)
    return HsTable(node.number("default", 0.0, high), tables["chapters"], tables["headings"])


def _normalise_id(value: str) -> str:
    """Registration numbers are compared without spaces and in capitals ('im 276...' counts)."""
    return "".join(value.split()).upper()


def _vendor_scheme(node: _Node) -> VendorScheme:
    try:
        pattern = re.compile(node.text("id_pattern"))
    except re.error as exc:
        raise ConfigError(f"{node.at('id_pattern')}: not a valid regex: {exc}") from exc
    registrations = node.data["registrations"]
    if not isinstance(registrations, list):
        raise ConfigError(f"{node.at('registrations')}: expected a list of registration numbers")
    valid = set()
    for i, number in enumerate(registrations):
        where = f"{node.at('registrations')}[{i}]"
        if not isinstance(number, str) or not pattern.fullmatch(_normalise_id(number)):
            raise ConfigError(f"{where}: {number!r} does not match id_pattern {pattern.pattern!r}")
        valid.add(_normalise_id(number))
    max_value = node.data.get("max_value")
    return VendorScheme(
        name=node.text("name"),
        id_pattern=pattern,
        max_value=None if max_value is None else node.number("max_value"),
        registrations=frozenset(valid),
    )


_TOP_KEYS = {
    "administration",
    "countries",
    "currency",
    "near_threshold_margin",
    "duty",
    "tax",
    "vendor_collection",
    "undervaluation",
    "exchange_rates",
    "reasons",
}
_OPTIONAL_TOP = {"vendor_collection", "undervaluation"}


def _administration(data: Any, path: Path) -> Administration:
    if not isinstance(data, dict) or not isinstance(data.get("administration"), str):
        raise ConfigError(f"{path}: expected a mapping with an 'administration' name")
    name = data["administration"]
    top = _Node(data, f"{path}: {name}", _TOP_KEYS, _TOP_KEYS - _OPTIONAL_TOP, f"{path}: {name}: ")

    countries = top.data["countries"]
    if not isinstance(countries, list) or not countries:
        raise ConfigError(f"{top.at('countries')}: expected a non-empty list of countries")
    members = frozenset(_country(c, f"{top.at('countries')}[{i}]") for i, c in enumerate(countries))
    currency = top.text("currency")
    currencies = reference.currencies()
    if currency not in currencies:
        raise ConfigError(f"{top.at('currency')}: {currency!r} is not an ISO 4217 code")

    rates_where = top.at("exchange_rates")
    raw_rates = top.data["exchange_rates"]
    if not isinstance(raw_rates, dict):
        raise ConfigError(f"{rates_where}: expected a mapping of currency -> rate")
    exchange = {}
    for code, rate in raw_rates.items():
        if code not in currencies:
            raise ConfigError(f"{rates_where}.{code}: not an ISO 4217 currency code")
        exchange[code] = _number(rate, f"{rates_where}.{code}")
        if exchange[code] <= 0:
            raise ConfigError(f"{rates_where}.{code}: must be > 0")
    if exchange.get(currency) != 1.0:
        raise ConfigError(
            f"{rates_where}.{currency}: the administration's own currency needs a "
            "rate of exactly 1.0"
        )

    duty = top.sub("duty", {"threshold", "flat_per_item", "rates"}, {"threshold", "rates"})
    flat = None
    if duty.has("flat_per_item"):
        f = duty.sub("flat_per_item", {"amount", "max_value", "counting"})
        counting = f.text("counting")
        if counting not in _COUNTINGS:
            raise ConfigError(f"{f.at('counting')}: {counting!r} is not one of {_COUNTINGS}")
        flat = FlatDuty(f.number("amount"), f.number("max_value"), counting)
    duty_rates = _hs_table(
        duty.sub("rates", {"default", "chapters", "headings"}, {"default"}), 10.0
    )

    tax = top.sub(
        "tax",
        {"name", "rate", "rates_by_country", "threshold", "below_threshold", "base_includes_duty"},
        {"name", "rate", "threshold", "below_threshold", "base_includes_duty"},
    )
    by_country = _number_by_country(
        tax.data.get("rates_by_country") or {}, tax.at("rates_by_country"), 1.0
    )
    strangers = set(by_country) - members
    if strangers:
        raise ConfigError(f"{tax.at('rates_by_country')}: {sorted(strangers)} not in countries")
    default_rate = tax.number("rate", 0.0, 1.0)
    below = tax.text("below_threshold")
    if below not in _BELOW_TAX_THRESHOLD:
        raise ConfigError(
            f"{tax.at('below_threshold')}: {below!r} is not one of {_BELOW_TAX_THRESHOLD}"
        )

    scheme = None
    if top.has("vendor_collection"):
        scheme = _vendor_scheme(
            top.sub(
                "vendor_collection",
                {"name", "id_pattern", "max_value", "registrations"},
                {"name", "id_pattern", "registrations"},
            )
        )
    floor = None
    if top.has("undervaluation"):
        under = top.sub("undervaluation", {"min_value_per_kg"})
        floor = _hs_table(
            under.sub("min_value_per_kg", {"default", "chapters", "headings"}, {"default"}),
            math.inf,
        )

    reasons_node = top.sub("reasons", set(REASON_CODES), set())
    reasons = {}
    for code in reasons_node.data:
        r = reasons_node.sub(code, {"contribution", "carrier_visible"})
        reasons[code] = ReasonTemplate(
            code,
            REASON_DESCRIPTIONS[code],
            r.number("contribution", -math.inf),
            r.flag("carrier_visible"),
        )

    return Administration(
        name=name,
        countries=members,
        currency=currency,
        duty_threshold=_threshold(duty.data["threshold"], duty.at("threshold")),
        flat_duty=flat,
        duty_rates=duty_rates,
        tax_name=tax.text("name"),
        tax_rates=MappingProxyType({c: by_country.get(c, default_rate) for c in members}),
        tax_threshold=_threshold(tax.data["threshold"], tax.at("threshold")),
        tax_at_sale_below_threshold=below == "collected_at_sale",
        tax_base_includes_duty=tax.flag("base_includes_duty"),
        vendor_scheme=scheme,
        value_per_kg_floor=floor,
        near_threshold_margin=top.number("near_threshold_margin", 0.0, 1.0),
        exchange_rates=MappingProxyType(exchange),
        reasons=MappingProxyType(reasons),
        source=path,
    )


def load_revenue_settings(folder: Path | None = None) -> RevenueSettings:
    """Read and validate every ``*.yaml`` in ``folder`` (default ``streams/settings/revenue/``),
    one destination administration per file.

    Raises ConfigError naming the file, the administration and the field for a malformed file, an
    unknown or missing key, a value of the wrong type or out of range, an unknown country,
    currency or HS code, a registration that fails its own scheme's format, or a country claimed
    by two administrations.
    """
    folder = DEFAULT_FOLDER if folder is None else Path(folder)
    paths = sorted(folder.glob("*.yaml"))
    if not paths:
        raise ConfigError(f"{folder}: no revenue settings (*.yaml) found")
    administrations: dict[str, Administration] = {}
    by_country: dict[str, Administration] = {}
    digest = hashlib.sha256()
    for path in paths:
        raw = path.read_bytes()
        digest.update(path.name.encode() + b"\0" + raw + b"\0")
        try:
            data = yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
        adm = _administration(data, path)
        if adm.name in administrations:
            raise ConfigError(
                f"{path}: administration {adm.name!r} is also defined in "
                f"{administrations[adm.name].source}"
            )
        administrations[adm.name] = adm
        for country in sorted(adm.countries):
            other = by_country.setdefault(country, adm)
            if other is not adm:
                raise ConfigError(
                    f"{path}: {adm.name}: countries: {country} already belongs to "
                    f"{other.name} ({other.source})"
                )
    return RevenueSettings(
        administrations=MappingProxyType(administrations),
        by_country=MappingProxyType(by_country),
        folder=folder,
        digest=digest.hexdigest()[:12],
    )


# ------------------------------------------------------------------------ assessment


def _cents(amount: float) -> float:
    return round(amount, 2)


def _charges(
    adm: Administration,
    lines: Sequence[tuple[str, float]],
    intrinsic: float,
    items: int,
    seller_country: str,
    tax_rate: float,
    over: frozenset[str] = frozenset(),
) -> tuple[float, float, float | None, float | None, bool, bool, bool]:
    """(duty, tax, duty threshold, tax threshold, duty relief, tax relief, flat duty applied)
    for a consignment of ``lines`` (HS code, value) worth ``intrinsic``; thresholds named in
    ``over`` ('duty', 'tax', 'flat') are treated as exceeded, for what-if estimates."""
    duty_threshold = adm.duty_threshold.for_seller(seller_country)
    duty_relief = "duty" not in over and duty_threshold is not None and intrinsic <= duty_threshold
    flat = adm.flat_duty
    flat_applied = False
    if duty_relief:
        duty = 0.0
    elif flat is not None and "flat" not in over and intrinsic <= flat.max_value:
        duty = _cents(flat.amount * items)
        flat_applied = True
    else:
        rate_of = adm.duty_rates.of
        duty = _cents(sum(value * rate_of(hs) for hs, value in lines))
    tax_threshold = adm.tax_threshold.for_seller(seller_country)
    tax_relief = "tax" not in over and tax_threshold is not None and intrinsic <= tax_threshold
    if tax_relief and not adm.tax_at_sale_below_threshold:
        tax = 0.0
    else:
        base = intrinsic + duty if adm.tax_base_includes_duty else intrinsic
        tax = _cents(base * tax_rate)
    return duty, tax, duty_threshold, tax_threshold, duty_relief, tax_relief, flat_applied


def _item_count(items: Sequence[dict], counting: str) -> int:
    if counting == "distinct_hs6":
        return len({item["hs_code"][:6] for item in items})
    if counting == "units":
        return sum(max(0, item["quantity"]) for item in items)
    return len(items)


def _assess(record: dict, country: str, adm: Administration) -> RevenueAssessment:
    reasons: list[dict] = []
    templates = adm.reasons
    rates = adm.exchange_rates
    cur = adm.currency
    floor = adm.value_per_kg_floor
    items = record["items"]

    lines: list[tuple[str, float]] = []
    presumed: list[tuple[str, float]] | None = None  # line values at the floor, if any is below
    undervalued: list[str] = []
    unconverted: list[str] = []
    for i, item in enumerate(items):
        value = convert(item["value"], item["currency"], rates)
        if value is None:
            unconverted.append(f"items[{i}] in {item['currency']!r}")
            continue
        if not value > 0:  # NaN and negatives count as nothing (data quality reports them)
            value = 0.0
        hs = item["hs_code"]
        lines.append((hs, value))
        if floor is not None:
            weight = item["net_weight_kg"]
            least = floor.of(hs) * weight if weight > 0 else 0.0
            if value < least:
                if presumed is None:
                    presumed = lines[:-1]
                presumed.append((hs, least))
                undervalued.append(
                    f"items[{i}] HS {hs}: {value / weight:.2f} {cur}/kg, floor "
                    f"{least / weight:.2f} {cur}/kg"
                )
            elif presumed is not None:
                presumed.append((hs, value))

    intrinsic = _cents(sum(value for _, value in lines))
    seller_country = record["seller"]["country"]
    tax_rate = adm.tax_rates[country]
    count = _item_count(items, adm.flat_duty.counting) if adm.flat_duty is not None else 0
    duty, tax, duty_threshold, tax_threshold, duty_relief, tax_relief, flat_applied = _charges(
        adm, lines, intrinsic, count, seller_country, tax_rate
    )

    # Vendor collection: a well-formed, registered number, on a consignment the scheme covers.
    raw_id = record["vendor_collection_id"]
    scheme = adm.vendor_scheme
    id_valid: bool | None = None
    vendor_collected = False
    problem = None
    if raw_id is not None and raw_id.strip():
        number = _normalise_id(raw_id)
        if scheme is None:
            problem = REV_VENDOR_ID_NO_SCHEME, f"{raw_id!r}: {adm.name} has none"
        elif not scheme.id_pattern.fullmatch(number):
            problem = (
                REV_VENDOR_ID_MALFORMED,
                (f"{raw_id!r} does not match the {scheme.name} format {scheme.id_pattern.pattern}"),
            )
        elif number not in scheme.registrations:
            problem = REV_VENDOR_ID_UNREGISTERED, f"{number} is not a {scheme.name} registration"
        id_valid = problem is None
        if id_valid and scheme is not None:
            if scheme.max_value is not None and intrinsic > scheme.max_value:
                problem = (
                    REV_VENDOR_SCHEME_OVER_CAP,
                    (
                        f"{intrinsic:.2f} {cur} is above the {scheme.max_value:g} {cur} "
                        f"{scheme.name} cap"
                    ),
                )
            else:
                vendor_collected = True
        if problem is not None and problem[0] in templates:
            reasons.append(templates[problem[0]].reason(problem[1]))
    if (
        tax_relief
        and adm.tax_at_sale_below_threshold
        and not vendor_collected
        and tax > 0
        and REV_SALE_TAX_NOT_EVIDENCED in templates
    ):
        reasons.append(
            templates[REV_SALE_TAX_NOT_EVIDENCED].reason(
                f"{adm.tax_name} {tax:.2f} {cur} on {intrinsic:.2f} {cur} (under the "
                f"{tax_threshold:g} {cur} threshold): no valid "
                f"{scheme.name if scheme else 'vendor'} registration"
            )
        )

    # Thresholds the value sits just under, where being under changed what is owed. A relief
    # (key) is withdrawn in the what-if of revenue at risk; the scheme cap only changes who
    # collects, not how much.
    limits = []
    if duty_relief:
        limits.append((duty_threshold, "duty de minimis", "duty"))
    if tax_relief:
        limits.append((tax_threshold, f"{adm.tax_name} threshold", "tax"))
    if flat_applied:
        limits.append((adm.flat_duty.max_value, "flat duty limit", "flat"))
    if vendor_collected and scheme.max_value is not None:
        limits.append((scheme.max_value, f"{scheme.name} cap", None))
    low = 1.0 - adm.near_threshold_margin
    near: list[str] = []
    over: set[str] = set()
    for limit, label, key in limits:
        if limit * low <= intrinsic <= limit and intrinsic > 0:
            near.append(f"{limit:g} {cur} {label}")
            if key:
                over.add(key)
    if near and REV_NEAR_THRESHOLD in templates:
        reasons.append(
            templates[REV_NEAR_THRESHOLD].reason(
                f"{intrinsic:.2f} {cur} is within {adm.near_threshold_margin:.0%} under the "
                + ", the ".join(near)
            )
        )
    if undervalued and REV_UNDERVALUED in templates:
        reasons.append(templates[REV_UNDERVALUED].reason("; ".join(undervalued)))
    if unconverted and REV_NO_EXCHANGE_RATE in templates:
        reasons.append(
            templates[REV_NO_EXCHANGE_RATE].reason(
                f"{', '.join(unconverted)}: no rate to {cur} in the revenue settings"
            )
        )

    # Revenue at risk = what is not secured at sale + what a truthful declaration would add.
    at_risk = duty + (0.0 if vendor_collected else tax)
    if presumed is not None or over:
        values = presumed if presumed is not None else lines
        duty2, tax2, *_ = _charges(
            adm,
            values,
            _cents(sum(v for _, v in values)),
            count,
            seller_country,
            tax_rate,
            frozenset(over),
        )
        at_risk += max(0.0, duty2 + tax2 - duty - tax)

    return RevenueAssessment(
        destination=country,
        administration=adm.name,
        currency=cur,
        intrinsic_value=intrinsic,
        duty=duty,
        tax=tax,
        duty_threshold=duty_threshold,
        tax_threshold=tax_threshold,
        duty_relief=duty_relief,
        tax_relief=tax_relief,
        vendor_collected=vendor_collected,
        vendor_collection_id_valid=id_valid,
        revenue_at_risk=_cents(at_risk),
        reasons=reasons,
    )


def nominal_tax_rate(settings: RevenueSettings, destination: str, hs_code: str) -> float | None:
    """Duty rate of the HS code plus the destination's VAT/GST rate, before any threshold or
    flat duty: what taxing the goods costs per unit of value. None where the destination has
    no revenue settings. The risk model's ``tax_rate`` feature, in training and in the stream."""
    adm = settings.by_country.get(destination)
    if adm is None or not hs_code:
        return None
    return adm.duty_rates.of(hs_code) + adm.tax_rates[destination]


def assess_revenue_batch(
    declarations: Sequence[dict], settings: RevenueSettings
) -> list[RevenueAssessment | None]:
    """One RevenueAssessment per pre-arrival declaration (records of
    pre_arrival_declaration.avsc), in order; None when the destination has no revenue settings.

    Per consignment, all in the destination administration's currency:

    - intrinsic value: the item lines' values converted with the settings' exchange table (a line
      in a currency without a rate is left out, with a REV_NO_EXCHANGE_RATE reason);
    - duty: nothing under the duty de minimis (the threshold may depend on the seller's
      country, as Canada's CUSMA thresholds do); else a flat amount per item where the
      administration charges one up to a value; else each line's value times the duty rate of its
      HS heading, or chapter, or the default;
    - tax: the destination country's VAT/GST rate on the value (plus the duty where the tax base
      includes it); nothing under a tax threshold that relieves, or, where the tax is instead
      collected at sale below the threshold (UK, Australia), still assessed;
    - vendor collected: a declared registration that has the scheme's format, is in its list of
      registrations, on a consignment within the scheme's cap (EU IOSS: EUR 150).

    Revenue at risk is the duty and tax lost if the declaration is wrong in the usual ways:

    1. whatever is not already secured at sale (the duty, plus the tax unless vendor-collected)
       depends on the declared value, classification and origin being right at the border;
       a false registration number leaves the tax here, since it was not secured;
    2. plus what a truthful value would add: lines declared below the value-per-kg floor of
       their HS heading/chapter are re-valued at the floor, and a relief the consignment got
       by a value just under its threshold (within ``near_threshold_margin``) is withdrawn; the
       increase of duty + tax under those presumptions is added.

    It is an estimate for ranking consignments by revenue exposure (revenue@n%), not a
    liability. Records must be usable (the data-quality stage dead-letters the rest).
    """
    by_country = settings.by_country
    out: list[RevenueAssessment | None] = []
    append = out.append
    for record in declarations:
        country = record["destination_country"]
        adm = by_country.get(country)
        append(None if adm is None else _assess(record, country, adm))
    return out
