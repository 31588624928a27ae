from __future__ import annotations

import polars as pl
import pytest

from greenlane.models.mapping import (
    apply_mapping,
    check_servable,
    filing_fields,
    load_history,
    load_mapping,
)
from greenlane.streams.settings import ConfigError
from greenlane.streams.settings.secrets import pseudonymiser

MAPPING = """
date: {column: decl_date, format: "%d/%m/%Y"}
label: {column: result, positive: [SEIZED, ADJUSTED]}
revenue: recovered
columns: {seller_id: shipper, hs_code: hs, value: value_eur, net_mass_kg: kg, destination: dest}
extra: {categorical: [port], numeric: [n_items]}
"""
SERVABLE = MAPPING.replace(
    "extra: {categorical: [port], numeric: [n_items]}",
    "extra: {categorical: [{column: port, filing: transport_mode}]}",
)


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
    # an administration's own ids become the digests the stream gives the same ids
    digest = pseudonymiser().party
    assert frame["seller_id"].to_list() == [digest("seller", x) for x in ("B", "A", "A")]
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


def test_a_wrong_date_format_names_the_users_column_and_the_fix(tmp_path, user_csv):
    mapping = load_mapping(_mapping(tmp_path, MAPPING.replace("%d/%m/%Y", "%Y-%m-%d")))
    with pytest.raises(ConfigError) as err:
        apply_mapping(pl.read_csv(user_csv), mapping)
    message = str(err.value)
    assert "column 'decl_date'" in message and "'02/01/2025'" in message
    assert "date.format '%Y-%m-%d'" in message and "\n" not in message
    assert "Hint" not in message  # no polars advice in a customs user's error


def test_dates_without_a_format_say_how_to_give_one(tmp_path, user_csv):
    text = MAPPING.replace('{column: decl_date, format: "%d/%m/%Y"}', "decl_date")
    path = _mapping(tmp_path, text)
    with pytest.raises(ConfigError, match=r"format: \"%d/%m/%Y\""):
        load_history(user_csv, path)


def test_hs_codes_keep_their_leading_zeros(tmp_path):
    csv = tmp_path / "zeros.csv"
    csv.write_text(
        "decl_date,result,shipper,hs,value_eur,kg,dest,port,n_items,recovered\n"
        "02/01/2025,SEIZED,A,070310,2.0,1.5,DE,FRA,1,0\n"
        "03/01/2025,NO FINDINGS,B,0402,3.0,0.5,FR,CDG,1,0\n"
    )
    frame = load_history(csv, _mapping(tmp_path, MAPPING))
    assert frame["hs_code"].to_list() == ["070310", "0402"]
    # a Parquet file that stored them as numbers lost the zeros already: HS codes have an even
    # number of digits, so they are restored
    parquet = tmp_path / "zeros.parquet"
    pl.read_csv(csv, schema_overrides={"hs": pl.Int64}).write_parquet(parquet)
    assert load_history(parquet, _mapping(tmp_path, MAPPING))["hs_code"].to_list() == [
        "070310",
        "0402",
    ]


def test_types_say_how_to_read_a_column(tmp_path):
    csv = tmp_path / "numeric_dates.csv"
    csv.write_text(
        "decl_date,result,hs,value_eur,kg\n20250102,SEIZED,640399,2.0,1.5\n"
        "20250103,NO FINDINGS,640399,3.0,0.5\n"
    )
    text = (
        'date: {column: decl_date, format: "%Y%m%d"}\n'
        "label: {column: result, positive: [SEIZED]}\n"
        "columns: {hs_code: hs, value: value_eur, net_mass_kg: kg}\n"
    )
    with pytest.raises(ConfigError, match=r"types: \{decl_date: text\}"):
        load_history(csv, _mapping(tmp_path, text))
    frame = load_history(csv, _mapping(tmp_path, text + "types: {decl_date: text}\n"))
    assert [str(d) for d in frame["date"]] == ["2025-01-02", "2025-01-03"]
    with pytest.raises(ConfigError, match=r"types\.kg: 'integer' is not a type"):
        load_mapping(_mapping(tmp_path, text + "types: {kg: integer}\n"))


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (b"", "the file is empty"),
        (b"a,b\n1,2,3\n", "more fields than the header; check the delimiter"),
        (b"decl_date,hs\n01/01/2025,\xff\xfe\n", "not UTF-8 text"),
        ("decl_date,hs\n01/01/2025,0402\n".encode("utf-16"), "not UTF-8 text"),
    ],
)
def test_an_unreadable_csv_is_one_line_naming_the_file(tmp_path, content, says):
    path = tmp_path / "broken.csv"
    path.write_bytes(content)
    with pytest.raises(ConfigError) as err:
        load_history(path, _mapping(tmp_path, MAPPING))
    assert str(err.value).startswith(f"{path}: ") and says in str(err.value)
    assert "\n" not in str(err.value)


