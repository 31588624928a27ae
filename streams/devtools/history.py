"""Synthetic history of inspected declarations, for the embedded default model and for tests.

A customs administration trains on its own history; until it has one, greenlane needs a history
whose traffic looks like the simulator's (same goods, countries, carriers, platforms, and the
risk lists of the targeting profiles) and whose frauds follow realistic patterns: risky sellers,
importers, brokers and routes; undervaluation (subtle, and blatant below the targeting bound);
misdeclared HS codes (restricted or high-duty goods under a low-duty heading); split shipments
(one consignment declared as several low-value ones on consecutive days); and label noise
(inspections that miss, findings that are wrong). Proportions are data
(``models/settings/history.yaml``). Vectorised with numpy: 100k rows in about a second.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from greenlane.models.config import SETTINGS_DIR
from greenlane.models.schema import CANONICAL, DATE, LABEL, REVENUE, conform
from greenlane.streams.devtools.simulator import Catalogue, Goods, default_catalogue
from greenlane.streams.settings import ConfigError, read_yaml

HISTORY_FILE = SETTINGS_DIR / "history.yaml"
SCHEMES = ("undervaluation", "misdeclared_hs", "split_shipment")


@dataclass(frozen=True)
class HistorySettings:
    start_date: dt.date
    days: int
    importers_per_declaration: float
    declarants_per_destination: int
    repeat_pair_share: float
    risk: dict[str, float]
    schemes: dict[str, float]
    undervaluation_factor: tuple[float, float]
    blatant_undervaluation_share: float
    split_parts: tuple[int, int]
    split_total_value: tuple[float, float]
    low_value_threshold: float
    vague_description_share: dict[str, float]
    penalty_share: float
    label_noise: dict[str, float]
    vat: dict[str, float]
    duty_by_chapter: dict[str, float]
    default_duty: float


_RISK_KEYS = (
    "fraud_rate",
    "risky_seller_share",
    "risky_seller_factor",
    "risky_importer_share",
    "risky_importer_factor",
    "sloppy_declarant_share",
    "sloppy_declarant_factor",
    "high_risk_origin_share",
    "high_risk_origin_factor",
    "high_risk_route_share",
    "high_risk_route_factor",
    "restricted_goods_share",
    "restricted_goods_factor",
)


def load_history_settings(path: Path | None = None) -> HistorySettings:
    """Read and check history.yaml; errors name the file and the key."""
    path = HISTORY_FILE if path is None else Path(path)
    data = read_yaml(path, "history settings")
    where = str(path)

    def get(key: str) -> Any:
        if not isinstance(data, dict) or key not in data:
            raise ConfigError(f"{where}: missing key {key!r}")
        return data[key]

    def number(value: Any, key: str, low: float = 0.0, high: float = float("inf")) -> float:
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not low <= value <= high
        ):
            raise ConfigError(
                f"{where}: {key}: expected a number in [{low}, {high}], got {value!r}"
            )
        return float(value)

    def table(key: str, names: tuple[str, ...] | None = None, high: float = 1e9) -> dict:
        value = get(key)
        if not isinstance(value, dict) or not value:
            raise ConfigError(f"{where}: {key}: expected a non-empty mapping")
        if names is not None and set(value) != set(names):
            raise ConfigError(f"{where}: {key}: expected exactly the keys {list(names)}")
        return {str(k): number(v, f"{key}.{k}", 0.0, high) for k, v in value.items()}

    def span(key: str) -> tuple[float, float]:
        value = get(key)
        if not isinstance(value, list) or len(value) != 2:
            raise ConfigError(f"{where}: {key}: expected [min, max]")
        low, high = (number(v, key) for v in value)
        if low > high:
            raise ConfigError(f"{where}: {key}: min exceeds max")
        return low, high

    try:
        start = dt.date.fromisoformat(str(get("start_date")))
    except ValueError as exc:
        raise ConfigError(f"{where}: start_date: expected YYYY-MM-DD") from exc
    risk = table("risk", _RISK_KEYS)
    for key, value in risk.items():
        if not key.endswith("_factor") and value > 1:
            raise ConfigError(f"{where}: risk.{key}: a share must be within [0, 1]")
    parts = span("split_parts")
    if parts[0] < 2:
        raise ConfigError(f"{where}: split_parts: a split makes at least 2 declarations")
    return HistorySettings(
        start_date=start,
        days=int(number(get("days"), "days", 1)),
        importers_per_declaration=number(
            get("importers_per_declaration"), "importers_per_declaration", 0.01, 1
        ),
        declarants_per_destination=int(
            number(get("declarants_per_destination"), "declarants_per_destination", 1)
        ),
        repeat_pair_share=number(get("repeat_pair_share"), "repeat_pair_share", 0, 1),
        risk=risk,
        schemes=table("schemes", SCHEMES),
        undervaluation_factor=span("undervaluation_factor"),
        blatant_undervaluation_share=number(
            get("blatant_undervaluation_share"), "blatant_undervaluation_share", 0, 1
        ),
        split_parts=(int(parts[0]), int(parts[1])),
        split_total_value=span("split_total_value"),
        low_value_threshold=number(get("low_value_threshold"), "low_value_threshold", 1),
        vague_description_share=table("vague_description_share", ("clean", "fraud"), 1),
        penalty_share=number(get("penalty_share"), "penalty_share", 0, 1),
        label_noise=table("label_noise", ("missed_fraud", "false_finding"), 1),
        vat=table("vat", high=1),
        duty_by_chapter=table("duty_by_chapter", high=1),
        default_duty=number(get("default_duty"), "default_duty", 0, 1),
    )


def _pick(rng: np.random.Generator, weights: Any, size: int) -> np.ndarray:
    w = np.asarray(list(weights), dtype=float)
    return rng.choice(len(w), size=size, p=w / w.sum())


@dataclass
class _Goods:
    """The catalogue's goods as arrays (ordinary first, then restricted)."""

    hs: np.ndarray
    vpk: np.ndarray
    unit_lo: np.ndarray
    unit_hi: np.ndarray
    weight: np.ndarray
    duty: np.ndarray
    descriptions: np.ndarray  # flattened
    first: np.ndarray  # offset of each goods' descriptions
    count: np.ndarray
    ordinary: int  # goods [0, ordinary) are ordinary, the rest restricted

    @classmethod
    def of(cls, cat: Catalogue, s: HistorySettings) -> _Goods:
        goods: list[Goods] = [*cat.goods, *cat.restricted_goods]
        counts = np.array([len(g.descriptions) for g in goods])
        return cls(
            hs=np.array([g.hs_code for g in goods]),
            vpk=np.array([g.value_per_kg for g in goods]),
            unit_lo=np.array([g.unit_kg[0] for g in goods]),
            unit_hi=np.array([g.unit_kg[1] for g in goods]),
            weight=np.array([g.weight for g in goods]),
            duty=np.array([s.duty_by_chapter.get(g.hs_code[:2], s.default_duty) for g in goods]),
            descriptions=np.array([d for g in goods for d in g.descriptions], dtype=object),
            first=np.concatenate([[0], np.cumsum(counts)[:-1]]),
            count=counts,
            ordinary=len(cat.goods),
        )

    def description(self, rng: np.random.Generator, g: np.ndarray) -> np.ndarray:
        return self.descriptions[self.first[g] + rng.integers(0, 1 << 30, g.size) % self.count[g]]


