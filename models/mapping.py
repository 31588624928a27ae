"""Mapping a customs administration's own history table onto greenlane's canonical columns.

Each administration names its columns differently; a small YAML file says which of its columns
plays which canonical role (``schema.py``), which is the date, the label and the revenue
recovered, and which other columns to use as generic categorical or numeric features::

    date: {column: decl_date, format: "%d/%m/%Y"}   # or just: date: decl_date
    label: {column: result, positive: ["SEIZED", "ADJUSTED"]}   # or: label: is_fraud (0/1)
    revenue: recovered_eur                           # optional
    columns: {seller_id: shipper_code, hs_code: hs, value: value_eur, net_mass_kg: kg}
    types: {tariff_code: text, kg: number}           # optional: how to read a column
    extra:                                           # optional: more features, from the filing
      categorical: [{column: mode, filing: transport_mode}]

Columns with a text role (ids, HS codes, countries) and categorical extras are read as text, so
``070310`` keeps its zero; ``types`` says it for any other column. An extra feature must name
the pre-arrival filing field the stream takes it from (``filing:``, e.g. ``transport_mode`` or
``seller.country``): a model whose features the stream cannot supply is refused at training.
Every mistake is a one-line ``ConfigError`` naming the file and the column, with the fix.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import polars as pl

from greenlane.models.schema import CANONICAL, DATE, LABEL, OUTCOMES, REQUIRED, REVENUE, conform
from greenlane.streams.settings import ConfigError, read_yaml, schema_path
from greenlane.streams.settings.secrets import pseudonymiser

_TOP_KEYS = {"date", "label", "revenue", "columns", "types", "extra"}
ISO_DATE = "%Y-%m-%d"
_NUMERIC_AVRO = {"int", "long", "float", "double", "boolean"}
TYPES = {"text": pl.String(), "number": pl.Float64()}
MAPPING_HELP = "pass --mapping FILE naming its columns (README: Training on your own history)"


@dataclass(frozen=True)
class Mapping:
    source: str
    columns: dict[str, str]  # canonical role -> user column (date, label, revenue included)
    date_format: str | None = None
    positive: tuple[Any, ...] | None = None  # label values meaning fraud; None: 0/1 already
    extra_categorical: tuple[str, ...] = ()
    extra_numeric: tuple[str, ...] = ()
    types: dict[str, str] = field(default_factory=dict)  # user column -> text | number
    extra_filing: dict[str, str] = field(default_factory=dict)  # extra column -> filing field

    def read_types(self) -> dict[str, pl.DataType]:
        """How each user column must be read: text roles and categorical extras as text."""
        text_roles = {c for r, c in self.columns.items() if CANONICAL[r] == pl.String()}
        read = {c: pl.String() for c in (*text_roles, *self.extra_categorical)}
        return {**read, **{c: TYPES[t] for c, t in self.types.items()}}


@cache
def filing_fields() -> dict[str, str]:
    """Pre-arrival filing fields an extra feature can come from: dotted path -> Avro type."""
    schema = json.loads(schema_path("pre_arrival").read_text())
    named: dict[str, dict] = {}
    out: dict[str, str] = {}

    def walk(record: dict, prefix: str) -> None:
        named[record["name"]] = record
        for f in record["fields"]:
            kinds = f["type"] if isinstance(f["type"], list) else [f["type"]]
            for kind in kinds:
                if kind == "null":
                    continue
                kind = named.get(kind, kind) if isinstance(kind, str) else kind
                if isinstance(kind, dict) and kind["type"] == "record":
                    walk(kind, f"{prefix}{f['name']}.")
                elif isinstance(kind, dict) and kind["type"] == "enum":
                    out[prefix + f["name"]] = "enum"
                elif isinstance(kind, str):
                    out[prefix + f["name"]] = kind

    walk(schema, "")
    return out


def filing_value(record: dict, path: str) -> Any:
    """The value of a dotted filing field in a decoded record (None where a part is missing)."""
    value: Any = record
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _extra(value: Any, where: str) -> tuple[str, str | None]:
    """An extra feature: its column, and the filing field the stream reads it from."""
    if isinstance(value, str) and value:
        return value, None
    if isinstance(value, dict) and isinstance(value.get("column"), str):
        unknown = sorted(set(value) - {"column", "filing"})
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {unknown}; known: column, filing")
        source = value.get("filing")
        if source is not None and source not in filing_fields():
            raise ConfigError(
                f"{where}: filing: {source!r} is not a pre-arrival filing field; "
                f"known: {sorted(filing_fields())}"
            )
        return value["column"], source
    raise ConfigError(f"{where}: expected a column name or {{column: NAME, filing: FIELD}}")


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
    lists: dict[str, tuple[str, ...]] = {}
    sources: dict[str, str] = {}
    for kind in ("categorical", "numeric"):
        entries = extra.get(kind) or []
        if not isinstance(entries, list):
            raise ConfigError(f"{where}: extra.{kind}: expected a list of columns")
        names = []
        for i, entry in enumerate(entries):
            name, source = _extra(entry, f"{where}: extra.{kind}[{i}]")
            names.append(name)
            if source:
                avro = filing_fields()[source]
                if (kind == "numeric") != (avro in _NUMERIC_AVRO):
                    raise ConfigError(
                        f"{where}: extra.{kind}[{i}]: filing field {source!r} is {avro}, "
                        f"not {'a number' if kind == 'numeric' else 'text'}; list it under "
                        f"extra.{'categorical' if kind == 'numeric' else 'numeric'}"
                    )
                sources[name] = source
        clash = set(names) & (set(CANONICAL) | set(columns.values()))
        if clash:
            raise ConfigError(f"{where}: extra.{kind}: {sorted(clash)} already have a role")
        lists[kind] = tuple(names)
    types = data.get("types") or {}
    if not isinstance(types, dict):
        raise ConfigError(f"{where}: types: expected a mapping of column -> text | number")
    for column, kind in types.items():
        if kind not in TYPES:
            raise ConfigError(
                f"{where}: types.{column}: {kind!r} is not a type; known: {list(TYPES)}"
            )
    return Mapping(
        source=where,
        columns=columns,
        date_format=date_format,
        positive=tuple(positive) if positive is not None else None,
        extra_categorical=lists["categorical"],
        extra_numeric=lists["numeric"],
        types=dict(types),
        extra_filing=sources,
    )


def check_servable(mapping: Mapping) -> None:
    """Refuse extra features the stream could not compute (no ``filing:`` field declared)."""
    for kind, names in (
        ("categorical", mapping.extra_categorical),
        ("numeric", mapping.extra_numeric),
    ):
        for name in names:
            if name not in mapping.extra_filing:
                raise ConfigError(
                    f"{mapping.source}: extra.{kind}: {name!r} has no filing field, so the "
                    f"stream could not score with it; write {{column: {name}, filing: FIELD}} "
                    f"(a pre-arrival field such as transport_mode) or remove it"
                )


def identity_mapping(extra_categorical=(), extra_numeric=()) -> Mapping:
    """The mapping of a table already in canonical columns (e.g. the synthetic history)."""
    return Mapping(
        source="<canonical>",
        columns={role: role for role in CANONICAL},
        extra_categorical=tuple(extra_categorical),
        extra_numeric=tuple(extra_numeric),
    )


def _read_error(path: Path, exc: Exception) -> ConfigError:
    """A polars or OS error on reading as one line, with what to do about it."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if isinstance(exc, pl.exceptions.NoDataError):
        return ConfigError(f"{path}: the file is empty (a history needs a header row and rows)")
    if isinstance(exc, UnicodeDecodeError) or "utf-8" in text.lower():
        return ConfigError(f"{path}: not UTF-8 text; save it as UTF-8 CSV (or as Parquet)")
    if "more fields than defined" in text:
        return ConfigError(
            f"{path}: a row has more fields than the header; check the delimiter (a comma is "
            "expected) and that text with commas is quoted"
        )
    if path.suffix.lower() in (".parquet", ".pq"):
        return ConfigError(f"{path}: not a readable Parquet file ({text})")
    return ConfigError(f"{path}: not a readable CSV file ({text})")


