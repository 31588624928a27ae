"""Carrier simulator: realistic, reproducible synthetic pre-loading and pre-arrival traffic.

Demos, tests and benchmarks need traffic that looks like what carriers really send (repeat
sellers, consolidations, mostly-air low-value parcels) with a known share of risky consignments
and of messages that must be dead-lettered. What is "risky" is read from the targeting profiles and
quality.toml, never copied, so the simulator cannot drift from the rules it exercises. The
catalogue of goods, parties and carriers is data (``settings/simulation.yaml``).

``generate`` is pure (seeded, no I/O); ``CarrierSimulator`` sends what it yields through the
same Confluent Avro serializer a carrier would use.
"""

from __future__ import annotations

import heapq
import io
import json
import random
import re
import struct
import time
from bisect import bisect
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from functools import cache
from itertools import accumulate
from pathlib import Path
from typing import Any

import yaml

from greenlane.streams.devtools import fraud as world
from greenlane.streams.devtools.fraud import Brand, FraudSettings, Truth
from greenlane.streams.settings import (
    SETTINGS_DIR,
    ConfigError,
    Settings,
    read_toml,
    read_yaml,
    schema_path,
)

SIMULATION_FILE = SETTINGS_DIR / "simulation.yaml"
TARGETING_DIR = SETTINGS_DIR / "targeting"
QUALITY_FILE = SETTINGS_DIR / "quality.toml"

ROLES = ("pre_loading", "pre_arrival")
KINDS = ("clean", "risky", "corrupt_bytes", "unknown_schema_id", "unusable")
INVALID_KINDS = ("corrupt_bytes", "unknown_schema_id", "unusable")
RISK_SIGNALS = (
    "restricted_goods",
    "high_risk_origin",
    "high_risk_route",
    "undervaluation",
    "vague_description",
    "vague_party",
    "late_filing",
)
TRANSPORT_MODES = ("AIR", "ROAD", "RAIL", "SEA")
_COUNTRY = re.compile(r"^[A-Z]{2}$")
_LETTER = re.compile(r"[^\W\d_]")
_S10_WEIGHTS = (8, 6, 4, 2, 3, 5, 9, 7)
_MINUTE_MS = 60_000
_HOUR_MS = 3_600_000


# --------------------------------------------------------------------------------------------
# Catalogue: simulation.yaml plus the risk lists of the targeting profiles and quality.toml.
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Goods:
    hs_code: str
    descriptions: tuple[str, ...]
    value_per_kg: float  # EUR
    unit_kg: tuple[float, float]
    weight: float


@dataclass(frozen=True, slots=True)
class CountryProfile:
    code: str
    currency: str
    region: str
    state_code: str | None
    address: str
    cities: tuple[tuple[str, str], ...]
    streets: tuple[str, ...]
    company: tuple[str, ...]
    company_words: tuple[str, ...]
    company_trades: tuple[str, ...]
    first_names: tuple[str, ...]
    last_names: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Carrier:
    carrier_id: str
    kind: str
    weight: float
    origins: frozenset[str] | None  # None: serves every origin
    s10_services: tuple[str, ...]
    s10_country: str
    prefix: str
    digits: int
    master_share: float
    consolidation: tuple[int, int]


@dataclass(frozen=True, slots=True)
class Platform:
    name: str
    weight: float
    account: str
    seller_countries: frozenset[str] | None  # None: open to sellers of every country
    url: str


@dataclass(frozen=True, slots=True)
class VendorCollection:
    share: float
    max_value_eur: float
    prefix: str
    state_code: bool
    digits: int


@dataclass(frozen=True, slots=True)
class RiskLists:
    """What the targeting profiles and quality.toml treat as risky, as the simulator needs it."""

    goods_prefixes: tuple[str, ...]
    goods_keywords: tuple[str, ...]
    high_risk_origins: tuple[str, ...]
    high_risk_routes: tuple[str, ...]
    undervaluation_below: float  # EUR per kg
    vague_descriptions: tuple[str, ...]
    vague_party_names: tuple[str, ...]
    min_description_letters: int
    late_grace_ms: int
    reference_rates: dict[str, float]  # EUR per unit of currency

    def restricted(self, hs_code: str, description: str) -> bool:
        """True when a targeting goods rule would fire on this line."""
        return hs_code.startswith(self.goods_prefixes) or bool(
            self.goods_keywords and _keyword_pattern(self.goods_keywords).search(description)
        )

    def vague(self, description: str) -> bool:
        """True when quality.toml would call this description vague."""
        text = description.lower()
        for term in sorted(self.vague_descriptions, key=len, reverse=True):
            text = re.sub(rf"(?<!\w){re.escape(term)}(?!\w)", " ", text)
        letters = sum(ch.isalpha() for ch in description)
        return not _LETTER.search(text) or letters < self.min_description_letters


@cache
def _keyword_pattern(keywords: tuple[str, ...]) -> re.Pattern[str]:
    alternatives = "|".join(re.escape(k) for k in sorted(keywords, key=len, reverse=True))
    return re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)", re.IGNORECASE)


@dataclass(frozen=True)
class Catalogue:
    """Everything traffic is drawn from; build it with ``load_catalogue``."""

    source: str
    params: dict[str, Any]
    goods: tuple[Goods, ...]
    restricted_goods: tuple[Goods, ...]
    countries: dict[str, CountryProfile]
    fallback: CountryProfile
    capitals: dict[str, str]
    carriers: tuple[Carrier, ...]
    platforms: tuple[Platform, ...]
    vendor_collection: dict[str, VendorCollection]
    seller_countries: dict[str, float]
    made_in: dict[str, dict[str, float]]
    destinations: dict[str, float]
    transport_modes: dict[tuple[str, str], dict[str, float]]  # (origin|*, region|*) -> shares
    route_hubs: dict[str, float]
    risk_signals: dict[str, float]
    airline_prefixes: tuple[str, ...]
    risk: RiskLists
    fraud: FraudSettings

    def profile(self, country: str) -> CountryProfile:
        return self.countries.get(country) or self.fallback


class _Reader:
    """Typed access to a YAML mapping that names the file and key path in every error."""

    def __init__(self, data: Any, where: str):
        if not isinstance(data, dict):
            raise ConfigError(f"{where}: expected a mapping")
        self.data = data
        self.where = where

    def _fail(self, key: str, what: str) -> ConfigError:
        return ConfigError(f"{self.where}.{key}: {what}")

    def get(self, key: str, default: Any = ...) -> Any:
        if key not in self.data:
            if default is ...:
                raise self._fail(key, "missing")
            return default
        return self.data[key]

    def sub(self, key: str) -> _Reader:
        return _Reader(self.get(key), f"{self.where}.{key}")

    def records(self, key: str, required: bool = True) -> list[_Reader]:
        """A list of mappings, each as a reader naming its index."""
        value = self.get(key, ... if required else [])
        if not isinstance(value, list) or (required and not value):
            raise self._fail(key, "expected a non-empty list")
        return [_Reader(v, f"{self.where}.{key}[{i}]") for i, v in enumerate(value)]

    def number(self, key: str, low: float = 0.0, high: float = float("inf"), default=...) -> float:
        value = self.get(key, default)
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not low <= value <= high
        ):
            raise self._fail(key, f"expected a number in [{low}, {high}], got {value!r}")
        return float(value)

    def integer(self, key: str, low: int = 0, default: Any = ...) -> int:
        value = self.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise self._fail(key, f"expected an integer >= {low}, got {value!r}")
        return value

    def share(self, key: str, default: Any = ...) -> float:
        return self.number(key, 0.0, 1.0, default)

    def text(self, key: str, default: Any = ...) -> str:
        value = self.get(key, default)
        if not isinstance(value, str):
            raise self._fail(key, f"expected a string, got {value!r}")
        return value

    def strings(self, key: str, default: Any = ..., nonempty: bool = True) -> tuple[str, ...]:
        value = self.get(key, default)
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
            raise self._fail(key, f"expected a list of strings, got {value!r}")
        if nonempty and not value:
            raise self._fail(key, "must not be empty")
        return tuple(value)

    def span(self, key: str, low: float = 0.0) -> tuple[float, float]:
        value = self.get(key)
        if (
            not isinstance(value, list)
            or len(value) != 2
            or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
            or not low <= value[0] <= value[1]
        ):
            raise self._fail(key, f"expected a range [min, max] with {low} <= min <= max")
        return (float(value[0]), float(value[1]))

    def weights(self, key: str, countries: bool = False) -> dict[str, float]:
        value = self.get(key)
        if not isinstance(value, dict) or not value:
            raise self._fail(key, "expected a non-empty mapping of weights")
        out: dict[str, float] = {}
        for name, weight in value.items():
            name = str(name)
            if isinstance(weight, bool) or not isinstance(weight, int | float) or weight < 0:
                raise self._fail(f"{key}.{name}", f"expected a weight >= 0, got {weight!r}")
            if countries and not _COUNTRY.match(name):
                raise self._fail(f"{key}.{name}", "expected an ISO 3166-1 alpha-2 country code")
            out[name] = float(weight)
        if sum(out.values()) <= 0:
            raise self._fail(key, "weights must not all be zero")
        return out

    def weight_list(self, key: str) -> tuple[float, ...]:
        value = self.get(key)
        if (
            not isinstance(value, list)
            or not value
            or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
            or min(value) < 0
            or sum(value) <= 0
        ):
            raise self._fail(key, "expected a non-empty list of weights >= 0")
        return tuple(float(v) for v in value)


