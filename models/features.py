"""The one feature function of the risk model, shared by training and the stream.

``build_features`` turns canonical declaration rows (``models/schema.py``) into model features.
Entity history (smoothed past fraud rate and count of the seller, importer, declarant, carrier,
HS6, origin, route, ...) comes from one of two places with the same arithmetic:

* training / evaluation: ``history=None``, computed from the frame itself, each row seeing only
  rows dated strictly before its own date (same-day rows never see each other's labels);
* stream: ``history=`` a table of per-entity counts (``history_table`` of everything labelled
  before the batch, kept up to date with ``merge_history``), the same for every row of a batch.

Counts are integers, and the running sum of log value per kg is kept in fixed point (micro
units, Int64) so sums are exact whatever their order: a snapshot built batch by batch gives
features identical, not just close, to the offline cumulative sums.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

import polars as pl

from greenlane.models.config import FeatureSettings, load_model_settings
from greenlane.models.schema import DATE, LABEL

ALL = "all"  # the role whose single entity is every declaration: the overall rate
_FIXED = 1_000_000  # log value per kg in micro units
_COUNTS = ("n", "labelled", "frauds", "lvpk")
HISTORY_SCHEMA = {
    "role": pl.String,
    "key": pl.String,
    "n": pl.Int64,  # declarations seen
    "labelled": pl.Int64,  # of which with a known inspection result
    "frauds": pl.Int64,
    "lvpk": pl.Int64,  # sum of log(value per kg) * 1e6
}
_CATEGORICAL = (
    "hs_chapter",
    "hs_heading",
    "origin",
    "departure_country",
    "destination",
    "carrier_id",
    "platform",
)
_NUMERIC = (
    "log_value",
    "log_mass",
    "log_value_per_kg",
    "log_value_per_unit",
    "quantity",
    "tax_rate",
    "log_tax_due",
    "origin_not_dispatch",
    "description_length",
    "description_words",
    "description_vague_share",
    "overall_rate",
)


@dataclass(frozen=True)
class FeatureSpec:
    """What ``build_features`` computes; stored with a model so the stream rebuilds the same."""

    history_roles: tuple[str, ...]
    value_norm_roles: tuple[str, ...]
    smoothing: float
    prior_rate: float
    prior_weight: float
    vague_terms: tuple[str, ...]
    extra_categorical: tuple[str, ...] = ()
    extra_numeric: tuple[str, ...] = ()
    # (extra column, pre-arrival filing field it is read from in the stream)
    extra_filing: tuple[tuple[str, str], ...] = ()
    # protected brand names (the IPR list): counterfeits name them on cheap goods
    brand_terms: tuple[str, ...] = ()

    @property
    def categorical(self) -> tuple[str, ...]:
        return (*_CATEGORICAL, *self.extra_categorical)

    @property
    def numeric(self) -> tuple[str, ...]:
        history = [f"{_slug(r)}_{s}" for r in self.history_roles for s in ("rate", "log_n")]
        norms = [f"value_vs_{_slug(r)}_norm" for r in self.value_norm_roles]
        brand = ("description_brand",) if self.brand_terms else ()
        return (*_NUMERIC, *brand, *history, *norms, *self.extra_numeric)

    @property
    def columns(self) -> tuple[str, ...]:
        """Feature columns in model order: categorical first."""
        return (*self.categorical, *self.numeric)

    @property
    def roles(self) -> tuple[str, ...]:
        """Every entity role the history table holds, ALL included."""
        return tuple(dict.fromkeys((ALL, *self.history_roles, *self.value_norm_roles)))


def default_spec(
    settings: FeatureSettings | None = None,
    extra_categorical: tuple[str, ...] = (),
    extra_numeric: tuple[str, ...] = (),
    extra_filing: dict[str, str] | None = None,
) -> FeatureSpec:
    """The spec of models.yaml, with the vague terms of streams' quality.toml and the brands of
    the IPR list (lists/ipr_brands.yaml; ambiguous ones, ordinary words too, left out)."""
    from greenlane.streams.stages.quality import load_quality_rules
    from greenlane.streams.stages.watchlists import protected_brand_names

    settings = settings or load_model_settings().features
    return FeatureSpec(
        history_roles=tuple(settings.history_roles),
        value_norm_roles=tuple(settings.value_norm_roles),
        smoothing=settings.smoothing,
        prior_rate=settings.prior_rate,
        prior_weight=settings.prior_weight,
        vague_terms=tuple(load_quality_rules().vague_description_terms),
        extra_categorical=tuple(extra_categorical),
        extra_numeric=tuple(extra_numeric),
        extra_filing=tuple((extra_filing or {}).items()),
        brand_terms=protected_brand_names(),
    )


def _slug(role: str) -> str:
    return role.replace("+", "_").removesuffix("_id")


@cache
def _vague_pattern(terms: tuple[str, ...]) -> str:
    """Any of ``terms`` as a whole word (vague terms, brand names), longest first."""
    alternatives = "|".join(re.escape(t.lower()) for t in sorted(terms, key=len, reverse=True))
    return rf"\b(?:{alternatives})\b"


def _role_key(role: str) -> pl.Expr:
    """The entity a declaration belongs to in a role; a missing id is one entity ("?")."""
    if role == ALL:
        return pl.lit("*")
    derived = {
        "hs6": pl.col("hs_code").str.slice(0, 6),
        "route": pl.concat_str(
            pl.col("departure_country").fill_null("?"),
            pl.col("destination").fill_null("?"),
            separator=">",
        ),
    }
    parts = [derived.get(p, pl.col(p)).cast(pl.String).fill_null("?") for p in role.split("+")]
    return parts[0] if len(parts) == 1 else pl.concat_str(parts, separator="|")


def _log_value_per_kg() -> pl.Expr:
    return (pl.col("value").clip(0.01) / pl.col("net_mass_kg").clip(0.001)).log()


def _observations(frame: pl.DataFrame, role: str) -> pl.DataFrame:
    """Per declaration: the entity key and what it adds to the entity's counts."""
    label = pl.col(LABEL) if LABEL in frame.columns else pl.lit(None, pl.Int8)
    return frame.select(
        key=_role_key(role),
        date=pl.col(DATE),
        n=pl.lit(1, pl.Int64),
        labelled=label.is_not_null().cast(pl.Int64),
        frauds=label.fill_null(0).cast(pl.Int64),
        lvpk=(_log_value_per_kg() * _FIXED).round().cast(pl.Int64).fill_null(0),
    )