def _check_utf8(path: Path, sample: int = 1 << 20) -> None:
    """Refuse a CSV that is not UTF-8 before polars reads it as something else (UTF-16 text
    parses as one strange column)."""
    with path.open("rb") as f:
        head = f.read(sample)
    try:
        if b"\x00" in head:
            raise UnicodeDecodeError("utf-8", head, 0, 1, "NUL byte")
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.reason != "unexpected end of data":  # a character cut by the sample's end
            raise ConfigError(
                f"{path}: not UTF-8 text; save it as UTF-8 CSV (or as Parquet)"
            ) from None


def read_table(path: Path | str, types: dict[str, pl.DataType] | None = None) -> pl.DataFrame:
    """A CSV or Parquet file, by suffix; ``types`` (column -> dtype) says how to read columns."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: data file not found")
    types = types or {}
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            return pl.read_parquet(path)
        _check_utf8(path)
        header = pl.read_csv(path, n_rows=0).columns
        overrides = {c: t for c, t in types.items() if c in header}
        return pl.read_csv(
            path, infer_schema_length=10_000, try_parse_dates=False, schema_overrides=overrides
        )
    except (pl.exceptions.PolarsError, OSError, UnicodeDecodeError) as exc:
        raise _read_error(path, exc) from exc


def _missing_column(mapping: Mapping, where: str, column: str, raw: pl.DataFrame, data: str) -> str:
    near = difflib.get_close_matches(column, raw.columns, n=1)
    hint = f"; did you mean {near[0]!r}?" if near else f" (it has {raw.columns[:20]})"
    if mapping.source == "<canonical>":
        return f"{data}: no column {column!r}{hint}; {MAPPING_HELP}"
    return f"{mapping.source}: {where}: column {column!r} not in {data}{hint}"


def _hs_text(column: pl.Expr, numeric: bool) -> pl.Expr:
    """HS codes as text; read as numbers they lost a leading zero (codes have even lengths)."""
    text = column.cast(pl.String)
    if not numeric:
        return text
    padded = pl.concat_str([pl.lit("0"), text])
    return pl.when(text.str.len_chars() % 2 == 1).then(padded).otherwise(text)


def _parse_date(frame: pl.DataFrame, mapping: Mapping, data: str) -> pl.Expr:
    column = mapping.columns[DATE]
    where = mapping.source if mapping.source != "<canonical>" else data
    if frame.schema[DATE].is_numeric():
        raise ConfigError(
            f"{where}: date: column {column!r} of {data} holds numbers, not dates; read it as "
            f'text with types: {{{column}: text}} and give its date.format (e.g. "%Y%m%d")'
        )
    blank = frame[DATE].null_count()
    if blank:
        raise ConfigError(
            f"{where}: date: column {column!r} of {data} has {blank:,} empty value(s); every "
            "declaration needs its date (drop those rows or fill them in)"
        )
    if frame.schema[DATE] != pl.String:
        return pl.col(DATE)
    fmt = mapping.date_format or ISO_DATE  # never guessed: 02/01/2025 is two different days
    parsed = frame.select(pl.col(DATE).str.to_date(fmt, strict=False)).to_series()
    bad = frame.filter(parsed.is_null() & frame[DATE].is_not_null())
    if bad.height:
        example = bad[DATE][0]
        fix = (
            f"it does not match date.format {fmt!r}"
            if mapping.date_format
            else "without a format dates must be YYYY-MM-DD; say yours in the mapping, e.g. "
            f'date: {{column: {column}, format: "%d/%m/%Y"}}'
        )
        raise ConfigError(
            f"{where}: date: column {column!r} of {data} has {bad.height:,} value(s) that are "
            f"not dates, e.g. {example!r}; {fix}"
        )
    return pl.lit(parsed)


def _cast(frame: pl.DataFrame, column: str, dtype: pl.DataType, user: str, where: str, data: str):
    """One column to its dtype; values that do not convert are named with the user's column."""
    converted = frame.get_column(column).cast(dtype, strict=False)
    bad = frame.filter(converted.is_null() & frame[column].is_not_null())
    if bad.height:
        kind = "numbers" if dtype == pl.Float64() else str(dtype)
        raise ConfigError(
            f"{where}: column {user!r} of {data} should hold {kind} but has {bad.height:,} "
            f"that are not, e.g. {bad[column][0]!r}"
            + ("; use a dot for decimals, no thousands separators" if kind == "numbers" else "")
        )
    return converted


