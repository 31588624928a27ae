"""Mapping a customs administration's own history table onto greenlane's canonical columns.

Each administration names its columns differently; a small YAML file says which of its columns
plays which canonical role (``schema.py``), which is the date, the label and the revenue
recovered, and which other columns to use as generic categorical or numeric features::

    date: {column: decl_date, format: "%d/%m/%Y"}   # or just: date: decl_date
    label: {column: result, positive: ["SEIZED", "ADJUSTED"]}   # or: label: is_fraud (0/1)
    revenue: recovered_eur                           # optional
    columns: {seller_id: shipper_code, hs_code: hs, value: value_eur, net_mass_kg: kg}
    extra: {categorical: [port], numeric: [n_items]}
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from greenlane.models.schema import CANONICAL, DATE, LABEL, OUTCOMES, REQUIRED, REVENUE, conform
from greenlane.streams.settings import ConfigError, read_yaml

_TOP_KEYS = {"date", "label", "revenue", "columns", "extra"}


@dataclass(frozen=True)
class Mapping:
    source: str
    columns: dict[str, str]  # canonical role -> user column (date, label, revenue included)
    date_format: str | None = None
    positive: tuple[Any, ...] | None = None  # label values meaning fraud; None: 0/1 already
    extra_categorical: tuple[str, ...] = ()
    extra_numeric: tuple[str, ...] = ()


def _column_spec(value: Any, where: str, extra: str | None = None) -> tuple[str, Any]:
    """A column name, or {column: NAME, <extra>: ...}."""
    if isinstance(value, str) and value:
        return value, None
    if isinstance(value, dict) and isinstance(value.get("column"), str):
        unknown = set(value) - {"column", extra}
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {sorted(unknown)}")
        return value["column"], value.get(extra) if extra else None
    raise ConfigError(f"{where}: expected a column name or {{column: NAME}}")


def load_mapping(path: Path | str) -> Mapping:
    """Read and check a mapping file; errors name the file and the key."""
    path = Path(path)
    data = read_yaml(path, "mapping file")
    where = str(path)
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping")
    unknown = set(data) - _TOP_KEYS
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {sorted(unknown)}; known: {sorted(_TOP_KEYS)}")
    for key in ("date", "label"):
        if key not in data:
            raise ConfigError(f"{where}: {key}: missing (which column holds the {key}?)")
    date_col, date_format = _column_spec(data["date"], f"{where}: date", "format")
    label_col, positive = _column_spec(data["label"], f"{where}: label", "positive")
    if positive is not None and not isinstance(positive, list):
        raise ConfigError(f"{where}: label.positive: expected a list of values meaning fraud")
    columns = {DATE: date_col, LABEL: label_col}
    if data.get("revenue") is not None:
        columns[REVENUE] = _column_spec(data["revenue"], f"{where}: revenue")[0]
    roles = data.get("columns") or {}
    if not isinstance(roles, dict):
        raise ConfigError(f"{where}: columns: expected a mapping of canonical role -> column")
    for role, column in roles.items():
        if role not in CANONICAL or role in (DATE, *OUTCOMES):
            known = sorted(set(CANONICAL) - {DATE, *OUTCOMES})
            raise ConfigError(f"{where}: columns.{role}: not a canonical role; known: {known}")
        if not isinstance(column, str) or not column:
            raise ConfigError(f"{where}: columns.{role}: expected a column name")
        columns[role] = column
    missing = [r for r in REQUIRED if r not in columns]
    if missing:
        raise ConfigError(f"{where}: columns: missing required role(s) {missing}")
    extra = data.get("extra") or {}
    if not isinstance(extra, dict) or set(extra) - {"categorical", "numeric"}:
        raise ConfigError(f"{where}: extra: expected {{categorical: [...], numeric: [...]}}")
    lists = {}
    for kind in ("categorical", "numeric"):
        names = extra.get(kind) or []
        if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
            raise ConfigError(f"{where}: extra.{kind}: expected a list of column names")
        clash = set(names) & (set(CANONICAL) | set(columns.values()))
        if clash:
            raise ConfigError(f"{where}: extra.{kind}: {sorted(clash)} already have a role")
        lists[kind] = tuple(names)
    return Mapping(
        source=where,
        columns=columns,
        date_format=date_format,
        positive=tuple(positive) if positive is not None else None,
        extra_categorical=lists["categorical"],
        extra_numeric=lists["numeric"],
    )


def identity_mapping(extra_categorical=(), extra_numeric=()) -> Mapping:
    """The mapping of a table already in canonical columns (e.g. the synthetic history)."""
    return Mapping(
        source="<canonical>",
        columns={role: role for role in CANONICAL},
        extra_categorical=tuple(extra_categorical),
        extra_numeric=tuple(extra_numeric),
    )


def read_table(path: Path | str) -> pl.DataFrame:
    """A CSV or Parquet file, by suffix."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: data file not found")
    if path.suffix.lower() in (".parquet", ".pq"):
        return pl.read_parquet(path)
    return pl.read_csv(path, infer_schema_length=10_000, try_parse_dates=False)


def apply_mapping(raw: pl.DataFrame, mapping: Mapping, data_name: str = "data") -> pl.DataFrame:
    """The user's table in canonical columns (plus declared extras), sorted by date."""
    needed = {**mapping.columns}
    absent = {
        role: col
        for role, col in needed.items()
        if col not in raw.columns and not (mapping.source == "<canonical>" and role not in REQUIRED)
    }
    if absent:
        role, col = next(iter(absent.items()))
        where = "columns." + role if role not in (DATE, LABEL, REVENUE) else role
        raise ConfigError(
            f"{mapping.source}: {where}: column {col!r} not in {data_name} "
            f"(it has {raw.columns[:30]})"
        )
    for name in (*mapping.extra_categorical, *mapping.extra_numeric):
        if name not in raw.columns:
            raise ConfigError(f"{mapping.source}: extra: column {name!r} not in {data_name}")
    present = {role: col for role, col in needed.items() if col in raw.columns}
    frame = raw.select(pl.col(col).alias(role) for role, col in present.items())
    frame = frame.with_columns(raw.select(*mapping.extra_categorical, *mapping.extra_numeric))
    date = pl.col(DATE)
    if frame.schema[DATE] == pl.String:
        date = date.str.to_date(mapping.date_format) if mapping.date_format else date.str.to_date()
    label = pl.col(LABEL)
    if mapping.positive is not None:
        label = pl.when(label.is_null()).then(None).otherwise(label.is_in(list(mapping.positive)))
    try:
        frame = frame.with_columns(
            date.cast(pl.Date).alias(DATE),
            label.cast(pl.Int8).alias(LABEL),
            *(
                pl.col(r).cast(pl.String)
                for r in present
                if CANONICAL[r] == pl.String() and r in frame.columns
            ),
        )
        extras = {
            **{c: pl.String() for c in mapping.extra_categorical},
            **{c: pl.Float64() for c in mapping.extra_numeric},
        }
        return conform(frame, extras).sort(DATE, maintain_order=True)
    except pl.exceptions.PolarsError as exc:
        raise ConfigError(f"{mapping.source}: {data_name} does not fit the mapping: {exc}") from exc


def load_history(data: Path | str, mapping: Path | str | Mapping | None = None) -> pl.DataFrame:
    """Read a CSV/Parquet history through a mapping file (None: already canonical)."""
    if mapping is None:
        mapping = identity_mapping()
    elif not isinstance(mapping, Mapping):
        mapping = load_mapping(mapping)
    return apply_mapping(read_table(data), mapping, str(data))