def history_table(frame: pl.DataFrame, spec: FeatureSpec) -> pl.DataFrame:
    """Per-entity counts over every row of ``frame``: the stream's state snapshot."""
    parts = [
        _observations(frame, role)
        .group_by("key")
        .agg(pl.col(c).sum() for c in _COUNTS)
        .select(pl.lit(role).alias("role"), "key", *_COUNTS)
        for role in spec.roles
    ]
    return pl.concat(parts).cast(HISTORY_SCHEMA)  # type: ignore[arg-type]


def merge_history(*tables: pl.DataFrame) -> pl.DataFrame:
    """Add count tables (a snapshot plus a newly labelled batch, say)."""
    return (
        pl.concat([t.cast(HISTORY_SCHEMA) for t in tables])  # type: ignore[arg-type]
        .group_by("role", "key", maintain_order=True)
        .agg(pl.col(c).sum() for c in _COUNTS)
    )


def _past_counts_from_frame(frame: pl.DataFrame, role: str) -> pl.DataFrame:
    """Counts of each row's entity over rows dated strictly before the row's own date."""
    obs = _observations(frame, role)
    daily = (
        obs.group_by("key", "date")
        .agg(pl.col(c).sum() for c in _COUNTS)
        .sort("key", "date")
        .with_columns(pl.col(c).cum_sum().shift(1, fill_value=0).over("key") for c in _COUNTS)
    )
    return obs.select("key", "date").join(
        daily, on=["key", "date"], how="left", maintain_order="left"
    )


HistoryIndex = dict[str, dict[str, tuple[int, int, int, int]]]
"""A history snapshot indexed once: role -> entity key -> (n, labelled, frauds, lvpk)."""


def index_history(history: pl.DataFrame) -> HistoryIndex:
    """For a stream that looks entities up batch after batch: plain dict look-ups cost
    microseconds where a join against the stacked snapshot costs milliseconds per role."""
    index: HistoryIndex = {}
    for role, key, *counts in history.select("role", "key", *_COUNTS).iter_rows():
        index.setdefault(role, {})[key] = tuple(counts)
    return index


_NONE = (0, 0, 0, 0)


def _past_counts_from_table(frame: pl.DataFrame, role: str, history: pl.DataFrame) -> pl.DataFrame:
    table = history.filter(pl.col("role") == role).select("key", *_COUNTS)
    return (
        frame.with_columns(_role_key(role).alias("__key"))
        .select(pl.col("__key").alias("key"))
        .join(table, on="key", how="left", maintain_order="left")
        .with_columns(pl.col(c).fill_null(0) for c in _COUNTS)
    )