def _risk_lists(targeting_path: Path, quality_path: Path) -> RiskLists:
    """Collect the conditions of the targeting profiles' rules and quality.toml's lists."""
    from greenlane.streams.stages.targeting import named_lists, raw_rules

    try:
        rules = raw_rules(targeting_path)
        lists = named_lists(targeting_path)
    except (OSError, ConfigError) as exc:
        raise ConfigError(f"{targeting_path}: cannot read targeting rules: {exc}") from exc
    prefixes: list[str] = []
    keywords: list[str] = []
    origins: list[str] = []
    routes: list[str] = []
    undervaluation: list[float] = []
    for where, rule in rules:
        when = _Reader(rule, where).sub("when")
        if len(when.data) > 1:  # only conditions that fire on their own make goods/places risky
            continue
        if not rule.get("weight") and not rule.get("force"):  # referral only: not a risk
            continue
        if "goods" in when.data:
            goods = when.sub("goods")
            prefixes += goods.strings("hs_prefix", (), nonempty=False)
            keywords += [k.lower() for k in goods.strings("keywords", (), nonempty=False)]
        origins += when.strings("origin_in", (), nonempty=False)
        routes += when.strings("route_in", (), nonempty=False)
        listed = when.data.get("in_list") or {}
        if listed.get("field") == "origin":
            origins += sorted(lists.get(listed.get("list"), ()))
        elif listed.get("field") == "route":
            routes += sorted(lists.get(listed.get("list"), ()))
        if "value_per_kg_below" in when.data:
            undervaluation.append(when.number("value_per_kg_below", 0.0))
    missing = [
        name
        for name, found in (
            ("goods", prefixes or keywords),
            ("origin_in", origins),
            ("route_in", routes),
            ("value_per_kg_below", undervaluation),
        )
        if not found
    ]
    if missing:
        raise ConfigError(f"{targeting_path}.rules: no rule with {missing}; nothing to simulate")
    quality = _Reader(read_toml(quality_path), str(quality_path))
    rates = quality.weights("reference_rates")
    return RiskLists(
        goods_prefixes=tuple(dict.fromkeys(prefixes)),
        goods_keywords=tuple(dict.fromkeys(keywords)),
        high_risk_origins=tuple(dict.fromkeys(origins)),
        high_risk_routes=tuple(dict.fromkeys(routes)),
        undervaluation_below=max(undervaluation),
        vague_descriptions=tuple(t.lower() for t in quality.strings("vague_description_terms")),
        vague_party_names=quality.strings("vague_party_names"),
        min_description_letters=quality.integer("min_description_letters"),
        late_grace_ms=int(quality.number("late_filing_grace_minutes") * _MINUTE_MS),
        reference_rates={k: v for k, v in rates.items() if v > 0},
    )


def _goods(reader: _Reader, key: str, risk: RiskLists, restricted: bool) -> tuple[Goods, ...]:
    out = []
    for r in reader.records(key):
        hs = r.text("hs")
        if not re.fullmatch(r"\d{6}", hs):
            raise ConfigError(f"{r.where}.hs: expected 6 digits, got {hs!r}")
        goods = Goods(
            hs_code=hs,
            descriptions=r.strings("descriptions"),
            value_per_kg=r.number("value_per_kg", 0.01),
            unit_kg=r.span("unit_kg", 0.001),
            weight=r.number("weight", 0.0, default=1.0),
        )
        for text in goods.descriptions:
            if risk.vague(text):
                raise ConfigError(f"{r.where}.descriptions: {text!r} is vague per quality.toml")
            hit = risk.restricted(hs, text)
            if restricted and not hit:
                raise ConfigError(
                    f"{r.where}: {hs} {text!r} matches no goods rule of the targeting profiles"
                )
            if not restricted and hit:
                raise ConfigError(
                    f"{r.where}: {hs} {text!r} matches a goods rule of the targeting profiles; "
                    "move it to restricted_goods"
                )
        out.append(goods)
    return tuple(out)


def _country(code: str, r: _Reader, rates: dict[str, float], base: CountryProfile | None):
    currency = r.text("currency", base.currency if base else ...)
    if currency not in rates:
        raise ConfigError(f"{r.where}.currency: {currency!r} has no rate in quality.toml")

    def strings(key: str) -> tuple[str, ...]:
        return r.strings(key, getattr(base, key) if base else (), nonempty=False)

    cities = r.get("cities", [])
    if not isinstance(cities, list) or not all(
        isinstance(c, list) and len(c) == 2 and all(isinstance(x, str) for x in c) for c in cities
    ):
        raise ConfigError(f"{r.where}.cities: expected a list of [city, postcode]")
    address = r.text("address", base.address if base else ...)
    try:
        address.format(number=1, street="s", city="c", postcode="p")
    except (KeyError, IndexError) as exc:
        raise ConfigError(f"{r.where}.address: unknown placeholder {exc}") from exc
    return CountryProfile(
        code=code,
        currency=currency,
        region=r.text("region", code),
        state_code=r.get("state_code", None),
        address=address,
        cities=tuple((c[0], c[1]) for c in cities),
        streets=strings("streets"),
        company=strings("company"),
        company_words=strings("company_words"),
        company_trades=strings("company_trades"),
        first_names=strings("first_names"),
        last_names=strings("last_names"),
    )


def _carrier(r: _Reader) -> Carrier:
    origins = r.strings("origins")
    s10 = r.strings("s10", (), nonempty=False)
    if s10 and not all(re.fullmatch(r"[A-Z]{2}", s) for s in s10):
        raise ConfigError(f"{r.where}.s10: expected two-letter service indicators")
    if not s10 and "digits" not in r.data:
        raise ConfigError(f"{r.where}: needs s10 services or prefix and digits")
    consolidation = r.span("consolidation", 1)
    return Carrier(
        carrier_id=r.text("id"),
        kind=r.text("kind"),
        weight=r.number("weight", 0.0),
        origins=None if "*" in origins else frozenset(origins),
        s10_services=s10,
        s10_country=r.text("country", ""),
        prefix=r.text("prefix", ""),
        digits=r.integer("digits", 4, default=8),
        master_share=r.share("master_share"),
        consolidation=(int(consolidation[0]), int(consolidation[1])),
    )


def load_catalogue(
    path: Path = SIMULATION_FILE,
    targeting_path: Path = TARGETING_DIR,
    quality_path: Path = QUALITY_FILE,
) -> Catalogue:
    """Read and cross-check simulation.yaml against the rules it must exercise."""
    risk = _risk_lists(targeting_path, quality_path)
    if "USD" not in risk.reference_rates:
        raise ConfigError(f"{quality_path}.reference_rates: USD is needed by the simulator")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read simulation catalogue: {exc}") from exc
    top = _Reader(data, str(path))
    params = _params(top)
    signals = top.sub("risk").weights("signals")
    if set(signals) - set(RISK_SIGNALS):
        raise ConfigError(f"{path}.risk.signals: known signals are {list(RISK_SIGNALS)}")
    if not {s for s, w in signals.items() if w > 0} - params["never_alone"]:
        raise ConfigError(f"{path}.risk.never_alone: leaves no signal that may stand alone")
    fallback, countries = _profiles(top, risk)
    sellers = top.sub("sellers")
    seller_countries = sellers.weights("countries", countries=True)
    destinations = top.weights("destinations", countries=True)
    hubs = top.sub("route_hubs").weights("hubs", countries=True)
    for where, codes in (
        ("sellers.countries", seller_countries),
        ("destinations", destinations),
        ("route_hubs.hubs", hubs),
    ):
        risky = sorted(set(codes) & set(risk.high_risk_origins + risk.high_risk_routes))
        if risky:
            raise ConfigError(f"{path}.{where}: {risky} are high-risk in the targeting profiles")
    for codes, needs in (
        (seller_countries, ("cities", "streets", "company", "company_words", "company_trades")),
        (destinations, ("cities", "streets", "first_names", "last_names")),
    ):
        for code in codes:
            profile = countries.get(code)
            if profile is None or not all(getattr(profile, attr) for attr in needs):
                raise ConfigError(f"{path}.countries.{code}: needs {', '.join(needs)}")
    made_in_r = sellers.sub("made_in")
    carriers = tuple(_carrier(r) for r in top.records("carriers"))
    if not any(c.origins is None for c in carriers):
        raise ConfigError(f"{path}.carriers: one carrier must serve every origin ('*')")
    airline_prefixes = top.strings("airline_prefixes")
    if not all(re.fullmatch(r"\d{3}", p) for p in airline_prefixes):
        raise ConfigError(f"{path}.airline_prefixes: expected three-digit airline prefixes")
    capitals = top.get("capitals", {})
    if not isinstance(capitals, dict):
        raise ConfigError(f"{path}.capitals: expected a mapping")
    return Catalogue(
        source=str(path),
        params=params,
        goods=_goods(top, "goods", risk, restricted=False),
        restricted_goods=_goods(top, "restricted_goods", risk, restricted=True),
        countries=countries,
        fallback=fallback,
        capitals={str(k): str(v) for k, v in capitals.items()},
        carriers=carriers,
        platforms=tuple(_platform(r) for r in top.records("platforms")),
        vendor_collection=_vendor_collection(top.sub("vendor_collection"), countries),
        seller_countries=seller_countries,
        made_in={code: made_in_r.weights(code, countries=True) for code in made_in_r.data},
        destinations=destinations,
        transport_modes=_transport_modes(top.sub("transport_modes")),
        route_hubs=hubs,
        risk_signals=signals,
        airline_prefixes=airline_prefixes,
        risk=risk,
        fraud=_fraud(top.sub("fraud"), _goods_chapters(top)),
    )


