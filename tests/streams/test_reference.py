"""The reference lists: HS 2022 (from the shared data package), ISO 3166-1, ISO 4217."""

import csv
from importlib.resources import files
from pathlib import Path

import pytest

from greenlane.streams import reference

SHARED_HS = Path("/work/shared/data/hs2022/harmonized-system.csv")


@pytest.mark.parametrize(
    "code",
    [
        "851713",  # smartphones
        "851714",
        "010121",
        "970690",  # last subheading of the nomenclature
        "8517",  # heading
        "85",  # chapter
        "85171300",  # EU CN 8-digit national extension
        "8517130000",  # TARIC / US HTS 10 digits
        "851713000",  # 9 digits (e.g. Japan's statistical code)
    ],
)
def test_hs_exists_accepts_hs2022_codes_and_national_extensions(code):
    assert reference.hs_exists(code)


@pytest.mark.parametrize(
    "code",
    [
        "851712",  # HS 2017 mobile phones: split into 851713/851714 in HS 2022
        "999999",  # Comtrade "not specified" pseudo-code, not HS
        "9999",
        "99",
        "77",  # reserved chapter
        "000000",
        "85171",  # 5 digits is no HS level
        "85171200",  # national code over a deleted subheading
        "85171300001",  # 11 digits: beyond the default maximum
        "8517.13",
        "8517 13",
        "",
        "٨٥١٧١٣",  # Arabic-Indic digits are digits to str.isdigit, not to customs
        "abcdef",
    ],
)
def test_hs_exists_rejects_codes_outside_hs2022(code):
    assert not reference.hs_exists(code)


def test_hs_exists_max_digits_is_a_parameter():
    assert not reference.hs_exists("851713000000")
    assert reference.hs_exists("851713000000", max_digits=12)


def test_hs_levels_have_the_published_counts():
    codes = reference.hs_codes()
    assert sum(1 for c in codes if len(c) == 2) == 96  # chapters 01-97 without 77
    assert len(reference.hs_headings()) == 1228
    assert len(reference.hs_subheadings()) == 5612
    assert all(c.isdigit() and len(c) in (2, 4, 6) for c in codes)
    # Every subheading hangs under a heading, every heading under a chapter.
    assert {c[:4] for c in reference.hs_subheadings()} <= reference.hs_headings()
    assert {c[:2] for c in reference.hs_headings()} <= codes


def test_hs_reference_matches_the_shared_data_package_without_pseudo_codes():
    if not SHARED_HS.exists():
        pytest.skip("shared HS 2022 data package not on this machine")
    with SHARED_HS.open(newline="", encoding="utf-8") as fh:
        source = {row["hscode"] for row in csv.DictReader(fh) if row["section"] != "TOTAL"}
    assert reference.hs_codes() == source


def test_hs_description_falls_back_to_heading_then_chapter():
    assert reference.hs_description("01") == "Animals; live"
    assert "Telephone sets" in reference.hs_description("851713")
    assert reference.hs_description("8517130000") == reference.hs_description("8517")
    assert reference.hs_description("77") is None


def test_countries_are_the_249_iso_3166_alpha2_codes():
    countries = reference.countries()
    assert len(countries) == 249
    assert all(len(c) == 2 and c.isascii() and c.isalpha() and c.isupper() for c in countries)
    assert {"DE", "CN", "HK", "US", "GB", "AX", "SS", "BQ"} <= countries
    for bad in ("XX", "de", "UK", "EU", "XK", "D", "DEU", ""):
        assert bad not in countries, bad
    assert reference.country_names()["DE"] == "Germany"


def test_currencies_are_circulating_iso_4217_codes():
    currencies = reference.currencies()
    assert {"EUR", "USD", "CNY", "GBP", "JPY", "XCG", "ZWG", "XOF"} <= currencies
    assert all(len(c) == 3 and c.isascii() and c.isalpha() and c.isupper() for c in currencies)
    # Not prices: test, no-currency, gold, SDR; withdrawn: kuna, Bulgarian lev (euro in 2026).
    for bad in ("XTS", "XXX", "XAU", "XDR", "HRK", "BGN", "eur", "EUX", "RMB"):
        assert bad not in currencies, bad


def test_licence_and_source_note_ships_with_the_data():
    note = files("greenlane.streams.reference").joinpath("SOURCES.md").read_text(encoding="utf-8")
    assert "ODC-PDDL" in note
    for name in ("hs2022.csv", "countries.csv", "currencies.csv"):
        assert name in note
        assert files("greenlane.streams.reference").joinpath(name).is_file()
