"""Scale-out gives the same answers: one worker and two workers in one group, over the same
traffic, flag the same consignments and allocate the same lanes.

The traffic spreads split-shipment groups and new sellers' bursts over house waybills on
every partition, and scores a quarter of the rest for inspection, so that the inspection
ceiling downgrades some: the quota must be met the same way whatever the number of workers.
"""

from __future__ import annotations

import random
import time
import uuid

import pytest

from greenlane.streams.devtools.launcher import free_port
from greenlane.streams.devtools.progress import readiness, scrape, total
from greenlane.streams.stages.patterns import load_pattern_settings, seller_key, seller_partition
from tests.factories import item, party, pre_arrival
from tests.integration.conftest import Harness, open_harness, wait_until

pytestmark = pytest.mark.integration

PARTITIONS = 4
DECISIONS = ["release", "hold", "inspect"]
STATEFUL = {"P_SPLIT_SHIPMENT", "P_NEW_SELLER_VELOCITY"}
DAY_MS = 86_400_000


def traffic(seed: int) -> tuple[list[dict], list[dict], dict[str, set[str]]]:
    """(warm-up, main traffic, the consignments each seller-keyed pattern must flag).

    The warm-up is a month old, on sellers of every seller partition: it makes the pattern
    state "watching for a month", so that a seller first seen now is a new seller."""
    rng = random.Random(seed)
    tag = uuid.uuid4().hex[:6]
    now = int(time.time() * 1000)
    settings = load_pattern_settings()
    warm_up, covered, n = [], set(), 0
    while len(covered) < PARTITIONS or len(warm_up) < 12:
        seller = party(f"Veteran Store {n}", "CN", party_id=f"V-{tag}-{n}")
        w = pre_arrival(f"W{tag}{n:04d}", seller=seller, filing_time=now - 30 * DAY_MS)
        covered.add(seller_partition(seller_key(w, settings), PARTITIONS))
        warm_up.append(w)
        n += 1

    main: list[dict] = []
    expected = {code: set() for code in STATEFUL}
    for g in range(12):  # split shipments: 3 x 60 EUR to one buyer, together over 150 EUR
        buyer = party(f"Split Buyer {g}", "PL", address=f"ul. Lipowa {g}, 00-001 Warszawa")
        seller = party(f"Small Shop {g}", "CN", party_id=f"S-{tag}-{g}")
        for k in range(3):
            w = f"G{tag}{g:02d}{k}"
            main.append(
                pre_arrival(
                    w,
                    destination_country="PL",
                    consignee=buyer,
                    seller=seller,
                    items=[item(value=60.0, net_weight_kg=0.4)],
                    filing_time=now - (3 - k) * 600_000,
                )
            )
            expected["P_SPLIT_SHIPMENT"].add(w)
    burst_size = load_pattern_settings().new_seller_velocity.max_consignments + 4
    for b in range(3):  # new sellers shipping fast, each consignment to a buyer of its own
        seller = party(f"Fresh Start Shop {b}", "CN", party_id=f"F-{tag}-{b}")
        for k in range(burst_size):
            w = f"B{tag}{b}{k:03d}"
            main.append(
                pre_arrival(
                    w,
                    seller=seller,
                    consignee=party(f"Buyer {w}", "DE", address=f"Hauptstrasse {w}"),
                    items=[item(value=200.0)],
                    filing_time=now - rng.randrange(3_600_000),
                )
            )
            expected["P_NEW_SELLER_VELOCITY"].add(w)
    for k in range(400):  # the rest: a quarter scores for inspection, over the ceiling
        w = f"R{tag}{k:04d}"
        goods = (
            item(description="hunting knife", hs_code="821191") if rng.random() < 0.25 else item()
        )
        main.append(
            pre_arrival(
                w,
                seller=party(f"Seller {w}", "CN", party_id=f"R-{w}"),
                consignee=party(f"Buyer {w}", "DE", address=f"Hauptstrasse {w}"),
                items=[goods],
                filing_time=now - rng.randrange(3_600_000),
            )
        )
    rng.shuffle(main)
    return warm_up, main, expected