def _goods_chapters(top: _Reader) -> set[str]:
    return {str(g["hs"])[:2] for g in top.get("goods", []) if isinstance(g, dict) and "hs" in g}


def _signal_factors(r: _Reader) -> dict[str, float]:
    factors = r.weights("signal_factors")
    if set(factors) - set(RISK_SIGNALS):
        raise ConfigError(f"{r.where}.signal_factors: known signals are {list(RISK_SIGNALS)}")
    return factors


def _fraud(r: _Reader, chapters: set[str], lists_dir: Path | None = None) -> FraudSettings:
    """simulation.yaml's fraud section, with the brands and names of the lists (targets of
    counterfeiters, and risky sellers the watchlist knows)."""
    from greenlane.streams.stages.watchlists import BRANDS_FILE, LISTS_DIR, PARTIES_FILE

    folder = lists_dir or LISTS_DIR
    mechanisms = r.weights("mechanisms")
    if set(mechanisms) - set(world.MECHANISMS):
        raise ConfigError(f"{r.where}.mechanisms: known mechanisms are {list(world.MECHANISMS)}")
    brands_data = read_yaml(folder / BRANDS_FILE, "IPR brands") or {}
    brands = tuple(
        Brand(str(e["brand"]), tuple(c for c in e.get("hs_chapters", ()) if c in chapters))
        for e in brands_data.get("entries", [])
        if not e.get("ambiguous") and set(e.get("hs_chapters", ())) & chapters
    )
    parties = read_yaml(folder / PARTIES_FILE, "watchlist") or {}
    names = tuple(
        (str(e["name"]), e.get("country"))
        for e in parties.get("entries", [])
        if e.get("name") and not e.get("address") and "seller" in e.get("roles", ["seller"])
    )
    low, high = (int(v) for v in r.span("split_parts", 2))
    gap = tuple(int(v) for v in r.span("split_gap_messages", 1))
    return FraudSettings(
        rate=r.share("rate"),
        hidden_share=r.share("hidden_share"),
        risky_seller_share=r.share("risky_seller_share"),
        risky_seller_factor=r.number("risky_seller_factor", 1.0),
        watchlisted_share=r.share("watchlisted_share"),
        risky_buyer_share=r.share("risky_buyer_share"),
        risky_buyer_factor=r.number("risky_buyer_factor", 1.0),
        signal_factors=_signal_factors(r),
        mechanisms=mechanisms,
        undervaluation_factor=r.span("undervaluation_factor", 0.01),
        misdeclared_value_factor=r.span("misdeclared_value_factor", 0.01),
        split_parts=(low, high),
        split_total_eur=r.span("split_total_eur", 1.0),
        split_gap_messages=(gap[0], gap[1]),
        prohibited_hs=r.strings("prohibited_hs"),
        disguised_share=r.share("disguised_share"),
        brands=brands,
        watchlist_names=names,
    )


def _params(top: _Reader) -> dict[str, Any]:
    """The numbers and proportions generation runs on."""
    clock, lead, cons = top.sub("clock"), top.sub("lead_times_hours"), top.sub("consignment")
    risk, invalid, sellers = top.sub("risk"), top.sub("invalid"), top.sub("sellers")
    params: dict[str, Any] = {
        "mean_gap_ms": clock.number("mean_gap_ms", 0.0),
        "interleave": (clock.integer("interleave_min", 0), clock.integer("interleave_max", 0)),
        "reverse_order_share": clock.share("reverse_order_share"),
        "safety_margin_ms": int(clock.number("safety_margin_minutes", 0.0) * _MINUTE_MS),
        "loading_lead_h": lead.span("pre_loading_to_loading", 0.1),
        "flight_h": lead.span("flight", 0.1),
        "surface_h": {m: lead.span(m, 0.1) for m in TRANSPORT_MODES if m != "AIR"},
        "item_lines": cons.weight_list("item_lines"),
        "quantity": cons.weight_list("quantity"),
        "value_noise": cons.span("value_noise", 0.01),
        "clean_value_margin": cons.number("clean_value_margin", 1.0),
        "low_value_cap_eur": cons.number("low_value_cap_eur", 1.0),
        "high_value_share": cons.share("high_value_share"),
        "packaging_kg": cons.span("packaging_kg"),
        "gross_weight_factor": cons.span("gross_weight_factor", 1.0),
        "two_pieces_share": cons.share("two_pieces_share"),
        "repeat_buyer_share": cons.share("repeat_buyer_share"),
        "repeat_buyer_memory": cons.integer("repeat_buyer_memory", 1),
        "pre_loading_hs_share": cons.share("pre_loading_hs_share"),
        "pre_loading_origin_share": cons.share("pre_loading_origin_share"),
        "listing_url_share": cons.share("listing_url_share"),
        "consignee_id_share": cons.share("consignee_id_share"),
        "currency_choice": top.weights("currency_choice"),
        "second_signal_share": risk.share("second_signal_share"),
        "never_alone": frozenset(risk.strings("never_alone", (), nonempty=False)),
        "undervaluation_factor": risk.span("undervaluation_factor", 0.0),
        "late_minutes": risk.span("late_minutes", 1.0),
        "late_pre_arrival_share": risk.share("late_pre_arrival_share"),
        "unknown_schema_id_base": invalid.integer("unknown_schema_id_base", 1),
        "corrupt_length": tuple(int(v) for v in invalid.span("corrupt_length", 2)),
        "seller_pool_size": sellers.integer("pool_size", 1),
        "world_seed": sellers.integer("world_seed", 0),
        "zipf_exponent": sellers.number("zipf_exponent", 0.0, 5.0),
        "goods_per_seller": tuple(int(v) for v in sellers.span("goods_per_seller", 1)),
        "account_id_share": sellers.share("account_id_share"),
        "direct_share": sellers.share("direct_share"),
        "route_hub_share": top.sub("route_hubs").share("share"),
    }
    if params["interleave"][0] > params["interleave"][1]:
        raise ConfigError(f"{clock.where}: interleave_min must not exceed interleave_max")
    if params["undervaluation_factor"][1] >= 1.0:
        raise ConfigError(f"{risk.where}.undervaluation_factor: must stay below 1")
    currency_keys = {"destination", "usd", "seller"}
    if set(params["currency_choice"]) - currency_keys:
        raise ConfigError(
            f"{top.where}.currency_choice: keys must be among {sorted(currency_keys)}"
        )
    return params


def _profiles(top: _Reader, risk: RiskLists) -> tuple[CountryProfile, dict[str, CountryProfile]]:
    """The fallback profile and every listed country's, checked for names that identify nobody."""
    rates = risk.reference_rates
    fallback = _country("fallback", top.sub("fallback"), rates, None)
    if not all(
        (fallback.streets, fallback.company, fallback.company_words, fallback.company_trades)
    ):
        raise ConfigError(
            f"{top.where}.fallback: needs streets, company, company_words and company_trades"
        )
    table = top.sub("countries")
    countries: dict[str, CountryProfile] = {}
    for code in table.data:
        if not _COUNTRY.match(str(code)):
            raise ConfigError(f"{table.where}.{code}: expected an ISO 3166-1 alpha-2 code")
        countries[code] = _country(code, table.sub(code), rates, fallback)
    vague = {n.lower() for n in risk.vague_party_names}
    for profile in (fallback, *countries.values()):
        for attr in ("first_names", "last_names", "company_words"):
            for name in getattr(profile, attr):
                if name.lower() in vague:
                    raise ConfigError(f"{top.where}: {profile.code}.{attr} {name!r} is vague")
    return fallback, countries


def _platform(r: _Reader) -> Platform:
    open_to = r.strings("sellers")
    return Platform(
        name=r.text("name"),
        weight=r.number("weight"),
        account=r.text("account"),
        seller_countries=None if "*" in open_to else frozenset(open_to),
        url=r.text("url"),
    )