def _label(frame: pl.DataFrame, mapping: Mapping, where: str) -> pl.Series:
    """The label as 0/1 (null: not inspected); other values name the column and the fix."""
    raw = frame.get_column(LABEL)
    if mapping.positive is not None:
        wanted = [str(v).lower() if isinstance(v, bool) else str(v) for v in mapping.positive]
        text = raw.cast(pl.String)
        if raw.dtype.is_float():  # 1.0 read from a float column is the label 1
            text = raw.cast(pl.Int64, strict=False).cast(pl.String)
        label = text.is_in(wanted).cast(pl.Int8).set(raw.is_null(), None)
        if raw.drop_nulls().len() and not (label == 1).any():
            seen = raw.drop_nulls().unique().head(8).to_list()
            raise ConfigError(
                f"{where}: label.positive: none of {list(mapping.positive)} occurs in column "
                f"{mapping.columns[LABEL]!r} (its values include {seen}); quote values YAML "
                "would read as booleans or numbers"
            )
        return label
    label = raw.cast(pl.Int8, strict=False)
    bad = frame.filter((label.is_null() & raw.is_not_null()) | ~label.is_in([0, 1]))
    if bad.height:
        raise ConfigError(
            f"{where}: label: column {mapping.columns[LABEL]!r} has {bad.height:,} value(s) "
            f"other than 0 and 1, e.g. {bad[LABEL][0]!r}; list the values meaning fraud: "
            f"label: {{column: {mapping.columns[LABEL]}, positive: [SEIZED, ...]}}"
        )
    return label


