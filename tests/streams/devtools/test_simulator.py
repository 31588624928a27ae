"""Tests of the carrier simulator: reproducible, realistic, with the shares it promises.

Risk signals are re-derived here straight from the targeting profiles and quality.toml (not
through the simulator's own loader), so a simulator that drifted from the rules would fail.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import struct
import time
import tomllib
import uuid
from collections import Counter, defaultdict
from pathlib import Path

import pytest
import yaml
from fastavro import parse_schema
from fastavro.validation import validate

from greenlane.streams.devtools.fraud import MECHANISMS
from greenlane.streams.devtools.simulator import (
    INVALID_KINDS,
    ROLES,
    CarrierSimulator,
    SimulatedFiling,
    generate,
    load_catalogue,
)
from greenlane.streams.settings import SETTINGS_DIR, ConfigError, load_settings, schema_path

START_MS = 1_800_000_000_000
HS_CSV = Path("/work/shared/data/hs2022/harmonized-system.csv")
PACKAGED_HS = Path(__file__).resolve().parents[3] / "streams" / "reference" / "hs2022.csv"


def _traffic(count: int, seed: int = 11, **kwargs) -> list[SimulatedFiling]:
    return list(generate(count, seed=seed, start_ms=START_MS, **kwargs))


@pytest.fixture(scope="module")
def traffic() -> list[SimulatedFiling]:
    return _traffic(6000, risky_share=0.1, invalid_share=0.03)


@pytest.fixture(scope="module")
def risk() -> dict:
    """The risk lists, read independently of greenlane.streams.devtools.simulator."""
    folder = SETTINGS_DIR / "targeting"
    lists = yaml.safe_load((folder / "lists.yaml").read_text(encoding="utf-8"))
    quality = tomllib.loads((SETTINGS_DIR / "quality.toml").read_text(encoding="utf-8"))
    out = {"prefixes": [], "keywords": [], "origins": set(), "routes": set(), "vpk_below": 0.0}
    for path in sorted((folder / "profiles").glob("*.yaml")):
        for rule in yaml.safe_load(path.read_text(encoding="utf-8"))["rules"]:
            when = rule["when"]
            if len(when) > 1 or not (rule.get("weight") or rule.get("force")):
                continue
            out["prefixes"] += when.get("goods", {}).get("hs_prefix", [])
            out["keywords"] += when.get("goods", {}).get("keywords", [])
            out["vpk_below"] = max(out["vpk_below"], when.get("value_per_kg_below", 0.0))
            listed = when.get("in_list", {})
            if listed.get("field") in ("origin", "route"):
                out[listed["field"] + "s"] |= set(lists[listed["list"]])
    out["vague_terms"] = {t.lower() for t in quality["vague_description_terms"]}
    out["vague_names"] = {n.lower() for n in quality["vague_party_names"]}
    out["rates"] = quality["reference_rates"]
    out["grace_ms"] = quality["late_filing_grace_minutes"] * 60_000
    return out


def _signals_seen(filing: SimulatedFiling, risk: dict) -> set[str]:
    """Which targeting/quality risk signals a filing shows."""
    v = filing.value
    seen = set()
    if filing.role == "pre_loading":
        texts = [v["cargo_description"]]
        codes = [v["hs_code"]] if v["hs_code"] else []
        origins = {v["shipper"]["country"], v["origin_country"]}
        parties = [v["shipper"], v["consignee"]]
        if set(v["route"]) & risk["routes"]:
            seen.add("route")
        if v["filing_time"] > v["planned_loading_time"] + risk["grace_ms"]:
            seen.add("late")
    else:
        texts = [i["description"] for i in v["items"]]
        codes = [i["hs_code"] for i in v["items"]]
        origins = {v["seller"]["country"]} | {i["origin_country"] for i in v["items"]}
        parties = [v["seller"], v["consignee"]]
        value = sum(i["value"] * risk["rates"][i["currency"]] for i in v["items"])
        if value / sum(i["net_weight_kg"] for i in v["items"]) < risk["vpk_below"]:
            seen.add("undervaluation")
        if v["filing_time"] > v["expected_arrival_time"] + risk["grace_ms"]:
            seen.add("late")
    keywords = re.compile(
        r"(?<!\w)(" + "|".join(map(re.escape, risk["keywords"])) + r")(?!\w)", re.IGNORECASE
    )
    if any(c.startswith(tuple(risk["prefixes"])) for c in codes) or any(
        keywords.search(t) for t in texts
    ):
        seen.add("goods")
    if origins & risk["origins"]:
        seen.add("origin")
    for text in texts:
        rest = text.lower()
        for term in sorted(risk["vague_terms"], key=len, reverse=True):
            rest = re.sub(rf"(?<!\w){re.escape(term)}(?!\w)", " ", rest)
        if not re.search(r"[^\W\d_]", rest):
            seen.add("vague_description")
    if any(p["name"].lower() in risk["vague_names"] for p in parties):
        seen.add("vague_party")
    return seen


def _valid(traffic: list[SimulatedFiling]) -> list[SimulatedFiling]:
    return [f for f in traffic if f.kind in ("clean", "risky")]


# -- reproducibility ------------------------------------------------------------------------


def test_same_arguments_give_the_same_sequence():
    assert _traffic(800, seed=3) == _traffic(800, seed=3)


def test_another_seed_gives_other_traffic():
    a, b = _traffic(300, seed=3), _traffic(300, seed=4)
    assert [f.key for f in a] != [f.key for f in b]
    assert len({f.key for f in a} & {f.key for f in b}) < 10


def test_count_counts_messages_not_consignments():
    assert len(_traffic(1234)) == 1234
    assert _traffic(0) == []


def test_start_ms_sets_event_time():
    first = next(f for f in _traffic(5) if f.value is not None)
    assert START_MS <= first.value["filing_time"] < START_MS + 60_000


# -- shares ---------------------------------------------------------------------------------


def test_invalid_share_close_to_configured_and_split_equally(traffic):
    kinds = Counter(f.kind for f in traffic)
    invalid = sum(kinds[k] for k in INVALID_KINDS)
    assert 0.02 <= invalid / len(traffic) <= 0.04
    for kind in INVALID_KINDS:
        assert 0.2 <= kinds[kind] / invalid <= 0.47, kinds


def test_risky_share_close_to_configured(traffic):
    valid = _valid(traffic)
    risky = sum(f.kind == "risky" for f in valid)
    assert 0.08 <= risky / len(valid) <= 0.12


def test_no_risk_or_invalid_when_shares_are_zero():
    traffic = _traffic(2000, risky_share=0.0, invalid_share=0.0, fraud_rate=0.0)
    assert Counter(f.kind for f in traffic) == {"clean": 2000}
    assert not any(f.truth.fraud for f in traffic)


# -- the world's fraud (ground truth) ----------------------------------------------------------


def test_every_valid_filing_carries_its_consignments_truth(traffic):
    valid = _valid(traffic)
    assert all(f.truth is not None for f in valid)
    assert all(f.truth is None for f in traffic if f.kind not in ("clean", "risky"))
    by_waybill = defaultdict(set)
    for f in valid:
        by_waybill[f.key].add(f.truth)
    assert all(len(truths) == 1 for truths in by_waybill.values())  # both filings agree
    assert not any("truth" in json.dumps(f.value) or "mechanism" in f.value for f in valid)


def test_fraud_follows_the_world(traffic):
    declarations = [f for f in _valid(traffic) if f.role == "pre_arrival"]
    truths = [f.truth for f in declarations]
    rate = sum(t.fraud for t in truths) / len(truths)
    assert 0.02 < rate < 0.12
    mechanisms = Counter(t.mechanism for t in truths if t.fraud)
    assert set(mechanisms) == set(MECHANISMS), mechanisms
    hidden = sum(t.hidden for t in truths if t.fraud) / sum(mechanisms.values())
    assert 0.03 < hidden < 0.4  # some fraud leaves no trace in the data, as real fraud does
    # consignments showing a targeting signal are fraudulent more often than the others
    risky = [f.truth.fraud for f in declarations if f.kind == "risky"]
    clean = [f.truth.fraud for f in declarations if f.kind == "clean"]
    assert sum(risky) / len(risky) > 3 * sum(clean) / len(clean)


def test_a_split_shipment_is_several_parcels_from_one_seller_to_one_buyer(traffic):
    parts = defaultdict(list)
    for f in _valid(traffic):
        if f.role == "pre_arrival" and f.truth.mechanism == "split_shipment":
            parts[f.truth.group].append(f.value)
    groups = [v for v in parts.values() if len(v) > 1]
    assert groups
    for group in groups:
        assert len({(r["seller"]["name"], r["consignee"]["name"]) for r in group}) == 1
        assert len({r["house_waybill"] for r in group}) == len(group)


def test_every_run_meets_the_same_sellers():
    def sellers(seed: int) -> set[str]:
        traffic = _traffic(3000, seed=seed)
        return {f.value["seller"]["name"] for f in traffic if f.truth and f.role == "pre_arrival"}

    first, second = sellers(1), sellers(2)
    assert len(first & second) > 0.5 * min(len(first), len(second))


# -- ordering and timing ----------------------------------------------------------------------


def test_most_pre_loading_filings_precede_their_pre_arrival(traffic):
    order = defaultdict(list)
    for f in _valid(traffic):
        order[f.key].append(f.role)
    pairs = [roles for roles in order.values() if len(roles) == 2]
    assert all(sorted(roles) == sorted(ROLES) for roles in pairs)
    first = Counter(roles[0] for roles in pairs)
    assert first["pre_loading"] / len(pairs) >= 0.9
    assert first["pre_arrival"] > 0  # a few arrive the other way round
    assert all(len(roles) <= 2 for roles in order.values())  # waybills are unique


def test_other_consignments_come_between_the_two_filings(traffic):
    position = defaultdict(list)
    for i, f in enumerate(traffic):
        if f.kind in ("clean", "risky"):
            position[f.key].append(i)
    gaps = [p[1] - p[0] for p in position.values() if len(p) == 2]
    assert min(gaps) >= 2
    assert sum(g > 2 for g in gaps) / len(gaps) > 0.5


def test_only_air_consignments_file_pre_loading(traffic):
    roles = defaultdict(set)
    modes = {}
    for f in _valid(traffic):
        roles[f.key].add(f.role)
        if f.role == "pre_arrival":
            modes[f.key] = f.value["transport_mode"]
    assert Counter(modes.values())["AIR"] / len(modes) >= 0.85
    assert any(m != "AIR" for m in modes.values())
    for key, mode in modes.items():
        if mode != "AIR":
            assert roles[key] == {"pre_arrival"}


def test_clean_filings_are_on_time_and_in_sequence(traffic):
    loading, arrival, filed = {}, {}, defaultdict(dict)
    for f in traffic:
        if f.kind != "clean":
            continue
        v = f.value
        filed[f.key][f.role] = v["filing_time"]
        if f.role == "pre_loading":
            assert v["filing_time"] < v["planned_loading_time"]
            loading[f.key] = v["planned_loading_time"]
        else:
            assert v["filing_time"] < v["expected_arrival_time"]
            arrival[f.key] = v["expected_arrival_time"]
    for key in loading.keys() & arrival.keys():
        assert loading[key] < arrival[key]
    both = [t for t in filed.values() if len(t) == 2]
    later = sum(t["pre_arrival"] > t["pre_loading"] for t in both)
    assert later / len(both) >= 0.9


# -- validity and realism ---------------------------------------------------------------------


def test_every_decodable_value_validates_against_its_schema(traffic):
    schemas = {
        role: parse_schema(json.loads(schema_path(role).read_text(encoding="utf-8")))
        for role in ROLES
    }
    decodable = [f for f in traffic if f.value is not None]
    assert len(decodable) > 5000
    for f in decodable:
        assert f.raw is None
        assert validate(f.value, schemas[f.role], raise_errors=True)
        assert f.key == f.value["house_waybill"].encode() or f.kind == "unusable"


def _hs_subheadings() -> set[str]:
    if HS_CSV.exists():
        with HS_CSV.open(encoding="utf-8") as fh:
            return {r["hscode"] for r in csv.DictReader(fh) if r["level"] == "6"}
    if PACKAGED_HS.exists():
        with PACKAGED_HS.open(encoding="utf-8") as fh:
            return {r["code"] for r in csv.DictReader(fh) if len(r["code"]) == 6}
    pytest.skip("no HS 2022 nomenclature file available")


def test_hs_codes_are_hs2022_subheadings(traffic):
    known = _hs_subheadings()
    catalogue = load_catalogue()
    assert 50 <= len(catalogue.goods) <= 90
    assert {g.hs_code for g in catalogue.goods + catalogue.restricted_goods} <= known
    used = set()
    for f in _valid(traffic):
        if f.role == "pre_arrival":
            used |= {i["hs_code"] for i in f.value["items"]}
        elif f.value["hs_code"]:
            used.add(f.value["hs_code"])
    assert used <= known
    assert len(used) >= 40


def test_traffic_looks_like_e_commerce(traffic, risk):
    declarations = [f.value for f in traffic if f.kind == "clean" and f.role == "pre_arrival"]
    totals = [
        sum(i["value"] * risk["rates"][i["currency"]] for i in d["items"]) for d in declarations
    ]
    assert sum(t < 150 for t in totals) / len(totals) >= 0.9
    assert all(1 <= len(d["items"]) <= 4 for d in declarations)
    sellers = Counter(d["seller"]["name"] for d in declarations)
    assert sellers.most_common(1)[0][1] >= 10  # repeat sellers
    countries = Counter(d["seller"]["country"] for d in declarations)
    assert countries.most_common(1)[0][0] == "CN"
    assert len(countries) >= 6
    assert any((d["vendor_collection_id"] or "").startswith("IM") for d in declarations)
    assert any(d["master_waybill"] for d in declarations)
    masters = Counter(d["master_waybill"] for d in declarations if d["master_waybill"])
    assert masters.most_common(1)[0][1] > 1  # consolidations
    for d in declarations:
        assert all(i["currency"] in risk["rates"] for i in d["items"])


# -- risk signals -----------------------------------------------------------------------------


def test_clean_filings_show_no_risk_signal(traffic, risk):
    for f in traffic:
        if f.kind == "clean":
            assert _signals_seen(f, risk) == set(), f.value


def test_every_risky_consignment_shows_a_targeting_signal(traffic, risk):
    seen = defaultdict(set)
    for f in traffic:
        if f.kind == "risky":
            seen[f.key] |= _signals_seen(f, risk)
    assert len(seen) > 100
    # Late filing is never alone: every risky consignment has a signal a rule scores.
    assert all(s - {"late"} for s in seen.values())
    found = Counter(s for signals in seen.values() for s in signals)
    for signal in (
        "goods",
        "origin",
        "route",
        "undervaluation",
        "vague_description",
        "vague_party",
        "late",
    ):
        assert found[signal] > 0, found


# -- invalid messages -------------------------------------------------------------------------


def test_invalid_messages_are_what_they_claim(traffic):
    base = load_catalogue().params["unknown_schema_id_base"]
    ids = []
    for f in traffic:
        if f.kind == "corrupt_bytes":
            assert f.value is None and f.raw and f.raw[0] != 0
        elif f.kind == "unknown_schema_id":
            assert f.value is None and f.raw[0] == 0
            ids.append(struct.unpack(">I", f.raw[1:5])[0])
        elif f.kind == "unusable":
            v = f.value
            assert not v["house_waybill"].strip() or (f.role == "pre_arrival" and not v["items"])
            assert f.key  # keyed like any filing, so the dead letter keeps the key
    assert ids and min(ids) >= base and len(set(ids)) == len(ids)


# -- catalogue validation -------------------------------------------------------------------


def _catalogue_copy(tmp_path: Path, edit) -> Path:
    data = yaml.safe_load((SETTINGS_DIR / "simulation.yaml").read_text(encoding="utf-8"))
    edit(data)
    path = tmp_path / "simulation.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


def test_catalogue_refuses_restricted_goods_among_clean_goods(tmp_path):
    def edit(data):
        data["goods"][3]["descriptions"].append("Lithium battery pack for phones")

    with pytest.raises(ConfigError, match=r"simulation\.yaml\.goods\[3\].*targeting"):
        load_catalogue(_catalogue_copy(tmp_path, edit))


def test_catalogue_refuses_high_risk_seller_countries(tmp_path):
    def edit(data):
        data["sellers"]["countries"]["IR"] = 1

    with pytest.raises(ConfigError, match=r"sellers\.countries.*IR"):
        load_catalogue(_catalogue_copy(tmp_path, edit))


def test_catalogue_refuses_currency_without_rate(tmp_path):
    def edit(data):
        data["countries"]["DE"]["currency"] = "XYZ"

    with pytest.raises(ConfigError, match=r"countries\.DE\.currency"):
        load_catalogue(_catalogue_copy(tmp_path, edit))


def test_catalogue_follows_the_targeting_profiles(tmp_path):
    # Another high-risk origin in the targeting lists shows up in the traffic without code changes.
    path = tmp_path / "targeting"
    shutil.copytree(SETTINGS_DIR / "targeting", path)
    lists = yaml.safe_load((path / "lists.yaml").read_text(encoding="utf-8"))
    lists["high_risk_countries"] = ["BY"]
    (path / "lists.yaml").write_text(yaml.safe_dump(lists), encoding="utf-8")
    shutil.copy(SETTINGS_DIR / "quality.toml", tmp_path / "quality.toml")
    catalogue = load_catalogue(targeting_path=path, quality_path=tmp_path / "quality.toml")
    assert catalogue.risk.high_risk_origins == ("BY",)
    filings = list(
        generate(
            3000, seed=2, start_ms=START_MS, risky_share=0.5, invalid_share=0, catalogue=catalogue
        )
    )
    sellers = {f.value["seller"]["country"] for f in filings if f.role == "pre_arrival"}
    assert "BY" in sellers


# -- integration: through the registry serializer onto the broker ----------------------------


@pytest.mark.integration
def test_send_round_trip_on_the_broker():
    from confluent_kafka import Consumer
    from confluent_kafka.admin import AdminClient, NewTopic
    from confluent_kafka.schema_registry import Schema, SchemaRegistryClient

    prefix = f"test-sim-{uuid.uuid4().hex[:10]}."
    settings = load_settings(env={**os.environ, "GREENLANE_TOPIC_PREFIX": prefix})
    topics = {role: settings.topics.name(role) for role in ROLES}
    admin = AdminClient({**settings.as_admin()})
    registry = SchemaRegistryClient({"url": settings.registry_url})
    futures = admin.create_topics([NewTopic(t, num_partitions=1) for t in topics.values()])
    for future in futures.values():
        future.result(timeout=30)
    schema_ids = {
        role: registry.register_schema(
            f"{topic}-value", Schema(schema_path(role).read_text(encoding="utf-8"), "AVRO")
        )
        for role, topic in topics.items()
    }
    filings = _traffic(400, seed=21, risky_share=0.1, invalid_share=0.05)
    expected = {role: [f for f in filings if f.role == role] for role in ROLES}
    consumer = Consumer(
        {
            **settings.as_admin(),
            "group.id": f"{prefix}check",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    try:
        simulator = CarrierSimulator(settings)
        progress = []
        report = simulator.send(filings, progress=progress.append)
        assert report.failed == 0, report.errors
        assert report.delivered == report.total == len(filings)
        assert sum(report.produced["pre_arrival"].values()) == len(expected["pre_arrival"])
        assert progress[-1] == len(filings)
        assert f"{len(filings):,} delivered, 0 failed" in str(report)

        consumer.subscribe(list(topics.values()))
        received = defaultdict(list)
        deadline = time.monotonic() + 60
        while sum(map(len, received.values())) < len(filings) and time.monotonic() < deadline:
            msg = consumer.poll(1.0)
            if msg is None or msg.error():
                continue
            received[msg.topic()].append(msg)
        assert sum(map(len, received.values())) == len(filings)
        for role, topic in topics.items():
            messages = received[topic]
            assert len(messages) == len(expected[role])
            for msg, filing in zip(messages, expected[role], strict=True):  # one partition: order
                value = msg.value()
                assert msg.key() == filing.key
                if filing.raw is not None:
                    assert value == filing.raw
                    continue
                magic, schema_id = struct.unpack(">bI", value[:5])
                assert magic == 0
                assert schema_id == schema_ids[role]
                assert filing.value["message_id"].encode() in value
    finally:
        consumer.close()
        for future in admin.delete_topics(list(topics.values())).values():
            future.result(timeout=30)
        for topic in topics.values():
            registry.delete_subject(f"{topic}-value")
            registry.delete_subject(f"{topic}-value", permanent=True)