def _vendor_collection(
    table: _Reader, countries: dict[str, CountryProfile]
) -> dict[str, VendorCollection]:
    out = {}
    for region in table.data:
        r = table.sub(region)
        out[region] = VendorCollection(
            share=r.share("share"),
            max_value_eur=r.number("max_value_eur"),
            prefix=r.text("prefix"),
            state_code=bool(r.get("state_code", False)),
            digits=r.integer("digits", 1),
        )
        if out[region].state_code and not any(
            p.region == region and p.state_code for p in countries.values()
        ):
            raise ConfigError(f"{r.where}.state_code: no country of region {region} has one")
    return out


def _transport_modes(table: _Reader) -> dict[tuple[str, str], dict[str, float]]:
    """(origin, destination region) -> mode shares; ("*", "*") is the default."""
    out = {("*", "*"): _mode_shares(table, "default")}
    for r in table.records("overrides", required=False):
        shares = _mode_shares(r, "shares")
        for origin in r.strings("origins"):
            for region in r.strings("regions"):
                out[(origin, region)] = shares
    return out


def _mode_shares(r: _Reader, key: str) -> dict[str, float]:
    shares = r.weights(key)
    if set(shares) - set(TRANSPORT_MODES):
        raise ConfigError(f"{r.where}.{key}: modes must be among {list(TRANSPORT_MODES)}")
    return shares


@cache
def default_catalogue() -> Catalogue:
    """The catalogue of the shipped settings files, loaded once."""
    return load_catalogue()


# --------------------------------------------------------------------------------------------
# Generation
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SimulatedFiling:
    """One message as a carrier would send it.

    ``kind`` is consignment-level for valid messages: both filings of a risky consignment are
    "risky", even when the signal (e.g. a high-risk transit) shows only in one of them.
    """

    role: str  # "pre_loading" | "pre_arrival"
    key: bytes  # house waybill, UTF-8
    value: dict[str, Any] | None  # Avro record; timestamps as epoch milliseconds
    raw: bytes | None  # set instead of value for deliberately broken bytes
    kind: str  # one of KINDS
    signals: tuple[str, ...] = ()  # risk signals of a risky consignment
    truth: Truth | None = None  # what the consignment really is (None: invalid message)


class _Rng(random.Random):
    """random.Random with cheaper draws: rejection-free scaling of random() is plenty here."""

    def choice(self, seq):  # type: ignore[override]
        return seq[int(self.random() * len(seq))]

    def randint(self, a: int, b: int) -> int:  # type: ignore[override]
        return a + int(self.random() * (b - a + 1))

    def randrange(self, start: int, stop: int | None = None, step: int = 1) -> int:  # type: ignore[override]
        if stop is None:
            start, stop = 0, start
        return start + int(self.random() * (stop - start))


class _Choice:
    """Weighted choice over a fixed population, O(log n) per draw."""

    __slots__ = ("cum", "items", "total")

    def __init__(self, items: Sequence[Any], weights: Iterable[float]):
        self.items = list(items)
        self.cum = list(accumulate(weights))
        self.total = self.cum[-1]

    def __call__(self, rng: random.Random) -> Any:
        return self.items[bisect(self.cum, rng.random() * self.total)]


@dataclass(slots=True)
class _Seller:
    party: dict[str, Any]
    country: str
    platform: Platform | None
    goods: _Choice
    made_in: _Choice | None
    risky: bool = False  # cheats often (ground truth)


@dataclass(slots=True)
class _Consignment:
    kind: str
    signals: tuple[str, ...]
    carrier: Carrier
    house_waybill: str
    master_waybill: str | None
    seller: dict[str, Any]
    consignee: dict[str, Any]
    platform: str | None
    items: list[dict[str, Any]]
    vendor_collection_id: str | None
    destination: str
    mode: str
    route: list[str]
    loading_deadline: int  # planned loading (AIR), epoch ms
    arrival_deadline: int  # expected arrival, epoch ms
    late_pre_loading: bool = False
    late_pre_arrival: bool = False
    pieces: int = 1
    gross_weight_kg: float = 0.0
    cargo_description: str = ""
    pre_loading_hs: bool = True
    pre_loading_origin: bool = True
    broken: str | None = None  # "blank_waybill" | "no_items" for unusable records
    seller_risky: bool = False
    true_value_eur: float = 0.0
    truth: Truth | None = None


@dataclass(slots=True)
class _Traffic:
    """The state of one seeded run of generation."""

    cat: Catalogue
    rng: random.Random
    risky_share: float
    invalid_share: float
    clock: int
    run_tag: str = ""
    sellers: list[_Seller] = field(default_factory=list)
    seller_pick: _Choice | None = None
    buyers: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    waybill_serials: dict[str, int] = field(default_factory=dict)
    masters: dict[tuple[str, str], list[Any]] = field(default_factory=dict)
    vendor_ids: dict[tuple[str, str], str] = field(default_factory=dict)
    unknown_ids: int = 0
    choices: dict[str, Any] = field(default_factory=dict)
    # the world's fraud: its own random stream, so that it leaves the traffic as it was
    frng: random.Random = field(default_factory=random.Random)
    fraud_base: float = 0.0
    risky_buyers: dict[tuple[str, str], bool] = field(default_factory=dict)
    later: list[tuple[int, int, _Consignment]] = field(default_factory=list)  # split parcels


def generate(
    count: int,
    seed: int = 7,
    risky_share: float = 0.05,
    invalid_share: float = 0.01,
    start_ms: int | None = None,
    catalogue: Catalogue | None = None,
    mean_gap_ms: float | None = None,
    fraud_rate: float | None = None,
) -> Iterator[SimulatedFiling]:
    """Yield ``count`` filings (messages, not consignments) of synthetic carrier traffic.

    ``risky_share`` is the share of consignments carrying risk signals, ``invalid_share`` the
    share of messages that must be dead-lettered. Event times start at ``start_ms`` (default:
    now) and advance by a few ms per message (``mean_gap_ms``, default simulation.yaml's; the
    synthetic history spreads a year this way). Every valid filing carries its consignment's
    ``truth`` (the world's fraud, ``fraud.py``; ``fraud_rate`` overrides simulation.yaml's).
    The same arguments (including ``start_ms``) always yield the same sequence; house waybills
    depend on the seed only, so use another seed for traffic that must not link to an earlier
    run's consignments. Sellers are the world's (``sellers.world_seed``), whatever the seed.
    """
    if count < 0:
        raise ValueError("count must be >= 0")
    for name, share in (("risky_share", risky_share), ("invalid_share", invalid_share)):
        if not 0.0 <= share <= 1.0:
            raise ValueError(f"{name} must be within [0, 1], got {share}")
    cat = catalogue or default_catalogue()
    if fraud_rate is not None:
        if not 0.0 <= fraud_rate <= 1.0:
            raise ValueError(f"fraud_rate must be within [0, 1], got {fraud_rate}")
        cat = replace(cat, fraud=replace(cat.fraud, rate=fraud_rate))
    traffic = _Traffic(
        cat=cat,
        rng=_Rng(seed),
        risky_share=risky_share,
        invalid_share=invalid_share,
        clock=int(time.time() * 1000) if start_ms is None else int(start_ms),
        frng=_Rng(seed * 7919 + 17),
    )
    _prepare(traffic)
    _prepare_world(traffic)
    if mean_gap_ms is not None:
        traffic.choices["gap_ms"] = float(mean_gap_ms)
    return _run(traffic, count)


def _prepare_world(t: _Traffic) -> None:
    """Who cheats: risky sellers (some under a watchlisted name), and the base propensity."""
    f, frng = t.cat.fraud, _Rng(t.cat.params["world_seed"] + 1)
    names = list(f.watchlist_names)
    weights = t.seller_pick.cum if t.seller_pick else []
    risky_weight, last = 0.0, 0.0
    for seller, cum in zip(t.sellers, weights, strict=True):
        share, last = cum - last, cum
        seller.risky = frng.random() < f.risky_seller_share
        if not seller.risky:
            continue
        risky_weight += share
        fits = [n for n, country in names if country in (None, seller.country)]
        if fits and frng.random() < f.watchlisted_share:
            seller.party = {**seller.party, "name": frng.choice(fits)}
    total = weights[-1] if weights else 1.0
    t.fraud_base = world.base_rate(f, risky_weight / total, t.risky_share, t.cat.risk_signals)
    cat = t.cat
    prohibited = [g for g in cat.restricted_goods if g.hs_code.startswith(f.prohibited_hs)]
    t.choices["fraud"] = {
        # misdeclared HS: dear or restricted (not prohibited) goods, under cheap goods' codes
        "dear": [g for g in cat.goods if g.value_per_kg >= 150]
        + [g for g in cat.restricted_goods if g not in prohibited],
        "cheap": [g for g in cat.goods if g.value_per_kg <= 30],
        "prohibited": prohibited,
        "brands": {},  # HS chapter -> brands protected on it, filled as chapters come up
    }