def apply_mapping(raw: pl.DataFrame, mapping: Mapping, data_name: str = "data") -> pl.DataFrame:
    """The user's table in canonical columns (plus declared extras), sorted by date."""
    canonical = mapping.source == "<canonical>"
    where = mapping.source if not canonical else data_name
    for role, col in mapping.columns.items():
        if col not in raw.columns and not (canonical and role not in REQUIRED):
            key = "columns." + role if role not in (DATE, LABEL, REVENUE) else role
            raise ConfigError(_missing_column(mapping, key, col, raw, data_name))
    for name in (*mapping.extra_categorical, *mapping.extra_numeric):
        if name not in raw.columns:
            raise ConfigError(_missing_column(mapping, "extra", name, raw, data_name))
    present = {role: col for role, col in mapping.columns.items() if col in raw.columns}
    frame = raw.select(pl.col(col).alias(role) for role, col in present.items())
    frame = frame.with_columns(raw.select(*mapping.extra_categorical, *mapping.extra_numeric))
    date = _parse_date(frame, mapping, data_name)
    frame = frame.with_columns(date.cast(pl.Date).alias(DATE), _label(frame, mapping, where))
    dtypes = {
        **{r: CANONICAL[r] for r in present if r not in (DATE, LABEL)},
        **{c: pl.String() for c in mapping.extra_categorical},
        **{c: pl.Float64() for c in mapping.extra_numeric},
    }
    hs_numeric = "hs_code" in frame.columns and frame.schema["hs_code"].is_numeric()
    if hs_numeric:  # 70310.0 from a float column: the code is the whole number
        frame = frame.with_columns(
            pl.col("hs_code").cast(pl.Float64).fill_nan(None).round(0).cast(pl.Int64)
        )
    frame = frame.with_columns(
        _cast(frame, c, t, present.get(c, c), where, data_name).alias(c) for c, t in dtypes.items()
    )
    if "hs_code" in frame.columns:
        frame = frame.with_columns(_hs_text(pl.col("hs_code"), hs_numeric).alias("hs_code"))
    if not canonical:
        frame = _pseudonymised(frame)
    extras = {c: dtypes[c] for c in (*mapping.extra_categorical, *mapping.extra_numeric)}
    return conform(frame, extras).sort(DATE, maintain_order=True)


# canonical id role -> the party role its digest is keyed under (as models.stream keys them)
PARTY_ROLES = {"seller_id": "seller", "importer_id": "importer", "declarant_id": "declarant"}


def _pseudonymised(frame: pl.DataFrame) -> pl.DataFrame:
    """An administration's own party ids as the keyed digests the stream gives the same
    registration ids, so the labelled history never holds them in clear (a table already in
    canonical columns holds greenlane's digests and is taken as it is)."""
    party = pseudonymiser().party
    columns = []
    for role, kind in PARTY_ROLES.items():
        if role in frame.columns:
            ids = frame.get_column(role).drop_nulls().unique().to_list()
            digests = {i: party(kind, i) if i.strip() else None for i in ids}
            columns.append(pl.col(role).replace_strict(digests, default=None).alias(role))
    return frame.with_columns(columns) if columns else frame


def load_history(data: Path | str, mapping: Path | str | Mapping | None = None) -> pl.DataFrame:
    """Read a CSV/Parquet history through a mapping file (None: already canonical)."""
    if mapping is None:
        mapping = identity_mapping()
    elif not isinstance(mapping, Mapping):
        mapping = load_mapping(mapping)
    return apply_mapping(read_table(data, mapping.read_types()), mapping, str(data))