def _past_counts_from_index(
    frame: pl.DataFrame, roles: Sequence[str], history: HistoryIndex
) -> dict[str, pl.DataFrame]:
    """``_past_counts_from_table`` of every role at once: the keys in one pass over the frame
    (a polars collect costs ~0.1 ms, whatever the rows: most of a small batch's features)."""
    names = [f"__key{i}" for i in range(len(roles))]
    keyed = frame.with_columns(_role_key(r).alias(n) for r, n in zip(roles, names, strict=True))
    schema = {**{c: HISTORY_SCHEMA[c] for c in _COUNTS}, "key": pl.String}
    out = {}
    for role, name in zip(roles, names, strict=True):
        known = history.get(role, {})
        keys = keyed.get_column(name).to_list()
        found = [known.get(k, _NONE) for k in keys]
        columns: dict[str, list] = {c: [f[i] for f in found] for i, c in enumerate(_COUNTS)}
        out[role] = pl.DataFrame({**columns, "key": keys}, schema=schema)
    return out


def build_features(
    frame: pl.DataFrame,
    spec: FeatureSpec,
    history: pl.DataFrame | HistoryIndex | None = None,
) -> pl.DataFrame:
    """Model features of canonical declaration rows, one output row per input row, same order.

    ``history=None``: entity history from ``frame`` itself (needs the ``fraud`` and ``date``
    columns; rows only see earlier dates). Otherwise ``history`` is a ``history_table`` snapshot
    of everything known before these rows, and ``frame`` needs no label.
    """
    if isinstance(history, dict):
        counts = _past_counts_from_index(frame, spec.roles, history)
    else:
        counts = {
            role: (
                _past_counts_from_frame(frame, role)
                if history is None
                else _past_counts_from_table(frame, role, history)
            )
            for role in spec.roles
        }
    overall = counts[ALL]
    overall_rate = (overall["frauds"] + spec.prior_weight * spec.prior_rate) / (
        overall["labelled"] + spec.prior_weight
    )
    history_cols: dict[str, pl.Series] = {"overall_rate": overall_rate}
    for role in spec.history_roles:
        c = counts[role]
        rate = (c["frauds"] + spec.smoothing * overall_rate) / (c["labelled"] + spec.smoothing)
        history_cols[f"{_slug(role)}_rate"] = rate
        history_cols[f"{_slug(role)}_log_n"] = c["n"].cast(pl.Float64).log1p()
    log_vpk = frame.select(_log_value_per_kg()).to_series()
    for role in spec.value_norm_roles:
        c = counts[role]
        norm = (c["lvpk"] / _FIXED / c["n"]).set(c["n"] == 0, None)
        history_cols[f"value_vs_{_slug(role)}_norm"] = log_vpk - norm

    description = pl.col("description").fill_null("").str.to_lowercase()
    words = r"[^\W\d_]+"
    n_words = description.str.count_matches(words)
    plain_words = description.str.replace_all(
        _vague_pattern(spec.vague_terms), " "
    ).str.count_matches(words)
    units = pl.col("quantity").fill_null(1).clip(1)
    own = frame.select(
        hs_chapter=pl.col("hs_code").str.slice(0, 2),
        hs_heading=pl.col("hs_code").str.slice(0, 4),
        origin=pl.col("origin"),
        departure_country=pl.col("departure_country"),
        destination=pl.col("destination"),
        carrier_id=pl.col("carrier_id"),
        platform=pl.col("platform"),
        log_value=pl.col("value").clip(0).log1p(),
        log_mass=pl.col("net_mass_kg").clip(0.001).log(),
        log_value_per_kg=_log_value_per_kg(),
        log_value_per_unit=(pl.col("value").clip(0.01) / units).log(),
        quantity=pl.col("quantity").cast(pl.Float64),
        tax_rate=pl.col("tax_rate").cast(pl.Float64),
        log_tax_due=(pl.col("value").clip(0) * pl.col("tax_rate")).log1p(),
        origin_not_dispatch=(pl.col("origin") != pl.col("departure_country")).cast(pl.Float64),
        description_length=pl.col("description").fill_null("").str.len_chars().cast(pl.Float64),
        description_words=n_words.cast(pl.Float64),
        description_vague_share=pl.when(n_words == 0)
        .then(1.0)
        .otherwise(1.0 - plain_words / n_words),
    )
    if spec.brand_terms:
        brand = description.str.contains(_vague_pattern(spec.brand_terms)).cast(pl.Float64)
        own = own.with_columns(frame.select(brand.alias("description_brand")))
    extras = [
        *(pl.col(c).cast(pl.String) for c in spec.extra_categorical),
        *(pl.col(c).cast(pl.Float64) for c in spec.extra_numeric),
    ]
    own = own.with_columns(frame.select(extras)) if extras else own
    return own.with_columns(**history_cols).select(spec.columns)