def _carriers_for(rng: np.random.Generator, cat: Catalogue, country: np.ndarray) -> np.ndarray:
    out = np.empty(country.size, dtype=object)
    for code in np.unique(country):
        serving = [c for c in cat.carriers if c.origins is None or code in c.origins]
        rows = np.flatnonzero(country == code)
        ids = np.array([c.carrier_id for c in serving], dtype=object)
        out[rows] = ids[_pick(rng, (c.weight for c in serving), rows.size)]
    return out


def _sellers(rng: np.random.Generator, cat: Catalogue, goods: _Goods, count: int) -> dict:
    """The seller population: country, platform, range of goods, popularity, riskiness."""
    p = cat.params
    countries = np.array(list(cat.seller_countries), dtype=object)
    country = countries[_pick(rng, cat.seller_countries.values(), count)]
    made_in = np.array(country, dtype=object)
    for code, shares in cat.made_in.items():
        rows = np.flatnonzero(country == code)
        made_in[rows] = np.array(list(shares), dtype=object)[_pick(rng, shares.values(), rows.size)]
    platform = np.full(count, None, dtype=object)
    for i, code in enumerate(country):
        open_to = [
            x for x in cat.platforms if x.seller_countries is None or code in x.seller_countries
        ]
        if open_to and rng.random() >= p["direct_share"]:
            platform[i] = open_to[_pick(rng, (x.weight for x in open_to), 1)[0]].name
    low, high = p["goods_per_seller"]
    ordinary = goods.weight[: goods.ordinary]
    popularity = 1.0 / rng.permutation(np.arange(1, count + 1)) ** p["zipf_exponent"]
    return {
        "country": country,
        "made_in": made_in,
        "platform": platform,
        "goods": _pick(rng, ordinary, count * high).reshape(count, high),
        "n_goods": rng.integers(low, high + 1, count),
        "popularity": popularity / popularity.sum(),
    }