def test_a_file_that_is_not_parquet_says_so(tmp_path):
    path = tmp_path / "history.parquet"
    path.write_text("decl_date,hs\n")
    with pytest.raises(ConfigError, match=r"history\.parquet: not a readable Parquet file"):
        load_history(path, _mapping(tmp_path, MAPPING))


def test_a_history_without_mapping_suggests_one(tmp_path, user_csv):
    with pytest.raises(ConfigError, match="pass --mapping FILE") as err:
        load_history(user_csv)
    assert str(err.value).startswith(str(user_csv))


def test_a_mistyped_column_suggests_the_near_one(tmp_path, user_csv):
    path = _mapping(tmp_path, MAPPING.replace("value: value_eur", "value: value_euro"))
    with pytest.raises(ConfigError, match="did you mean 'value_eur'"):
        load_history(user_csv, path)


def test_text_in_a_number_column_names_the_column(tmp_path, user_csv):
    frame = pl.read_csv(user_csv).with_columns(pl.col("value_eur").cast(pl.String) + ",5")
    frame.write_csv(user_csv)
    with pytest.raises(ConfigError, match=r"column 'value_eur' .* should hold numbers .*'20\.0,5'"):
        load_history(user_csv, _mapping(tmp_path, MAPPING))


def test_labels_other_than_0_and_1_ask_for_the_positive_values(tmp_path, user_csv):
    text = MAPPING.replace("{column: result, positive: [SEIZED, ADJUSTED]}", "result")
    path = _mapping(tmp_path, text)
    with pytest.raises(ConfigError, match=r"other than 0 and 1, e\.g\. 'NO FINDINGS'.*positive"):
        load_history(user_csv, path)


def test_extra_features_must_name_the_filing_field_the_stream_reads(tmp_path, user_csv):
    with pytest.raises(ConfigError, match="'port' has no filing field"):
        check_servable(load_mapping(_mapping(tmp_path, MAPPING)))
    mapping = load_mapping(_mapping(tmp_path, SERVABLE))
    check_servable(mapping)
    assert mapping.extra_filing == {"port": "transport_mode"}
    assert load_history(user_csv, mapping)["port"].to_list() == ["CDG", "FRA", "FRA"]
    with pytest.raises(ConfigError, match=r"'seller\.colour' is not a pre-arrival filing field"):
        load_mapping(_mapping(tmp_path, SERVABLE.replace("transport_mode", "seller.colour")))
    assert {"transport_mode", "seller.country", "platform"} <= set(filing_fields())
    assert not any(f.startswith("items") for f in filing_fields())  # lines are aggregated


def test_empty_dates_are_named_not_guessed(tmp_path, user_csv):
    frame = pl.read_csv(user_csv).with_columns(
        decl_date=pl.when(pl.col("shipper") == "B").then(None).otherwise(pl.col("decl_date"))
    )
    frame.write_csv(user_csv)
    with pytest.raises(ConfigError, match=r"column 'decl_date' .* has 1 empty value"):
        load_history(user_csv, _mapping(tmp_path, MAPPING))


def test_hs_codes_from_a_float_column_are_whole_codes(tmp_path, user_csv):
    parquet = tmp_path / "floats.parquet"
    pl.read_csv(user_csv).with_columns(pl.lit(70310.0).alias("hs")).write_parquet(parquet)
    assert set(load_history(parquet, _mapping(tmp_path, MAPPING))["hs_code"]) == {"070310"}


def test_positive_labels_that_never_occur_are_refused(tmp_path, user_csv):
    text = MAPPING.replace("positive: [SEIZED, ADJUSTED]", "positive: [yes]")
    with pytest.raises(
        ConfigError, match=r"none of \[True\] occurs in column 'result'.*quote values"
    ):
        load_history(user_csv, _mapping(tmp_path, text))


def test_a_numeric_extra_needs_a_numeric_filing_field(tmp_path):
    text = SERVABLE.replace(
        "extra: {categorical: [{column: port, filing: transport_mode}]}",
        "extra: {numeric: [{column: port, filing: seller.country}]}",
    )
    with pytest.raises(ConfigError, match=r"'seller\.country' is string, not a number"):
        load_mapping(_mapping(tmp_path, text))