def observations_counted(urls: list[str], harness: Harness) -> float:
    topic = harness.settings.topics.name("pattern_observation")
    return sum(total(scrape(url), "greenlane_messages_consumed_total", topic=topic) for url in urls)


def outcome(harness: Harness, urls: list[str], warm_up, main, expected) -> dict:
    """Send the traffic; once every decision and amendment is out: per house waybill, the
    lane of its first decision and the patterns that amended it."""
    harness.send("pre_arrival", warm_up)
    wait_until(
        lambda: observations_counted(urls, harness) >= len(warm_up),
        "the warm-up counted on the sellers' partitions",
    )
    harness.send("pre_arrival", main)
    mine = {r["house_waybill"] for r in main}
    must = {(w, code) for code, ws in expected.items() for w in ws}
    found: dict[str, dict] = {}

    def complete(recs: list[dict]) -> bool:
        found.clear()
        for r in recs:
            if r["house_waybill"] in mine:
                found.setdefault(r["decision_id"], r)
        firsts = {d["house_waybill"] for d in found.values() if d["revision"] == 0}
        flags = {
            (d["house_waybill"], x["code"])
            for d in found.values()
            if d["revision"] > 0
            for x in d["reasons"]
            if x["code"] in STATEFUL
        }
        return firsts == mine and must <= flags

    harness.read(DECISIONS, complete, timeout=600)
    # every finding sent back has been applied or set aside: nothing is still on its way
    findings_topic = harness.settings.topics.name("pattern_finding")

    def settled() -> bool:
        sent = harness.read(["pattern_finding"], lambda rs: True, timeout=2)
        handled = sum(total(scrape(url), "greenlane_pattern_findings_total") for url in urls)
        return bool(sent) and handled >= len({f["finding_id"] for f in sent})

    wait_until(settled, f"the findings on {findings_topic} applied")
    harness.read(DECISIONS, complete, timeout=600)
    lanes, flags = {}, {}
    for d in found.values():
        w = d["house_waybill"]
        if d["revision"] == 0:
            codes = {x["code"] for x in d["reasons"] if x["code"].startswith("L_")}
            lanes[w] = (d["route"], d["random_pick"], sorted(codes))
        else:
            flags.setdefault(w, set()).update(
                x["code"] for x in d["reasons"] if x["code"] in STATEFUL
            )
    topic = harness.settings.topics.name("pre_arrival")
    shares = [total(scrape(url), "greenlane_messages_consumed_total", topic=topic) for url in urls]
    return {"lanes": lanes, "flags": flags, "shares": shares}


def test_two_workers_flag_the_same_consignments_and_allocate_the_same_lanes_as_one(
    tmp_path_factory,
):
    warm_up, main, expected = traffic(seed=41)
    with open_harness(tmp_path_factory, partitions=PARTITIONS) as one:
        alone = outcome(one, [one.metrics_url], warm_up, main, expected)

    with open_harness(tmp_path_factory, partitions=PARTITIONS) as pair:
        port = free_port()
        second_url = f"http://127.0.0.1:{port}/metrics"
        data_dir = tmp_path_factory.mktemp("worker-2")
        second = pair.spawn(
            "--data-dir", str(data_dir), "--metrics-port", str(port), metrics_url=second_url
        )
        try:
            wait_until(  # both hold partitions before traffic starts
                lambda: all(readiness(url)[0] for url in (pair.metrics_url, second_url)),
                "both workers ready with partitions",
            )
            together = outcome(pair, [pair.metrics_url, second_url], warm_up, main, expected)
        finally:
            second.stop()

    assert all(share > 0 for share in together["shares"]), "each worker assessed its share"
    # the patterns found what the traffic holds, whatever partition each waybill filed on
    for code, waybills in expected.items():
        assert {w for w, codes in alone["flags"].items() if code in codes} == waybills
    assert together["flags"] == alone["flags"]
    # the same lanes, random picks and capacity downgrades, consignment by consignment
    assert together["lanes"] == alone["lanes"]
    downgraded = [
        w for w, (_, _, codes) in alone["lanes"].items() if "L_CAPACITY_DOWNGRADE" in codes
    ]
    assert downgraded, "the traffic should take some partitions over the inspection ceiling"