def _prepare(t: _Traffic) -> None:
    """Draw the run's fixed population: sellers, and the weighted choices used per message."""
    cat, rng, p = t.cat, t.rng, t.cat.params
    t.run_tag = f"{rng.getrandbits(32):08X}"
    t.choices = {
        "seller_country": _Choice(list(cat.seller_countries), cat.seller_countries.values()),
        "destination": _Choice(list(cat.destinations), cat.destinations.values()),
        "hub": _Choice(list(cat.route_hubs), cat.route_hubs.values()),
        "lines": _Choice(range(1, len(p["item_lines"]) + 1), p["item_lines"]),
        "quantity": _Choice(range(1, len(p["quantity"]) + 1), p["quantity"]),
        "currency": _Choice(list(p["currency_choice"]), p["currency_choice"].values()),
        "signal": _Choice(list(cat.risk_signals), cat.risk_signals.values()),
        "restricted": _Choice(cat.restricted_goods, (g.weight for g in cat.restricted_goods)),
        "any_carrier": _Choice(
            [c for c in cat.carriers if c.origins is None],
            [c.weight for c in cat.carriers if c.origins is None],
        ),
        # Vague terms a carrier would plausibly write alone ("gift", not "x").
        "vague_terms": [
            term
            for term in cat.risk.vague_descriptions
            if sum(ch.isalpha() for ch in term) >= cat.risk.min_description_letters
        ]
        or list(cat.risk.vague_descriptions),
        "modes": {k: _Choice(list(v), v.values()) for k, v in cat.transport_modes.items()},
        "made_in": {k: _Choice(list(v), v.values()) for k, v in cat.made_in.items()},
        "carriers": {},
        "platforms": {},
    }
    goods_weights = [g.weight for g in cat.goods]
    low, high = p["goods_per_seller"]
    # The sellers are the world's, whatever the traffic's seed: the synthetic history and every
    # simulator run meet the same traders (and the same risky ones).
    traffic_rng, t.rng = t.rng, _Rng(p["world_seed"])
    rng = t.rng
    for _ in range(p["seller_pool_size"]):
        country = t.choices["seller_country"](rng)
        platform = None if rng.random() < p["direct_share"] else _platform_for(t, country)
        wanted = rng.randint(low, high)
        picked = list(dict.fromkeys(rng.choices(cat.goods, goods_weights, k=wanted)))
        party = _company(t, country)
        if rng.random() < p["account_id_share"]:
            prefix = platform.account if platform else country
            party["party_id"] = f"{prefix}{rng.randrange(10**9, 10**10)}"
        t.sellers.append(
            _Seller(
                party=party,
                country=country,
                platform=platform,
                goods=_Choice(picked, (g.weight for g in picked)),
                made_in=t.choices["made_in"].get(country),
            )
        )
    t.rng = traffic_rng
    exponent = p["zipf_exponent"]
    t.seller_pick = _Choice(
        t.sellers, (1.0 / (rank + 1) ** exponent for rank in range(len(t.sellers)))
    )


def _platform_for(t: _Traffic, country: str) -> Platform | None:
    cache_ = t.choices["platforms"]
    if country not in cache_:
        open_ = [
            p
            for p in t.cat.platforms
            if p.seller_countries is None or country in p.seller_countries
        ]
        cache_[country] = _Choice(open_, (p.weight for p in open_)) if open_ else None
    choice = cache_[country]
    return choice(t.rng) if choice else None


def _carrier_for(t: _Traffic, country: str) -> Carrier:
    cache_ = t.choices["carriers"]
    if country not in cache_:
        serving = [c for c in t.cat.carriers if c.origins is None or country in c.origins]
        cache_[country] = _Choice(serving, (c.weight for c in serving))
    return cache_[country](t.rng)


def _address(t: _Traffic, country: str) -> tuple[str, str]:
    """(city, one-line address) in the country's format."""
    rng, profile = t.rng, t.cat.profile(country)
    if profile.cities:
        city, postcode = rng.choice(profile.cities)
    else:
        city, postcode = t.cat.capitals.get(country, country), f"{rng.randrange(10000, 99999)}"
    return city, profile.address.format(
        number=rng.randint(1, 299), street=rng.choice(profile.streets), city=city, postcode=postcode
    )


def _company(t: _Traffic, country: str) -> dict[str, Any]:
    rng, profile = t.rng, t.cat.profile(country)
    if not profile.company:
        profile = t.cat.fallback
    city, address = _address(t, country)
    name = rng.choice(profile.company).format(
        city=city,
        word=rng.choice(profile.company_words),
        trade=rng.choice(profile.company_trades),
    )
    return {
        "name": " ".join(name.split()),
        "address": address,
        "country": country,
        "party_id": None,
    }


def _buyer(t: _Traffic) -> tuple[str, dict[str, Any]]:
    """A consignee: sometimes one seen before (same name and address), else a new person."""
    rng, p = t.rng, t.cat.params
    if t.buyers and rng.random() < p["repeat_buyer_share"]:
        return rng.choice(t.buyers)
    destination = t.choices["destination"](rng)
    profile = t.cat.countries[destination]
    party_id = None
    if rng.random() < p["consignee_id_share"]:
        party_id = f"{destination}{rng.randrange(10**11, 10**12)}"
    buyer = (
        destination,
        {
            "name": f"{rng.choice(profile.first_names)} {rng.choice(profile.last_names)}",
            "address": _address(t, destination)[1],
            "country": destination,
            "party_id": party_id,
        },
    )
    if len(t.buyers) < p["repeat_buyer_memory"]:
        t.buyers.append(buyer)
    else:
        t.buyers[rng.randrange(len(t.buyers))] = buyer
    return buyer


