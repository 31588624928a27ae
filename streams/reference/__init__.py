"""Reference lists filings are checked against: HS 2022, ISO 3166-1 countries, ISO 4217 currencies.

The lists are package data (CSV files next to this module, sources and licences in SOURCES.md),
read once per process and kept as frozensets so that a lookup in the hot path is one hash probe.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping
from functools import cache
from importlib.resources import files
from types import MappingProxyType


def _rows(name: str) -> list[dict[str, str]]:
    text = files(__name__).joinpath(name).read_text(encoding="utf-8")
    return list(csv.DictReader(text.splitlines()))


@cache
def _hs_table() -> dict[str, str]:
    """HS 2022 code (2, 4 or 6 digits) -> description ('' for subheadings)."""
    return {row["code"]: row["description"] for row in _rows("hs2022.csv")}


@cache
def hs_codes() -> frozenset[str]:
    """Every HS 2022 chapter (2 digits), heading (4) and subheading (6)."""
    return frozenset(_hs_table())


@cache
def hs_subheadings() -> frozenset[str]:
    """The 6-digit HS 2022 subheadings, the precision a pre-arrival declaration needs."""
    return frozenset(code for code in _hs_table() if len(code) == 6)


@cache
def hs_headings() -> frozenset[str]:
    """The 4-digit HS 2022 headings."""
    return frozenset(code for code in _hs_table() if len(code) == 4)


def hs_exists(code: str, max_digits: int = 10) -> bool:
    """Whether ``code`` is an HS 2022 chapter, heading or subheading, or a national tariff line
    (up to ``max_digits``: 8 in the EU CN, 10 in TARIC and the US HTS) whose first 6 digits are
    an HS 2022 subheading.

    Only ASCII digits count: '8517.13' or '8517 13' are not codes (the carrier must send digits).
    Whether a heading is precise enough is the caller's business (it is at pre-loading).
    """
    if not (code.isascii() and code.isdigit()):
        return False
    n = len(code)
    if n > 6:
        return n <= max_digits and code[:6] in hs_subheadings()
    return code in hs_codes()


def hs_description(code: str) -> str | None:
    """Description of the most precise heading or chapter that ``code`` falls under, if any."""
    table = _hs_table()
    for length in (4, 2):
        text = table.get(code[:length]) if len(code) >= length else None
        if text:
            return text
    return None


@cache
def countries() -> frozenset[str]:
    """ISO 3166-1 alpha-2 codes (officially assigned), upper case."""
    return frozenset(row["code"] for row in _rows("countries.csv"))


@cache
def country_names() -> Mapping[str, str]:
    """ISO 3166-1 alpha-2 code -> short English name (read-only)."""
    return MappingProxyType({row["code"]: row["name"] for row in _rows("countries.csv")})


@cache
def currencies() -> frozenset[str]:
    """ISO 4217 codes of circulating currencies, upper case."""
    return frozenset(row["code"] for row in _rows("currencies.csv"))
