import re
import time
from pathlib import Path

import pytest
import yaml
from rapidfuzz import fuzz

from greenlane.streams.domain.vocabulary import PRE_ARRIVAL, PRE_LOADING
from greenlane.streams.settings import ConfigError
from greenlane.streams.stages.watchlists import (
    BRANDS_FILE,
    LISTS_DIR,
    MATCHING_FILE,
    PARTIES_FILE,
    TRUSTED_FILE,
    load_lists,
    match_batch,
)
from tests.factories import item, party, pre_arrival, pre_loading

RATES = {"EUR": 1.0, "USD": 0.5}
SHIPPED_MATCHING = yaml.safe_load((LISTS_DIR / MATCHING_FILE).read_text(encoding="utf-8"))

STAR = {
    "id": "S-0042",
    "name": "Shenzhen Bright Star Trading Co Ltd",
    "country": "CN",
    "why": "seizures of counterfeit trainers",
    "weight": 30,
}
NIKE = {
    "id": "IPR-0001",
    "brand": "Nike",
    "aliases": ["Air Jordan"],
    "right_holder": "Nike Innovate C.V.",
    "hs_chapters": ["61", "64"],
    "min_unit_value": 25,
}
ADIDAS = {"id": "IPR-0002", "brand": "Adidas", "right_holder": "adidas AG", "weight": 22}
APPLE = {
    "id": "IPR-0003",
    "brand": "Apple",
    "right_holder": "Apple Inc.",
    "hs_chapters": ["84", "85"],
    "ambiguous": True,
}
SWATCH = {"id": "IPR-0004", "brand": "Swatch", "right_holder": "Swatch AG"}


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for key, value in over.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) else value
    return out