def _house_waybill(t: _Traffic, carrier: Carrier) -> str:
    """Carriers number consignments in sequence: unique within a run."""
    rng = t.rng
    serial = t.waybill_serials.get(carrier.carrier_id)
    width = 8 if carrier.s10_services else carrier.digits
    if serial is None:
        serial = rng.randrange(10 ** (width - 1), 10**width // 2)
    serial += rng.randint(1, 7)
    t.waybill_serials[carrier.carrier_id] = serial
    if carrier.s10_services:
        digits = f"{serial % 10**8:08d}"
        check = 11 - sum(int(d) * w for d, w in zip(digits, _S10_WEIGHTS, strict=True)) % 11
        check = 0 if check == 10 else 5 if check == 11 else check
        return f"{rng.choice(carrier.s10_services)}{digits}{check}{carrier.s10_country}"
    return f"{carrier.prefix}{serial % 10**width:0{width}d}"


def _master_waybill(t: _Traffic, carrier: Carrier, destination: str) -> str | None:
    """Consolidations: many house waybills under one master air waybill, then the next."""
    rng = t.rng
    if rng.random() >= carrier.master_share:
        return None
    key = (carrier.carrier_id, destination)
    current = t.masters.get(key)
    if current is None or current[1] <= 0:
        serial = rng.randrange(10**6, 10**7)
        mawb = f"{rng.choice(t.cat.airline_prefixes)}-{serial}{serial % 7}"
        current = [mawb, rng.randint(*carrier.consolidation)]
        t.masters[key] = current
    current[1] -= 1
    return current[0]


@cache
def _registrations(region: str) -> tuple[str, ...]:
    """Registration numbers the destination's revenue settings know (revenue/*.yaml)."""
    from greenlane.streams.stages.revenue import load_revenue_settings

    adm = load_revenue_settings().administrations.get(region)
    scheme = adm.vendor_scheme if adm is not None else None
    return tuple(sorted(scheme.registrations)) if scheme is not None else ()


def _vendor_collection_id(
    t: _Traffic, owner: str, destination: str, value_eur: float
) -> str | None:
    region = t.cat.countries[destination].region
    scheme = t.cat.vendor_collection.get(region)
    rng = t.rng
    if scheme is None or value_eur > scheme.max_value_eur or rng.random() >= scheme.share:
        return None
    key = (owner, region)
    registered = _registrations(region)
    if key not in t.vendor_ids and registered:
        # a real carrier files the seller's or platform's actual registration number
        t.vendor_ids[key] = rng.choice(registered)
    if key not in t.vendor_ids:
        state = ""
        if scheme.state_code:
            codes = sorted(
                p.state_code
                for p in t.cat.countries.values()
                if p.region == region and p.state_code
            )
            state = rng.choice(codes)
        digits = rng.randrange(10 ** (scheme.digits - 1), 10**scheme.digits)
        t.vendor_ids[key] = f"{scheme.prefix}{state}{digits}"
    return t.vendor_ids[key]


def _currency(t: _Traffic, seller_country: str, destination: str) -> str:
    how = t.choices["currency"](t.rng)
    if how == "usd":
        return "USD"
    country = destination if how == "destination" else seller_country
    return t.cat.profile(country).currency


def _lines(t: _Traffic, seller: _Seller, origin: str, currency: str, floor_vpk: float):
    """Item lines drawn from the seller's range; returns (lines, total value in EUR)."""
    rng, p = t.rng, t.cat.params
    rate = t.cat.risk.reference_rates[currency]
    noise_low, noise_high = p["value_noise"]
    cap = p["low_value_cap_eur"]
    high_value_ok = rng.random() < p["high_value_share"]
    lines: list[dict[str, Any]] = []
    total = 0.0
    n_lines = t.choices["lines"](rng)
    for attempt in range(3):
        lines, total = [], 0.0
        for _ in range(n_lines if attempt == 0 else 1):
            goods = seller.goods(rng)
            quantity = t.choices["quantity"](rng) if attempt == 0 else 1
            unit_kg = rng.uniform(*goods.unit_kg)
            net = max(round(unit_kg * quantity, 3), 0.001)
            vpk = max(goods.value_per_kg * rng.uniform(noise_low, noise_high), floor_vpk)
            value_eur = vpk * net
            total += value_eur
            lines.append(_line(t, goods, quantity, net, value_eur / rate, currency, origin, seller))
        if total <= cap or high_value_ok:
            break
    return lines, total


def _line(t, goods: Goods, quantity, net, value, currency, origin, seller) -> dict[str, Any]:
    rng = t.rng
    url = None
    if seller.platform and rng.random() < t.cat.params["listing_url_share"]:
        url = seller.platform.url.format(n=rng.randrange(10**9, 10**10))
    return {
        "description": rng.choice(goods.descriptions),
        "hs_code": goods.hs_code,
        "quantity": quantity,
        "net_weight_kg": net,
        "value": max(round(value, 2), 0.01),
        "currency": currency,
        "origin_country": origin,
        "listing_url": url,
    }


def _signals(t: _Traffic) -> tuple[str, ...]:
    """One signal, sometimes two; signals no targeting rule scores alone get a companion."""
    rng, p = t.rng, t.cat.params
    chosen = {t.choices["signal"](rng)}
    want = 2 if rng.random() < p["second_signal_share"] or chosen <= p["never_alone"] else 1
    for _ in range(20):
        if len(chosen) >= want:
            break
        chosen.add(t.choices["signal"](rng))
    return tuple(s for s in RISK_SIGNALS if s in chosen)


def _consignment(t: _Traffic, risky: bool) -> _Consignment:
    """One consignment, with its risk signals applied when risky."""
    cat, rng, p, risk = t.cat, t.rng, t.cat.params, t.cat.risk
    signals = _signals(t) if risky else ()
    if "high_risk_origin" in signals:
        country = rng.choice(risk.high_risk_origins)
        # A seller nobody has seen, offering the range of some known seller.
        like = t.seller_pick(rng).goods
        seller = _Seller(_company(t, country), country, None, like, None)
        carrier = t.choices["any_carrier"](rng)
    else:
        seller = t.seller_pick(rng)
        carrier = _carrier_for(t, seller.country)
    destination, consignee = _buyer(t)
    consignee = dict(consignee)
    origin = seller.made_in(rng) if seller.made_in else seller.country
    region = cat.countries[destination].region
    modes = t.choices["modes"]
    mode_choice = modes.get((seller.country, region)) or modes[("*", "*")]
    mode = "AIR" if "high_risk_route" in signals else mode_choice(rng)
    currency = _currency(t, seller.country, destination)
    margin = risk.undervaluation_below * p["clean_value_margin"]
    items, total_eur = _lines(t, seller, origin, currency, margin)

    if "restricted_goods" in signals:
        goods = t.choices["restricted"](rng)
        unit_kg = rng.uniform(*goods.unit_kg)
        net = max(round(unit_kg, 3), 0.001)
        value_eur = max(goods.value_per_kg * rng.uniform(*p["value_noise"]), margin) * net
        rate = risk.reference_rates[currency]
        items[0] = _line(t, goods, 1, net, value_eur / rate, currency, origin, seller)
    if "undervaluation" in signals:
        rate = risk.reference_rates[currency]
        for line in items:
            vpk = risk.undervaluation_below * rng.uniform(*p["undervaluation_factor"])
            line["value"] = max(round(vpk * line["net_weight_kg"] / rate, 2), 0.01)
    if "vague_description" in signals:
        term = rng.choice(t.choices["vague_terms"])
        for line in items:
            line["description"] = term.capitalize()
    seller_party = dict(seller.party)
    if "vague_party" in signals:
        target = seller_party if rng.random() < 0.5 else consignee
        target["name"] = rng.choice(risk.vague_party_names)

    route = [seller.country, destination]
    if "high_risk_route" in signals:
        route.insert(1, rng.choice(risk.high_risk_routes))
    elif rng.random() < p["route_hub_share"]:
        hub = t.choices["hub"](rng)
        if hub not in route:
            route.insert(1, hub)

    now = t.clock
    late_pre_loading = late_pre_arrival = False
    if "late_filing" in signals:
        late_ms = int(rng.uniform(*p["late_minutes"]) * _MINUTE_MS) + risk.late_grace_ms
        if mode == "AIR":
            late_pre_loading = True
            late_pre_arrival = rng.random() < p["late_pre_arrival_share"]
        else:
            late_pre_arrival = True
    if mode == "AIR":
        flight = int(rng.uniform(*p["flight_h"]) * _HOUR_MS)
        if late_pre_arrival:
            arrival = now - late_ms
            loading = arrival - flight
        elif late_pre_loading:
            loading = now - late_ms
            arrival = max(loading + flight, now + 30 * _MINUTE_MS)
        else:
            loading = now + int(rng.uniform(*p["loading_lead_h"]) * _HOUR_MS)
            arrival = loading + flight
    else:
        loading = now
        arrival = (
            (now - late_ms)
            if late_pre_arrival
            else (now + int(rng.uniform(*p["surface_h"][mode]) * _HOUR_MS))
        )

    owner = seller.platform.name if seller.platform else seller_party["name"]
    total_net = sum(line["net_weight_kg"] for line in items)
    pieces = 2 if rng.random() < p["two_pieces_share"] else 1
    gross = total_net * rng.uniform(*p["gross_weight_factor"]) + rng.uniform(*p["packaging_kg"])
    descriptions = list(dict.fromkeys(line["description"] for line in items))
    return _Consignment(
        kind="risky" if risky else "clean",
        signals=signals,
        seller_risky=seller.risky,
        true_value_eur=total_eur,
        carrier=carrier,
        house_waybill=_house_waybill(t, carrier),
        master_waybill=_master_waybill(t, carrier, destination) if mode == "AIR" else None,
        seller=seller_party,
        consignee=consignee,
        platform=seller.platform.name if seller.platform else None,
        items=items,
        vendor_collection_id=_vendor_collection_id(t, owner, destination, total_eur),
        destination=destination,
        mode=mode,
        route=route,
        loading_deadline=loading,
        arrival_deadline=arrival,
        late_pre_loading=late_pre_loading,
        late_pre_arrival=late_pre_arrival,
        pieces=pieces,
        gross_weight_kg=round(gross, 3),
        cargo_description=", ".join(descriptions),
        pre_loading_hs=rng.random() < p["pre_loading_hs_share"],
        pre_loading_origin=rng.random() < p["pre_loading_origin_share"],
    )


# --------------------------------------------------------------------------------------------
# The world's fraud (ground truth)
# --------------------------------------------------------------------------------------------


def _value_eur(t: _Traffic, c: _Consignment) -> float:
    rates = t.cat.risk.reference_rates
    return sum(line["value"] * rates[line["currency"]] for line in c.items)


def _risky_buyer(t: _Traffic, consignee: dict[str, Any]) -> bool:
    key = (consignee["name"], consignee["address"])
    known = t.risky_buyers.get(key)
    if known is None:
        known = t.risky_buyers[key] = t.frng.random() < t.cat.fraud.risky_buyer_share
    return known


def _add_signal(c: _Consignment, signal: str) -> None:
    """A mechanism whose trace is a targeting signal makes the consignment a risky one."""
    c.kind = "risky"
    c.signals = tuple(x for x in RISK_SIGNALS if x in {*c.signals, signal})


def _set_value(t: _Traffic, line: dict[str, Any], value_eur: float) -> None:
    """A line's declared value, kept above the rules' undervaluation bound (subtle fraud)."""
    risk, p = t.cat.risk, t.cat.params
    floor = risk.undervaluation_below * p["clean_value_margin"] * line["net_weight_kg"]
    rate = risk.reference_rates[line["currency"]]
    line["value"] = max(round(max(value_eur, floor) / rate, 2), 0.01)


def _mechanism(t: _Traffic, c: _Consignment) -> str:
    f, frng = t.cat.fraud, t.frng
    if "undervaluation" in c.signals:
        return "undervaluation"  # already declared far below any plausible price
    if "restricted_goods" in c.signals and c.items[0]["hs_code"].startswith(f.prohibited_hs):
        return "prohibited"
    # a split's parcels copy its parties and goods, not its signals: only unsignalled ones split
    weights = {k: w for k, w in f.mechanisms.items() if not (c.signals and k == "split_shipment")}
    return _Choice(list(weights), weights.values())(frng)


def _apply_fraud(t: _Traffic, c: _Consignment, seq: int) -> None:
    """Decide the consignment's truth and change its data the way its mechanism would.

    Traced fraud follows who and what (risky sellers and buyers, targeting signals); hidden
    fraud strikes any consignment alike and changes nothing in its data: neither the filing
    nor its parties say anything about it, so no model can rank it above honest traffic.
    """
    f, frng = t.cat.fraud, t.frng
    declared = _value_eur(t, c)
    p = world.propensity(f, t.fraud_base, c.seller_risky, _risky_buyer(t, c.consignee), c.signals)
    if frng.random() < p:
        mechanism = _mechanism(t, c)
        if not _MECHANISMS[mechanism](t, c):
            mechanism = "undervaluation"  # e.g. no brand protected on these goods
            _undervalue(t, c)
        true_value = c.true_value_eur or declared
        if mechanism not in ("misdeclared_hs", "split_shipment"):
            true_value = max(true_value, declared)
        declared = _value_eur(t, c)
        c.truth = Truth(mechanism, False, max(true_value, declared), declared)
        if mechanism == "split_shipment":
            _schedule_parts(t, c, seq)
    elif frng.random() < f.rate * f.hidden_share:
        # the goods inside are not the ones declared, at a plausible price
        hidden = {k: w for k, w in f.mechanisms.items() if k != "split_shipment"}
        mechanism = _Choice(list(hidden), hidden.values())(frng)
        c.truth = Truth(mechanism, True, declared * frng.uniform(1.5, 4.0), declared)
    else:
        c.truth = Truth(None, False, declared, declared)


def _undervalue(t: _Traffic, c: _Consignment) -> bool:
    if "undervaluation" in c.signals:
        return True
    low, high = t.cat.fraud.undervaluation_factor
    rates = t.cat.risk.reference_rates
    for line in c.items:
        _set_value(t, line, line["value"] * rates[line["currency"]] * t.frng.uniform(low, high))
    return True


def _misdeclare(t: _Traffic, c: _Consignment) -> bool:
    """Dearer or restricted goods declared under the HS code and words of cheap ones."""
    frng, cat = t.frng, t.cat
    dear, cheap = t.choices["fraud"]["dear"], t.choices["fraud"]["cheap"]
    if not dear or not cheap:
        return False
    real, cover = frng.choice(dear), frng.choice(cheap)
    line = c.items[0]
    others = _value_eur(t, c) - line["value"] * cat.risk.reference_rates[line["currency"]]
    net = max(round(frng.uniform(*real.unit_kg) * line["quantity"], 3), 0.001)
    true_eur = real.value_per_kg * frng.uniform(*cat.params["value_noise"]) * net
    line.update(hs_code=cover.hs_code, description=frng.choice(cover.descriptions))
    line["net_weight_kg"] = net
    _set_value(t, line, true_eur * frng.uniform(*cat.fraud.misdeclared_value_factor))
    c.true_value_eur = others + true_eur
    return True


def _counterfeit(t: _Traffic, c: _Consignment) -> bool:
    """A brand name on goods of its chapters, at the generic goods' price (which no genuine
    article of the brand has)."""
    frng, by_chapter = t.frng, t.choices["fraud"]["brands"]
    for line in c.items:
        chapter = line["hs_code"][:2]
        brands = by_chapter.get(chapter)
        if brands is None:
            brands = by_chapter[chapter] = [b for b in t.cat.fraud.brands if chapter in b.chapters]
        if brands:
            brand = frng.choice(brands)
            line["description"] = f"{brand.name} {line['description']}"
            c.cargo_description = ", ".join(dict.fromkeys(x["description"] for x in c.items))
            return True
    return False


def _prohibit(t: _Traffic, c: _Consignment) -> bool:
    """Prohibited goods in the parcel, often under a vague description."""
    frng, cat = t.frng, t.cat
    if not c.items[0]["hs_code"].startswith(cat.fraud.prohibited_hs):
        goods = t.choices["fraud"]["prohibited"]
        if not goods:
            return False
        g = frng.choice(goods)
        line = c.items[0]
        net = max(round(frng.uniform(*g.unit_kg), 3), 0.001)
        value = g.value_per_kg * frng.uniform(*cat.params["value_noise"]) * net
        line.update(hs_code=g.hs_code, description=frng.choice(g.descriptions), quantity=1)
        line["net_weight_kg"] = net
        _set_value(t, line, value)
        _add_signal(c, "restricted_goods")
    if frng.random() < cat.fraud.disguised_share:
        term = frng.choice(t.choices["vague_terms"])
        c.items[0]["description"] = term.capitalize()
        _add_signal(c, "vague_description")
    c.cargo_description = ", ".join(dict.fromkeys(x["description"] for x in c.items))
    return True


def _split(t: _Traffic, c: _Consignment) -> bool:
    """One purchase over the low-value threshold, sent as several parcels each under it."""
    f, frng = t.cat.fraud, t.frng
    k = frng.randint(*f.split_parts)
    total = frng.uniform(*f.split_total_eur)
    c.true_value_eur = total
    c.pieces = k  # parts still to send, this one included
    share = min(total / k, t.cat.params["low_value_cap_eur"] * 0.97)
    scale = share / max(_value_eur(t, c), 0.01)
    rates = t.cat.risk.reference_rates
    for line in c.items:
        _set_value(t, line, line["value"] * rates[line["currency"]] * scale)
    return True


_MECHANISMS: dict[str, Callable[[_Traffic, _Consignment], bool]] = {
    "undervaluation": _undervalue,
    "misdeclared_hs": _misdeclare,
    "counterfeit": _counterfeit,
    "split_shipment": _split,
    "prohibited": _prohibit,
}


def _schedule_parts(t: _Traffic, c: _Consignment, seq: int) -> None:
    """The other parcels of a split follow a few hundred messages apart: same seller, same
    buyer, same goods, new waybills."""
    parts, c.pieces = c.pieces, 1
    assert c.truth is not None
    truth = Truth(
        "split_shipment",
        False,
        c.truth.true_value_eur,
        c.truth.declared_value_eur,
        c.house_waybill,
    )
    c.truth = truth
    due = seq
    for i in range(1, parts):
        due += t.frng.randint(*t.cat.fraud.split_gap_messages)
        heapq.heappush(t.later, (due, seq * 8 + i, c))


def _next_part(t: _Traffic, template: _Consignment) -> _Consignment:
    """A fresh consignment (times, carrier, waybill) carrying the template's parties and goods."""
    c = _consignment(t, risky=False)
    c.seller, c.consignee, c.platform = (
        dict(template.seller),
        dict(template.consignee),
        (template.platform),
    )
    c.destination = template.destination
    c.items = [dict(line) for line in template.items]
    c.route = [template.route[0], template.destination]
    c.vendor_collection_id = None
    c.cargo_description = template.cargo_description
    c.truth = template.truth
    return c


def _filing_time(t: _Traffic, deadline: int, late: bool) -> int:
    """Event time of a filing: now, kept on the right side of its deadline."""
    margin = t.cat.params["safety_margin_ms"]
    if late:
        return max(t.clock, deadline + t.cat.risk.late_grace_ms + _MINUTE_MS)
    return min(t.clock, deadline - margin)


def _record(t: _Traffic, c: _Consignment, role: str, seq: int) -> dict[str, Any]:
    """The Avro record of one filing of a consignment, filed now."""
    house_waybill = "  " if c.broken == "blank_waybill" else c.house_waybill
    stage = "PL" if role == "pre_loading" else "PA"
    message_id = f"{c.carrier.carrier_id}-{stage}-{t.run_tag}-{seq:09d}"
    if role == "pre_loading":
        first = c.items[0]
        return {
            "message_id": message_id,
            "carrier_id": c.carrier.carrier_id,
            "house_waybill": house_waybill,
            "master_waybill": c.master_waybill,
            "shipper": dict(c.seller),
            "consignee": dict(c.consignee),
            "pieces": c.pieces,
            "gross_weight_kg": c.gross_weight_kg,
            "cargo_description": c.cargo_description,
            "hs_code": first["hs_code"] if c.pre_loading_hs else None,
            "origin_country": first["origin_country"] if c.pre_loading_origin else None,
            "destination_country": c.destination,
            "route": list(c.route),
            "planned_loading_time": c.loading_deadline,
            "filing_time": _filing_time(t, c.loading_deadline, c.late_pre_loading),
        }
    return {
        "message_id": message_id,
        "carrier_id": c.carrier.carrier_id,
        "house_waybill": house_waybill,
        "master_waybill": c.master_waybill,
        "seller": dict(c.seller),
        "consignee": dict(c.consignee),
        "platform": c.platform,
        "items": [] if c.broken == "no_items" else [dict(line) for line in c.items],
        "vendor_collection_id": c.vendor_collection_id,
        "destination_country": c.destination,
        "transport_mode": c.mode,
        "expected_arrival_time": c.arrival_deadline,
        "filing_time": _filing_time(t, c.arrival_deadline, c.late_pre_arrival),
    }


def _filing(t: _Traffic, c: _Consignment, role: str, seq: int) -> SimulatedFiling:
    kind = "unusable" if c.broken else c.kind
    return SimulatedFiling(
        role=role,
        key=c.house_waybill.encode(),
        value=_record(t, c, role, seq),
        raw=None,
        kind=kind,
        signals=c.signals,
        truth=None if c.broken else c.truth,
    )


def _invalid(t: _Traffic, seq: int) -> SimulatedFiling:
    """A message that must end in the dead-letter topic, split equally over INVALID_KINDS."""
    rng, p = t.rng, t.cat.params
    kind = INVALID_KINDS[rng.randrange(len(INVALID_KINDS))]
    c = _consignment(t, risky=False)
    role = "pre_loading" if c.mode == "AIR" and rng.random() < 0.5 else "pre_arrival"
    if kind == "unusable":
        c.broken = "no_items" if role == "pre_arrival" and rng.random() < 0.5 else "blank_waybill"
        return _filing(t, c, role, seq)
    if kind == "unknown_schema_id":
        schema_id = p["unknown_schema_id_base"] + t.unknown_ids
        t.unknown_ids += 1
        body = _avro_body(role, _record(t, c, role, seq))
        raw = b"\x00" + struct.pack(">I", schema_id) + body
    elif rng.random() < 0.5:
        # Random bytes: anything but the Confluent magic byte first.
        length = rng.randint(*p["corrupt_length"])
        raw = bytes([rng.randint(1, 255)]) + rng.randbytes(length - 1)
    else:
        # A carrier sending truncated JSON instead of Avro.
        text = json.dumps(_record(t, c, role, seq), ensure_ascii=False).encode()
        raw = text[: rng.randint(2, max(2, len(text) - 1))]
    return SimulatedFiling(role, c.house_waybill.encode(), None, raw, kind)


@cache
def _parsed_schema(role: str) -> Any:
    import fastavro

    return fastavro.parse_schema(json.loads(schema_path(role).read_text(encoding="utf-8")))


def _avro_body(role: str, record: dict[str, Any]) -> bytes:
    import fastavro

    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, _parsed_schema(role), record)
    return buffer.getvalue()


