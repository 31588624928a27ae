from __future__ import annotations

import polars as pl
import pytest

from greenlane.models.mapping import apply_mapping, load_history, load_mapping
from greenlane.streams.settings import ConfigError

MAPPING = """
date: {column: decl_date, format: "%d/%m/%Y"}
label: {column: result, positive: [SEIZED, ADJUSTED]}
revenue: recovered
columns: {seller_id: shipper, hs_code: hs, value: value_eur, net_mass_kg: kg, destination: dest}
extra: {categorical: [port], numeric: [n_items]}
"""


@pytest.fixture
def user_csv(tmp_path):
    path = tmp_path / "customs.csv"
    pl.DataFrame(
        {
            "decl_date": ["02/01/2025", "01/01/2025", "03/01/2025"],
            "result": ["NO FINDINGS", "SEIZED", "ADJUSTED"],
            "recovered": [0.0, 12.5, 3.0],
            "shipper": ["A", "B", "A"],
            "hs": ["640399", "850760", "420221"],
            "value_eur": [20.0, 5.0, 40.0],
            "kg": [0.5, 0.3, 0.4],
            "dest": ["DE", "FR", "DE"],
            "port": ["FRA", "CDG", "FRA"],
            "n_items": [1, 3, 2],
        }
    ).write_csv(path)
    return path


def _mapping(tmp_path, text: str):
    path = tmp_path / "mapping.yaml"
    path.write_text(text)
    return path


def test_user_columns_become_canonical(tmp_path, user_csv):
    frame = load_history(user_csv, _mapping(tmp_path, MAPPING))
    assert frame["date"].dtype == pl.Date and frame["date"].is_sorted()
    assert frame["fraud"].to_list() == [1, 0, 1]
    assert frame["seller_id"].to_list() == ["B", "A", "A"]
    assert frame["revenue_recovered"].to_list() == [12.5, 0.0, 3.0]
    assert frame["importer_id"].null_count() == 3  # unmapped role: null
    assert frame["port"].to_list() == ["CDG", "FRA", "FRA"]
    assert frame["n_items"].dtype == pl.Float64


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("label: x\ncolumns: {hs_code: h, value: v, net_mass_kg: k}", "date: missing"),
        (MAPPING.replace("seller_id:", "vendor:"), "columns.vendor: not a canonical role"),
        (MAPPING.replace("value: value_eur, ", ""), "missing required role(s) ['value']"),
        (MAPPING + "colums: {}\n", "unknown key(s) ['colums']"),
        (MAPPING.replace("positive: [SEIZED, ADJUSTED]", "positive: SEIZED"), "label.positive"),
        (MAPPING.replace("[port]", "[hs]"), "extra.categorical: ['hs'] already have a role"),
    ],
)
def test_invalid_mapping_names_file_and_key(tmp_path, text, names):
    path = _mapping(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_mapping(path)
    assert str(path) in str(err.value)
    assert names in str(err.value)


def test_column_missing_from_data_names_the_key(tmp_path, user_csv):
    path = _mapping(tmp_path, MAPPING.replace("net_mass_kg: kg", "net_mass_kg: weight"))
    with pytest.raises(ConfigError, match=r"columns\.net_mass_kg: column 'weight' not in"):
        load_history(user_csv, path)


def test_unparsable_date_is_a_config_error(tmp_path, user_csv):
    mapping = load_mapping(_mapping(tmp_path, MAPPING.replace("%d/%m/%Y", "%Y-%m-%d")))
    with pytest.raises(ConfigError, match="does not fit the mapping"):
        apply_mapping(pl.read_csv(user_csv), mapping)