def generate_history(
    rows: int,
    seed: int = 7,
    settings: HistorySettings | None = None,
    catalogue: Catalogue | None = None,
) -> pl.DataFrame:
    """``rows`` labelled declarations in canonical columns, sorted by date; same seed, same rows."""
    if rows < 1:
        raise ValueError("rows must be >= 1")
    s = settings or load_history_settings()
    cat = catalogue or default_catalogue()
    rng = np.random.default_rng(seed)
    goods = _Goods.of(cat, s)
    r = s.risk

    n_sellers = int(min(cat.params["seller_pool_size"], max(50, rows // 10)))
    sellers = _sellers(rng, cat, goods, n_sellers)
    seller_risky = rng.random(n_sellers) < r["risky_seller_share"]
    n_importers = max(20, int(rows * s.importers_per_declaration))
    destinations = np.array(list(cat.destinations), dtype=object)
    importer_dest = destinations[_pick(rng, cat.destinations.values(), n_importers)]
    importer_risky = rng.random(n_importers) < r["risky_importer_share"]
    regulars = rng.integers(0, n_importers, (n_sellers, 3))  # buyers who come back to a seller

    seller = rng.choice(n_sellers, size=rows, p=sellers["popularity"])
    importer = rng.integers(0, n_importers, rows)
    repeat = rng.random(rows) < s.repeat_pair_share
    importer[repeat] = regulars[seller[repeat], rng.integers(0, 3, repeat.sum())]
    destination = importer_dest[importer]
    broker = rng.integers(0, s.declarants_per_destination, rows)
    sloppy = (
        rng.random((len(destinations), s.declarants_per_destination)) < r["sloppy_declarant_share"]
    )
    dest_index = {d: i for i, d in enumerate(destinations)}
    sloppy_row = sloppy[np.array([dest_index[d] for d in destination]), broker]
    declarant = np.char.add(np.char.add(destination.astype(str), "-B"), broker.astype(str))

    country = sellers["country"][seller].copy()
    origin = sellers["made_in"][seller].copy()
    seller_id = np.char.add("S", np.char.zfill(seller.astype(str), 5)).astype(object)
    hr_origin = rng.random(rows) < r["high_risk_origin_share"]
    hr_codes = np.array(cat.risk.high_risk_origins, dtype=object)
    country[hr_origin] = origin[hr_origin] = hr_codes[
        rng.integers(0, hr_codes.size, hr_origin.sum())
    ]
    seller_id[hr_origin] = np.char.add("SX", rng.integers(0, 40, hr_origin.sum()).astype(str))
    carrier = _carriers_for(rng, cat, country)
    departure = country.copy()
    hr_route = ~hr_origin & (rng.random(rows) < r["high_risk_route_share"])
    routes = np.array(cat.risk.high_risk_routes, dtype=object)
    departure[hr_route] = routes[rng.integers(0, routes.size, hr_route.sum())]
    platform = sellers["platform"][seller]
    platform[hr_origin] = None

    g = sellers["goods"][seller, rng.integers(0, 1 << 30, rows) % sellers["n_goods"][seller]]
    restricted = rng.random(rows) < r["restricted_goods_share"]
    g[restricted] = goods.ordinary + _pick(rng, goods.weight[goods.ordinary :], restricted.sum())
    quantity = 1 + _pick(rng, cat.params["quantity"], rows)
    unit = rng.uniform(goods.unit_lo[g], goods.unit_hi[g])
    mass = np.maximum(np.round(unit * quantity, 3), 0.001)
    true_value = goods.vpk[g] * rng.uniform(*cat.params["value_noise"], rows) * mass
    vat = np.array([s.vat.get(d, 0.0) for d in destination])
    tax_rate = vat + goods.duty[g]

    propensity = np.ones(rows)
    for mask, key in (
        (seller_risky[seller], "risky_seller_factor"),
        (importer_risky[importer], "risky_importer_factor"),
        (sloppy_row, "sloppy_declarant_factor"),
        (hr_origin, "high_risk_origin_factor"),
        (hr_route, "high_risk_route_factor"),
        (restricted, "restricted_goods_factor"),
    ):
        propensity[mask] *= r[key]
    propensity = np.minimum(propensity * r["fraud_rate"] / propensity.mean(), 0.9)
    fraud = rng.random(rows) < propensity
    scheme = np.full(rows, -1)
    scheme[fraud] = _pick(rng, (s.schemes[k] for k in SCHEMES), fraud.sum())
    scheme[fraud & restricted] = SCHEMES.index("misdeclared_hs")  # hidden under another code

    declared_value = true_value.copy()
    declared_hs = goods.hs[g].copy()
    revenue = np.zeros(rows)
    under = scheme == SCHEMES.index("undervaluation")
    factor = rng.uniform(*s.undervaluation_factor, rows)
    blatant = under & (rng.random(rows) < s.blatant_undervaluation_share)
    declared_value[under] = true_value[under] * factor[under]
    bound = cat.risk.undervaluation_below * rng.uniform(0.1, 0.9, rows) * mass
    declared_value[blatant] = np.minimum(bound, true_value)[blatant]
    revenue[under] = ((true_value - declared_value) * tax_rate)[under]

    mis = scheme == SCHEMES.index("misdeclared_hs")
    low_duty = np.flatnonzero(goods.duty[: goods.ordinary] <= np.median(goods.duty))
    cover = low_duty[rng.integers(0, low_duty.size, rows)]
    declared_hs[mis] = goods.hs[cover][mis]
    declared_rate = vat + goods.duty[cover]
    revenue[mis] = np.maximum(true_value * (tax_rate - declared_rate), 0.0)[mis]
    tax_rate = np.where(mis, declared_rate, tax_rate)

    description = goods.description(rng, g)
    vague_share = np.where(
        fraud, s.vague_description_share["fraud"], s.vague_description_share["clean"]
    )
    vague = rng.random(rows) < vague_share
    terms = np.array([t.capitalize() for t in cat.risk.vague_descriptions], dtype=object)
    description[vague] = terms[rng.integers(0, terms.size, vague.sum())]
    revenue[fraud] += s.penalty_share * true_value[fraud]

    day = rng.integers(0, s.days, rows)
    frame = pl.DataFrame(
        {
            "day": day,
            "seller_id": seller_id,
            "importer_id": np.char.add("I", np.char.zfill(importer.astype(str), 6)).astype(object),
            "declarant_id": declarant.astype(object),
            "carrier_id": carrier,
            "hs_code": declared_hs.astype(object),
            "origin": origin,
            "departure_country": departure,
            "destination": destination,
            "net_mass_kg": mass,
            "quantity": quantity.astype(float),
            "value": declared_value,
            "tax_rate": tax_rate,
            "description": description,
            "platform": platform,
            "fraud": fraud.astype(np.int8),
            "revenue_recovered": revenue,
            "split": scheme == SCHEMES.index("split_shipment"),
        },
        schema_overrides={"platform": pl.String},
    )
    frame = _split_shipments(rng, frame, s)
    frame = _label_noise(rng, frame, s)
    if frame.height > rows:  # splits added rows: drop as many clean single declarations
        clean = np.flatnonzero((frame["fraud"] == 0).to_numpy())
        drop = rng.choice(clean, size=frame.height - rows, replace=False)
        keep = np.ones(frame.height, dtype=bool)
        keep[drop] = False
        frame = frame.filter(pl.Series(keep))
    start = pl.lit(s.start_date)
    frame = frame.sort("day", maintain_order=True).with_columns(
        (start + pl.duration(days=pl.col("day"))).alias(DATE),
        pl.col("value").round(2),
        pl.col(REVENUE).round(2),
    )
    return conform(frame)


def _split_shipments(rng: np.random.Generator, frame: pl.DataFrame, s: HistorySettings):
    """One consignment declared as several low-value declarations on consecutive days."""
    split = frame.filter(pl.col("split"))
    if split.is_empty():
        return frame.drop("split")
    k = rng.integers(s.split_parts[0], s.split_parts[1] + 1, split.height)
    total = rng.uniform(*s.split_total_value, split.height)
    total = np.maximum(total, s.low_value_threshold * 1.05)
    parts = split.with_columns(
        parts=pl.Series(k), total=pl.Series(total), vpk=pl.col("value") / pl.col("net_mass_kg")
    ).select(pl.all().repeat_by("parts").explode())
    part = parts.with_columns(
        index=pl.int_range(pl.len()).over(pl.col("day"), pl.col("seller_id"), pl.col("total"))
    )
    share = pl.col("total") / pl.col("parts") * pl.lit(rng.uniform(0.85, 1.1, part.height))
    capped = pl.min_horizontal(share, pl.lit(s.low_value_threshold * 0.98))
    part = part.with_columns(
        day=pl.min_horizontal(pl.col("day") + pl.col("index"), pl.lit(s.days - 1)),
        value=capped,
        net_mass_kg=(capped / pl.col("vpk")).clip(0.001).round(3),
        revenue_recovered=pl.col("total") * pl.col("tax_rate") / pl.col("parts"),
    ).select(frame.columns)
    return pl.concat([frame.filter(~pl.col("split")), part]).drop("split")


def _label_noise(rng: np.random.Generator, frame: pl.DataFrame, s: HistorySettings):
    """Inspections miss some frauds and record some false findings."""
    fraud = frame["fraud"].to_numpy().astype(bool)
    u = rng.random(frame.height)
    missed = fraud & (u < s.label_noise["missed_fraud"])
    false = ~fraud & (u < s.label_noise["false_finding"])
    label = (fraud & ~missed) | false
    return frame.with_columns(
        pl.Series(LABEL, label.astype(np.int8)),
        pl.when(pl.Series(label)).then(pl.col(REVENUE)).otherwise(0.0).alias(REVENUE),
    )


def write_history(frame: pl.DataFrame, path: Path) -> Path:
    """Write as Parquet (``.parquet``) or CSV (anything else)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".parquet":
        frame.write_parquet(path)
    else:
        frame.write_csv(path)
    return path


__all__ = ["CANONICAL", "generate_history", "load_history_settings", "write_history"]