def _run(t: _Traffic, count: int) -> Iterator[SimulatedFiling]:
    """Interleave consignments: pre-loading first for most air ones, pre-arrival a few later."""
    rng, p = t.rng, t.cat.params
    pending: list[tuple[int, int, _Consignment, str]] = []  # (due seq, tiebreak, consignment, role)
    gap_max = 2.0 * t.choices.get("gap_ms", p["mean_gap_ms"])
    low, high = p["interleave"]
    reverse_share = p["reverse_order_share"]
    invalid_share, risky_share = t.invalid_share, t.risky_share
    for seq in range(count):
        t.clock += int(rng.random() * gap_max)
        if invalid_share and rng.random() < invalid_share:
            yield _invalid(t, seq)
            continue
        if pending and pending[0][0] <= seq:
            _, _, c, role = heapq.heappop(pending)
            yield _filing(t, c, role, seq)
            continue
        if t.later and t.later[0][0] <= seq:
            c = _next_part(t, heapq.heappop(t.later)[2])
        else:
            c = _consignment(t, risky=rng.random() < risky_share)
            _apply_fraud(t, c, seq)
        if c.mode != "AIR":
            yield _filing(t, c, "pre_arrival", seq)
            continue
        first, second = ROLES if rng.random() >= reverse_share else ROLES[::-1]
        heapq.heappush(pending, (seq + rng.randint(low, high) + 1, seq, c, second))
        yield _filing(t, c, first, seq)