def write_lists(folder: Path, parties=(), brands=(), trusted=None, matching=None) -> Path:
    """A list folder: the shipped matching.yaml (with overrides) and the given entries."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {
        MATCHING_FILE: _merge(SHIPPED_MATCHING, matching or {}),
        PARTIES_FILE: {"version": "t1", "entries": list(parties)},
        BRANDS_FILE: {"version": "t1", "entries": list(brands)},
        TRUSTED_FILE: {"version": "t1", **(trusted or {})},
    }
    for name, data in files.items():
        (folder / name).write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return folder


def lists_of(tmp_path: Path, **kw):
    return load_lists(write_lists(tmp_path / "lists", **kw), rates=RATES, reference_currency="EUR")


def reasons_for(record: dict, lists, stage: str = PRE_ARRIVAL) -> list[dict]:
    [reasons] = match_batch([record], stage, lists)
    return reasons


NOBODY = party("Jan Kowalski", "PL")  # on no list


def seller(name: str, country: str = "CN", **over) -> dict:
    """A declaration from this seller to a consignee on no list (unless ``over`` says)."""
    return pre_arrival(**{"seller": party(name, country), "consignee": NOBODY, **over})


# ---------------------------------------------------------------------------- normalisation


@pytest.fixture(scope="module")
def shipped():
    return load_lists(rates=RATES, reference_currency="EUR")


@pytest.mark.parametrize(
    "a, b",
    [
        ("Shenzhen Bright Star Trading Co., Ltd.", "SHENZHEN BRIGHT STAR TRADING COMPANY LIMITED"),
        ("Shenzhen Bright Star Trading Co.,Ltd", "shenzhen  bright-star trading"),
        ("Y\u0131ld\u0131z El Sanatlar\u0131 San. ve Tic. Ltd. Şti.", "Yildiz El Sanatlari"),
        ("Müller & Söhne GmbH", "Muller and Sohne"),
        ("O'Brien Imports LLC", "OBrien Imports"),
        ("Schmidt, Anna", "Anna Schmidt"),
    ],
)
def test_spelling_variants_of_a_name_normalise_alike(shipped, a, b):
    norm = shipped.normaliser
    assert norm.name_key(a) == norm.name_key(b)


def test_legal_forms_only_go_from_the_end_and_never_leave_nothing(shipped):
    norm = shipped.normaliser
    assert norm.name_words("Co-op Supplies Ltd") == ["co", "op", "supplies"]
    assert norm.name_words("Limited") == ["limited"]
    assert norm.name_words("Ltd Co") == ["ltd"]


def test_address_key_keeps_numbers_apart_and_abbreviates_words(shipped):
    norm = shipped.normaliser
    assert norm.address_key("Hauptstraße 12, 10115 Berlin") == norm.address_key(
        "hauptstr. 12 , 10115 BERLIN"
    )
    assert norm.address_key("No. 148 Jinqiao Road, Guangzhou 510000") == (
        ("148", "510000"),
        "guangzhou jinqiao no rd",
    )
    assert norm.address_key("246 Station Road, London SW1A 2AA")[0] == ("246", "2aa", "sw1a")


# ---------------------------------------------------------------------------- party watchlist


def test_exact_name_hit_explains_itself_and_stays_internal(tmp_path):
    lists = lists_of(tmp_path, parties=[STAR])
    [reason] = reasons_for(seller("Shenzhen Bright Star Trading Co., Ltd."), lists)
    assert reason == {
        "code": "W_PARTY_WATCHLIST",
        "description": SHIPPED_MATCHING["parties"]["description"],
        "contribution": 30.0,
        "evidence": "seller 'Shenzhen Bright Star Trading Co., Ltd.' ~ watchlist S-0042 "
        "'Shenzhen Bright Star Trading Co Ltd' (similarity 100)",
        "carrier_visible": False,
    }
    assert STAR["why"] not in reason["evidence"]


def test_misspelled_name_is_a_fuzzy_hit_with_its_similarity(tmp_path):
    lists = lists_of(tmp_path, parties=[STAR])
    [reason] = reasons_for(seller("Shenzen Bright Star Trading"), lists)
    similarity = round(
        fuzz.token_sort_ratio("shenzen bright star trading", "shenzhen bright star trading")
    )
    assert similarity >= 90
    assert reason["evidence"] == (
        "seller 'Shenzen Bright Star Trading' ~ watchlist S-0042 "
        f"'Shenzhen Bright Star Trading Co Ltd' (similarity {similarity})"
    )


def test_misspelled_first_word_and_swapped_words_are_still_found(tmp_path):
    lists = lists_of(tmp_path, parties=[STAR, {**STAR, "id": "P-1", "name": "Anna Schmidt"}])
    assert reasons_for(seller("Bright Star Shenzhen Tradng"), lists)
    assert reasons_for(seller("Schmidt Anna"), lists)


def test_threshold_decides_near_misses(tmp_path):
    # One word short of the listed name: the similarity sits between 80 and 90.
    query = "Shenzhen Star Trading Co., Ltd."
    score = fuzz.ratio("shenzhen star trading", "bright shenzhen star trading")
    assert 80 < score < 90
    strict = lists_of(tmp_path / "a", parties=[STAR])
    assert reasons_for(seller(query), strict) == []
    below = lists_of(
        tmp_path / "b", parties=[STAR], matching={"parties": {"name_threshold": int(score)}}
    )
    [reason] = reasons_for(seller(query), below)
    assert f"(similarity {round(score)})" in reason["evidence"]
    just_above = lists_of(
        tmp_path / "c", parties=[STAR], matching={"parties": {"name_threshold": int(score) + 1}}
    )
    assert reasons_for(seller(query), just_above) == []


def test_names_alike_only_in_generic_words_do_not_match(tmp_path):
    listed = {**STAR, "name": "Xiangyu Electronic Technology Co., Ltd."}
    lists = lists_of(tmp_path, parties=[listed])
    query = "Tianyi Electronic Technology Co., Ltd."
    assert (
        fuzz.token_sort_ratio("tianyi electronic technology", "xiangyu electronic technology") >= 90
    )
    assert reasons_for(seller(query), lists) == []
    # A misspelled generic word does not hide a real hit.
    listed = {**STAR, "id": "S-2", "name": "Huaxin Suply Chain Company Limited"}
    lists = lists_of(tmp_path / "b", parties=[listed])
    assert reasons_for(seller("Huaxin Supply Chain Co., Ltd."), lists)


def test_short_names_match_only_exactly(tmp_path):
    lists = lists_of(tmp_path, parties=[{**STAR, "name": "Koda"}])
    assert reasons_for(seller("Koda"), lists)
    assert reasons_for(seller("Kodak"), lists) == []


def test_country_and_roles_restrict_an_entry(tmp_path):
    lists = lists_of(
        tmp_path,
        parties=[
            STAR,
            {**STAR, "id": "C-1", "name": "Anna Schmidt", "country": None, "roles": ["consignee"]},
        ],
    )
    assert reasons_for(seller("Shenzhen Bright Star Trading", "HK"), lists) == []
    assert reasons_for(seller("Anna Schmidt", "DE"), lists) == []
    record = seller("Nobody Special", consignee=party("Anna Schmidt", "DE"))
    [reason] = reasons_for(record, lists)
    assert reason["evidence"].startswith("consignee 'Anna Schmidt' ~ watchlist C-1")


def test_pre_loading_shipper_is_matched_as_shipper(tmp_path):
    lists = lists_of(tmp_path, parties=[STAR])
    record = pre_loading(shipper=party("Shenzhen Bright Star Trading Co., Ltd.", "CN"))
    [reason] = reasons_for(record, lists, PRE_LOADING)
    assert reason["evidence"].startswith("shipper 'Shenzhen Bright Star Trading Co., Ltd.'")
    sellers_only = lists_of(tmp_path / "b", parties=[{**STAR, "roles": ["seller"]}])
    assert reasons_for(record, sellers_only, PRE_LOADING) == []


DROP = {
    "id": "A-7",
    "address": "Industriestraße 88, 12529 Berlin",
    "country": "DE",
    "roles": ["consignee"],
    "why": "drop address",
    "weight": 20,
}


@pytest.mark.parametrize(
    "address, hit",
    [
        ("Industriestr. 88, 12529 Berlin", True),
        ("INDUSTRIESTRASSE 88 12529 BERLIN", True),
        ("Industriestrase 88, 12529 Berlin", True),  # typo in a word
        ("Industriestraße 88, Hinterhaus, 12529 Berlin-Schönefeld", False),  # too different
        ("Industriestraße 89, 12529 Berlin", False),  # the next door
        ("Industriestraße 88, Berlin", False),  # listed postcode missing
        ("Industriestraße 88/3, 12529 Berlin", True),  # an extra number is fine
    ],
)
def test_address_matches_need_every_listed_number(tmp_path, address, hit):
    lists = lists_of(tmp_path, parties=[DROP])
    record = pre_arrival(consignee=party("Lena Wolf", "DE", address=address))
    reasons = reasons_for(record, lists)
    assert bool(reasons) is hit
    if hit:
        assert reasons[0]["evidence"].startswith(f"consignee address '{address}' ~ watchlist A-7")


def test_require_both_needs_name_and_address(tmp_path):
    mule = {**DROP, "id": "C-9", "name": "Lena Wolf", "require_both": True}
    lists = lists_of(tmp_path, parties=[mule])
    same_name = pre_arrival(consignee=party("Lena Wolf", "DE"))
    assert reasons_for(same_name, lists) == []
    both = pre_arrival(consignee=party("Wolf, Lena", "DE", address="Industriestr 88, 12529 Berlin"))
    [reason] = reasons_for(both, lists)
    assert "similarity 100" in reason["evidence"]
    assert "address 'Industriestr 88, 12529 Berlin' ~ watchlist C-9" in reason["evidence"]


def test_strongest_entry_gives_the_reason_and_names_the_others(tmp_path):
    weak = {**STAR, "id": "S-1", "weight": 10}
    strong = {**STAR, "id": "S-2", "weight": 40, "country": None}
    lists = lists_of(tmp_path, parties=[weak, strong])
    [reason] = reasons_for(seller("Shenzhen Bright Star Trading"), lists)
    assert reason["contribution"] == 40.0
    assert "watchlist S-2" in reason["evidence"] and reason["evidence"].endswith("; also S-1")


# ---------------------------------------------------------------------------- IPR brands


def goods(description: str, **over) -> dict:
    return pre_arrival(items=[item(description=description, **over)])


def test_brand_as_a_whole_word_is_an_internal_ipr_reason(tmp_path):
    lists = lists_of(tmp_path, brands=[NIKE])
    record = goods("Nike running shoes", hs_code="640411", value=120.0, quantity=2)
    [reason] = reasons_for(record, lists)
    assert reason["code"] == "W_IPR_BRAND" and reason["carrier_visible"] is False
    assert reason["contribution"] == SHIPPED_MATCHING["ipr"]["default_weight"]
    assert reason["evidence"] == (
        "item 1 'Nike running shoes' names 'nike' ~ brand IPR-0001 'Nike' (similarity 100, "
        "right holder Nike Innovate C.V.); 60.00 EUR per unit, 240.00 EUR per kg"
    )
    assert reasons_for(goods("Nikelodeon style shoes", hs_code="640411"), lists) == []
    [alias] = reasons_for(goods("AIR-JORDAN 1 retro", hs_code="640411", value=200.0), lists)
    assert "names 'air jordan'" in alias["evidence"]


def test_cheap_branded_goods_add_the_price_reason(tmp_path):
    lists = lists_of(tmp_path, brands=[NIKE])
    record = goods("Nike Air Max sneakers", hs_code="640411", value=9.0, quantity=3, currency="USD")
    price, brand = reasons_for(record, lists)  # largest contribution first
    assert (price["code"], price["contribution"], price["carrier_visible"]) == (
        "W_IPR_BRAND_PRICE",
        SHIPPED_MATCHING["ipr"]["price"]["weight"],
        False,
    )
    assert price["evidence"] == "item 1: 1.50 EUR per unit for IPR-0001 'Nike', genuine from 25 EUR"
    assert "1.50 EUR per unit" in brand["evidence"]


def test_misspelled_brand_is_a_fuzzy_hit_but_ordinary_words_are_not(tmp_path):
    lists = lists_of(tmp_path, brands=[ADIDAS, SWATCH])
    [reason] = reasons_for(goods("Addidas track jacket", hs_code="620140"), lists)
    assert "names 'addidas' ~ brand IPR-0002 'Adidas' (similarity 92" in reason["evidence"]
    assert reason["contribution"] == 22.0
    assert reasons_for(goods("Digital sports watch", hs_code="910212"), lists) == []
    assert reasons_for(goods("Swatch sports watch", hs_code="910212"), lists)


def test_brand_outside_its_chapters_and_ambiguous_brands(tmp_path):
    lists = lists_of(tmp_path, brands=[NIKE, APPLE])
    assert reasons_for(goods("Nike poster", hs_code="491199"), lists) == []
    assert reasons_for(goods("Dried apple rings", hs_code="081330"), lists) == []
    assert reasons_for(goods("Apple charger 20W", hs_code="850440"), lists)
    # Without an HS code an ambiguous brand says nothing, a plain one still counts.
    assert (
        reasons_for(pre_loading(cargo_description="apple pie", hs_code=None), lists, PRE_LOADING)
        == []
    )
    [reason] = reasons_for(
        pre_loading(cargo_description="nike shoes", hs_code=None), lists, PRE_LOADING
    )
    assert reason["evidence"].startswith("cargo description 'nike shoes' names 'nike'")


# ---------------------------------------------------------------------------- trusted operators

TRUSTED = {
    "aeo_carriers": [{"id": "AEO-1", "carrier_id": "EXPRESS-01", "reference": "DEAEOF0001"}],
    "accredited_platforms": [{"id": "PLT-1", "platform": "ShopFast", "aliases": ["shopfast.eu"]}],
    "trusted_sellers": [
        {"id": "TS-1", "party_id": "SELLER-88"},
        {"id": "TS-2", "name": "Northgate Retail Ltd", "country": "GB"},
    ],
}
WEIGHTS = {k: SHIPPED_MATCHING["trusted"][k]["weight"] for k in TRUSTED}


def test_trusted_operators_lower_the_score_visibly(tmp_path):
    lists = lists_of(tmp_path, trusted=TRUSTED, matching={"trusted": {"floor": -100}})
    reasons = reasons_for(pre_arrival(), lists)  # factory: EXPRESS-01, ShopFast, SELLER-88
    assert {r["code"]: r["contribution"] for r in reasons} == {
        "T_AEO_CARRIER": WEIGHTS["aeo_carriers"],
        "T_ACCREDITED_PLATFORM": WEIGHTS["accredited_platforms"],
        "T_TRUSTED_SELLER": WEIGHTS["trusted_sellers"],
    }
    assert all(r["contribution"] < 0 and r["carrier_visible"] for r in reasons)
    aeo = next(r for r in reasons if r["code"] == "T_AEO_CARRIER")
    assert aeo["evidence"] == "carrier EXPRESS-01 is listed as AEO-1 (DEAEOF0001)"


def test_trust_total_is_capped_at_the_floor(tmp_path):
    lists = lists_of(tmp_path, trusted=TRUSTED, matching={"trusted": {"floor": -12}})
    reasons = reasons_for(pre_arrival(), lists)
    assert sum(r["contribution"] for r in reasons) == -12
    capped = [r for r in reasons if "trust capped at -12 in total" in r["evidence"]]
    assert [r["code"] for r in capped] == ["T_ACCREDITED_PLATFORM"]


def test_trust_needs_an_exact_match(tmp_path):
    lists = lists_of(tmp_path, trusted=TRUSTED, matching={"trusted": {"floor": -100}})
    by_name = pre_arrival(
        seller=party("NORTHGATE RETAIL LIMITED", "GB"), platform="shopfast.eu", carrier_id="other"
    )
    assert [r["code"] for r in reasons_for(by_name, lists)] == [
        "T_ACCREDITED_PLATFORM",
        "T_TRUSTED_SELLER",
    ]
    look_alike = pre_arrival(
        seller=party("Northgate Retail Ltd", "CN"), platform="ShopFast2", carrier_id="EXPRESS-02"
    )
    assert reasons_for(look_alike, lists) == []
    typo = pre_arrival(seller=party("Northgte Retail Ltd", "GB"), platform=None, carrier_id="x")
    assert reasons_for(typo, lists) == []


def test_reasons_come_largest_first_and_risk_and_trust_add_up(tmp_path):
    lists = lists_of(tmp_path, parties=[STAR], brands=[NIKE], trusted=TRUSTED)
    record = pre_arrival(items=[item(description="Nike shoes", hs_code="640411", value=5.0)])
    reasons = reasons_for(record, lists)
    contributions = [r["contribution"] for r in reasons]
    assert contributions == sorted(contributions, reverse=True)
    assert [r["code"] for r in reasons][:3] == [
        "W_PARTY_WATCHLIST",
        "W_IPR_BRAND_PRICE",
        "W_IPR_BRAND",
    ]
    assert sum(c for c in contributions if c < 0) == SHIPPED_MATCHING["trusted"]["floor"]


def test_a_batch_gives_one_list_per_record(tmp_path):
    lists = lists_of(tmp_path, parties=[STAR])
    records = [
        seller("Nobody Special"),
        seller("Shenzhen Bright Star Trading"),
        pre_arrival(seller=party("Someone Else", "CN")),
    ]
    assert [len(r) for r in match_batch(records, PRE_ARRIVAL, lists)] == [0, 1, 0]
    assert match_batch([], PRE_ARRIVAL, lists) == []


# ---------------------------------------------------------------------------- configuration


@pytest.mark.parametrize(
    "kw, message",
    [
        (
            {"parties": [{**STAR, "colour": "red"}]},
            r"watchlist_parties.yaml: entries\[0\] \(S-0042\): unknown field\(s\) \['colour'\]",
        ),
        (
            {"parties": [{**STAR, "weight": "high"}]},
            r"entries\[0\] \(S-0042\)\.weight: expected a number",
        ),
        (
            {"parties": [{"id": "X-1", "why": "w", "weight": 1}]},
            r"entries\[0\] \(X-1\): needs a name, an address or both",
        ),
        (
            {"parties": [{**STAR, "country": "China"}]},
            r"\(S-0042\)\.country: expected an ISO 3166-1 alpha-2",
        ),
        ({"parties": [{**STAR, "roles": ["buyer"]}]}, r"\(S-0042\)\.roles: expected some of"),
        ({"parties": [STAR, STAR]}, r"watchlist_parties.yaml: duplicate entry id 'S-0042'"),
        (
            {"parties": [{**DROP, "address": "Industriestraße, Berlin"}]},
            r"entry A-7\.address: .* has no house number or postcode",
        ),
        (
            {"parties": [{**STAR, "require_both": True}]},
            r"\(S-0042\)\.require_both: needs both a name and an address",
        ),
        (
            {"brands": [{**NIKE, "hs_chapters": ["6404"]}]},
            r"ipr_brands.yaml: entries\[0\] \(IPR-0001\)\.hs_chapters: '6404' is not an HS chapter",
        ),
        (
            {"brands": [NIKE, {**ADIDAS, "aliases": ["NIKE"]}]},
            r"brand IPR-0002: 'NIKE' is also brand IPR-0001",
        ),
        (
            {"brands": [{**APPLE, "hs_chapters": []}]},
            r"\(IPR-0003\)\.ambiguous: an ambiguous brand needs hs_chapters",
        ),
        (
            {"trusted": {"aeo_carriers": [{"id": "A", "carrier_id": "X", "weight": 5}]}},
            r"trusted_operators.yaml: aeo_carriers\[0\] \(A\)\.weight: 5 is outside",
        ),
        (
            {"trusted": {"trusted_sellers": [{"id": "T"}]}},
            r"trusted_sellers\[0\] \(T\): needs a party_id, a name or both",
        ),
        (
            {"matching": {"parties": {"name_threshold": 120}}},
            r"matching.yaml\.parties\.name_threshold: 120 is outside",
        ),
        (
            {"matching": {"trusted": {"aeo_carriers": {"weight": 10}}}},
            r"matching.yaml\.trusted\.aeo_carriers\.weight: trust lowers risk",
        ),
    ],
)
def test_configuration_errors_name_file_entry_and_field(tmp_path, kw, message):
    with pytest.raises(ConfigError, match=message):
        lists_of(tmp_path, **kw)


def test_missing_file_and_bad_yaml_are_config_errors(tmp_path):
    folder = write_lists(tmp_path / "lists")
    (folder / BRANDS_FILE).write_text("entries: [unclosed", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"ipr_brands.yaml: not valid YAML"):
        load_lists(folder, rates=RATES, reference_currency="EUR")
    (folder / BRANDS_FILE).unlink()
    with pytest.raises(ConfigError, match=r"ipr_brands.yaml: list file not found"):
        load_lists(folder, rates=RATES, reference_currency="EUR")
    write_lists(folder)  # all files back, then one without its version
    (folder / TRUSTED_FILE).write_text("aeo_carriers: []\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"trusted_operators.yaml.version: expected a non-empty"):
        load_lists(folder, rates=RATES, reference_currency="EUR")


# ---------------------------------------------------------------------------- shipped lists


def simulated(count: int, seed: int = 7, **world) -> dict[str, list[dict]]:
    from greenlane.streams.devtools.simulator import generate

    out = {PRE_LOADING: [], PRE_ARRIVAL: []}
    for f in generate(count, seed=seed, start_ms=1_795_000_000_000, **world):
        if f.value is not None:
            out[PRE_LOADING if f.role == "pre_loading" else PRE_ARRIVAL].append(f.value)
    return out


@pytest.fixture(scope="module")
def traffic():
    return simulated(20_000, fraud_rate=0.0)  # honest traders only


def test_shipped_lists_load_with_realistic_sizes(shipped):
    assert len(shipped.parties) >= 500 and len(shipped.brands) >= 100
    assert len(shipped.sellers_by_id) + len(shipped.sellers_by_name) >= 200
    assert set(shipped.versions) == {MATCHING_FILE, PARTIES_FILE, BRANDS_FILE, TRUSTED_FILE}


def test_simulator_traffic_hits_the_watchlist_and_honest_goods_no_brand(shipped, traffic):
    """`make run` shows watchlist hits (the demo entries, and the watchlisted names risky
    sellers of the world trade under), and honest goods raise no IPR false alarm."""
    ids: set[str] = set()
    codes: set[str] = set()
    for stage, records in traffic.items():
        for reasons in match_batch(records, stage, shipped):
            for r in reasons:
                codes.add(r["code"])
                if r["code"] == "W_PARTY_WATCHLIST":
                    ids.update(re.findall(r"watchlist (\S+)", r["evidence"]))
    assert any(i.startswith("W-") for i in ids) and any(i.startswith("S-") for i in ids), ids
    assert "W_IPR_BRAND" not in codes
    assert {"T_AEO_CARRIER", "T_ACCREDITED_PLATFORM", "T_TRUSTED_SELLER"} <= codes


def test_in_the_simulated_world_brands_and_watchlisted_names_mark_fraud(shipped):
    """Counterfeits carry protected brands; risky sellers trade under watchlisted names."""
    from greenlane.streams.devtools.simulator import generate

    filings = [
        f
        for f in generate(30_000, seed=8, start_ms=1_795_000_000_000)
        if f.truth is not None and f.role == "pre_arrival"
    ]
    reasons = match_batch([f.value for f in filings], PRE_ARRIVAL, shipped)
    ipr = [f.truth for f, rs in zip(filings, reasons, strict=True) if _codes(rs) & {"W_IPR_BRAND"}]
    assert len(ipr) > 20 and all(t.mechanism == "counterfeit" for t in ipr)
    listed = [
        f.truth for f, rs in zip(filings, reasons, strict=True) if "W_PARTY_WATCHLIST" in _codes(rs)
    ]
    fraud_rate = sum(f.truth.fraud for f in filings) / len(filings)
    assert listed and sum(t.fraud for t in listed) / len(listed) > 3 * fraud_rate


def _codes(reasons) -> set[str]:
    return {r["code"] for r in reasons}


def test_speed_on_20000_filings(traffic):
    """Cold caches (every distinct name, address and description matched once), then warm."""
    lists = load_lists(rates=RATES, reference_currency="EUR")
    n = sum(len(r) for r in traffic.values())
    timings = []
    for _ in range(2):
        start = time.perf_counter()
        for stage, records in traffic.items():
            match_batch(records, stage, lists)
        timings.append((time.perf_counter() - start) / n * 1e6)
    cold, warm = timings
    print(f"\nlists: {cold:.1f} us/record cold, {warm:.1f} us/record warm ({n} records)")
    assert cold < 250 and warm < 100


def test_speed_with_a_10000_entry_watchlist(tmp_path, traffic):
    """Blocking keeps a name's fuzzy comparisons to a few candidates even on a long list."""
    import random

    rng = random.Random(3)
    syllables = "an bao chen da fu gao hai jin kai li long ming nan qi rui tai wei xin yang zhi"
    trades = ["Trading", "Technology", "Apparel", "Toys", "Cosmetics", "Bags", "Digital"]
    names = sorted(
        {
            f"{rng.choice(syllables.split())}{rng.choice(syllables.split())} "
            f"{rng.choice(trades)} {rng.choice(['Co., Ltd.', 'Limited', 'LLC'])} {n % 97}"
            for n in range(10_500)
        }
    )[:10_000]
    parties = [
        {
            "id": f"B-{i}",
            "name": name,
            "address": f"No. {i} Renmin Road, Yiwu {322000 + i % 9}",
            "why": "bulk",
            "weight": 20,
        }
        for i, name in enumerate(names)
    ]
    lists = lists_of(tmp_path, parties=parties, brands=[NIKE, ADIDAS])
    n = sum(len(r) for r in traffic.values())
    start = time.perf_counter()
    for stage, records in traffic.items():
        match_batch(records, stage, lists)
    cold = (time.perf_counter() - start) / n * 1e6
    print(f"\n10,000-entry watchlist: {cold:.1f} us/record cold ({n} records)")
    assert cold < 300