# --------------------------------------------------------------------------------------------
# Sending
# --------------------------------------------------------------------------------------------


@dataclass
class SendReport:
    """What ``CarrierSimulator.send`` produced and what the broker acknowledged."""

    # role -> kind -> messages handed to send (delivered + failed = total)
    produced: dict[str, dict[str, int]] = field(default_factory=dict)
    delivered: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)  # the first few distinct errors
    elapsed_seconds: float = 0.0

    @property
    def total(self) -> int:
        return sum(n for kinds in self.produced.values() for n in kinds.values())

    @property
    def rate(self) -> float:
        """Messages per second over the whole send, flush included."""
        return self.total / self.elapsed_seconds if self.elapsed_seconds > 0 else 0.0

    def __str__(self) -> str:
        parts = [
            f"{role}: " + ", ".join(f"{kind} {n:,}" for kind, n in sorted(kinds.items()))
            for role, kinds in sorted(self.produced.items())
        ]
        text = (
            f"{self.total:,} filings sent ({'; '.join(parts) or 'none'}); "
            f"{self.delivered:,} delivered, {self.failed:,} failed, "
            f"in {self.elapsed_seconds:.1f} s ({self.rate:,.0f}/s)"
        )
        return text + "".join(f"\n  error: {e}" for e in self.errors)

    def note_error(self, error: str) -> None:
        if len(self.errors) < 10 and error not in self.errors:
            self.errors.append(error)


class CarrierSimulator:
    """Sends simulated filings as a carrier would: Confluent Avro on the filing topics.

    Schemas are looked up (latest version of ``<topic>-value``), never registered: greenlane's
    admin step owns registration, so a missing schema is an error here, not a silent fork.
    """

    MAX_FLUSH_SECONDS = 120.0
    PROGRESS_SECONDS = 0.5

    def __init__(self, settings: Settings, producer_config: dict[str, Any] | None = None):
        from confluent_kafka import Producer
        from confluent_kafka.schema_registry import SchemaRegistryClient

        self.settings = settings
        self.topics = {role: settings.topics.name(role) for role in ROLES}
        config = {
            **settings.as_admin(),
            "linger.ms": 10,
            "compression.type": "lz4",
            "acks": "all",
            "enable.idempotence": True,
            "queue.buffering.max.messages": 200_000,
        }
        config.update(producer_config or {})
        self.producer = Producer(config)
        self.registry = SchemaRegistryClient({"url": settings.registry_url})
        self._serializers: dict[str, Any] | None = None

    def _serializer_for(self) -> dict[str, Any]:
        """Build the serializers once, failing fast when a schema is not registered."""
        if self._serializers is None:
            from confluent_kafka.schema_registry.avro import AvroSerializer
            from confluent_kafka.schema_registry.error import SchemaRegistryError

            serializers = {}
            for role, topic in self.topics.items():
                try:
                    self.registry.get_latest_version(f"{topic}-value")
                except SchemaRegistryError as exc:
                    raise RuntimeError(
                        f"schema of {topic}-value not found in {self.settings.registry_url}; "
                        "register schemas first (greenlane admin)"
                    ) from exc
                serializers[role] = AvroSerializer(
                    self.registry,
                    schema_path(role).read_text(encoding="utf-8"),
                    conf={"auto.register.schemas": False, "use.latest.version": True},
                )
            self._serializers = serializers
        return self._serializers

    def send(
        self,
        filings: Iterable[SimulatedFiling],
        rate: float | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> SendReport:
        """Produce every filing, paced to ``rate`` messages/s (None: as fast as possible).

        ``progress(n)`` is called about every PROGRESS_SECONDS with the number of messages
        handed to the producer so far, and once at the end; an exception it raises stops the
        send (without the final flush). Delivery errors are counted in the report, never
        dropped; messages still queued after the final flush count as failed.
        """
        from confluent_kafka import KafkaException
        from confluent_kafka.serialization import MessageField, SerializationContext

        if rate is not None and rate <= 0:
            raise ValueError("rate must be > 0 messages per second, or None")
        serializers = self._serializer_for()
        contexts = {
            role: SerializationContext(topic, MessageField.VALUE)
            for role, topic in self.topics.items()
        }
        report = SendReport()

        def delivered(err, _msg) -> None:
            if err is None:
                report.delivered += 1
            else:
                report.failed += 1
                report.note_error(str(err))

        producer = self.producer
        started = time.monotonic()
        next_progress = started + self.PROGRESS_SECONDS
        sent = 0
        for filing in filings:
            if rate is not None:
                due = started + sent / rate
                while (wait := due - time.monotonic()) > 0:
                    producer.poll(wait)
            if progress is not None and (rate is not None or sent % 1024 == 0):
                now = time.monotonic()
                if now >= next_progress:
                    progress(sent)
                    next_progress = now + self.PROGRESS_SECONDS
            try:
                payload = filing.raw
                if payload is None:
                    payload = serializers[filing.role](filing.value, contexts[filing.role])
            except Exception as exc:  # a record the serializer refuses: report it, go on
                report.failed += 1
                report.note_error(f"serialization: {exc}")
            else:
                while True:
                    try:
                        producer.produce(
                            self.topics[filing.role], payload, filing.key, on_delivery=delivered
                        )
                        break
                    except BufferError:
                        producer.poll(0.05)
                    except KafkaException as exc:
                        report.failed += 1
                        report.note_error(f"produce: {exc}")
                        break
            kinds = report.produced.setdefault(filing.role, {})
            kinds[filing.kind] = kinds.get(filing.kind, 0) + 1
            sent += 1
            if sent % 1024 == 0:
                producer.poll(0)
        remaining = producer.flush(self.MAX_FLUSH_SECONDS)
        if remaining:
            report.failed += remaining
            report.note_error(f"{remaining} messages not delivered within the final flush")
        report.elapsed_seconds = time.monotonic() - started
        if progress is not None:
            progress(sent)
        return report
