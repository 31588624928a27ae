import copy
import json
import math
import os
import random
import time
from pathlib import Path

import pytest
import yaml

from greenlane.streams.domain.vocabulary import HOLD, INSPECT, PRE_ARRIVAL, PRE_LOADING, RELEASE
from greenlane.streams.settings import SETTINGS_DIR, ConfigError
from greenlane.streams.stages.lanes import (
    L_CAPACITY_DOWNGRADE,
    L_RANDOM_SELECTION,
    LaneAllocator,
    LaneChange,
    apply_change,
    is_random_pick,
    lane_key,
    load_lane_settings,
)

NOW = 1_795_000_000_000
SHIPPED = yaml.safe_load((SETTINGS_DIR / "lanes.yaml").read_text())


def write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "lanes.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def settings_with(tmp_path: Path, default: dict | None = None, destinations=None):
    data = copy.deepcopy(SHIPPED)
    data["default"].update(default or {})
    data["destinations"] = destinations if destinations is not None else {}
    return load_lane_settings(write(tmp_path, data))


def decision(n: int, score: float = 0.0, dest: str = "DE", **over) -> dict:
    route = INSPECT if score >= 60 else HOLD if score >= 30 else RELEASE
    d = {
        "stage": PRE_ARRIVAL,
        "route": route,
        "destination_country": dest,
        "house_waybill": f"HWB{n:09d}",
        "risk_score": float(score),
        "placi_outcome": None,
        "revision": 0,
        "reasons": [],
    }
    d.update(over)
    return d


def random_waybills(salt: str, rate: float, want: bool, count: int) -> list[int]:
    """Waybill numbers that are (or are not) random picks under this salt and rate."""
    found = []
    n = 0
    while len(found) < count:
        if is_random_pick(salt, f"HWB{n:09d}", rate) == want:
            found.append(n)
        n += 1
    return found


def final_route(d: dict, change: LaneChange | None) -> str:
    return change.route if change else d["route"]


# --- settings --------------------------------------------------------------------------------


def test_shipped_settings_have_a_default_and_per_destination_overrides():
    s = load_lane_settings()
    assert s.for_destination("DE") is s.default
    us = s.for_destination("US")
    assert us.inspect_ceiling == SHIPPED["destinations"]["US"]["inspect_ceiling"]
    assert us.min_random_rate == SHIPPED["destinations"]["US"]["min_random_rate"]
    # fields an entry does not name come from the default
    assert us.window_seconds == s.default.window_seconds and us.salt == s.default.salt
    assert s.for_destination("CA").warm_up_consignments == 500
    assert s.for_destination("CA").inspect_ceiling == s.default.inspect_ceiling


def test_per_destination_settings_and_the_default_apply(tmp_path):
    s = settings_with(
        tmp_path,
        default={"inspect_ceiling": 0.1, "min_random_rate": 0.0, "warm_up_consignments": 0},
        destinations={"US": {"inspect_ceiling": 0.2}},
    )
    alloc = LaneAllocator(s)
    batch = [decision(i, 80, dest) for dest in ("US", "NL") for i in range(100)]
    changes = alloc.allocate(batch, NOW)
    kept = {
        dest: sum(
            final_route(d, c) == INSPECT
            for d, c in zip(batch, changes, strict=True)
            if d["destination_country"] == dest
        )
        for dest in ("US", "NL")
    }
    assert kept == {"US": 20, "NL": 10}
    assert alloc.window("US") == (20, 100) and alloc.window("NL") == (10, 100)


@pytest.mark.parametrize(
    "change, where",
    [
        (lambda d: d["default"].update(inspect_ceiling=1.5), "default.inspect_ceiling"),
        (lambda d: d["default"].update(inspect_ceiling=0), "default.inspect_ceiling"),
        (lambda d: d["default"].update(min_random_rate=-0.1), "default.min_random_rate"),
        (lambda d: d["default"].update(random_route="RELEASE"), "default.random_route"),
        (lambda d: d["default"].update(window_seconds=0), "default.window_seconds"),
        (lambda d: d["default"].update(window_buckets=2.5), "default.window_buckets"),
        (lambda d: d["default"].update(warm_up_consignments=True), "default.warm_up_consignments"),
        (lambda d: d["default"].update(salt="in-the-file"), "default.salt: the random-selection"),
        (lambda d: d["destinations"]["US"].update(salt="x" * 20), "destinations.US.salt"),
        (lambda d: d["default"].pop("window_buckets"), "default: missing key(s)"),
        (lambda d: d["default"].update(ceiling=0.1), "default: unknown key(s) ['ceiling']"),
        (
            lambda d: d["destinations"]["US"].update(inspect_ceiling="2%"),
            "destinations.US.inspect_ceiling",
        ),
        (
            lambda d: d["destinations"]["AU"].update(min_random_rate=0.5),
            "destinations.AU.min_random_rate",
        ),
        (lambda d: d["destinations"].update(XX={}), "destinations.XX"),
        (lambda d: d["destinations"].update(DE=[1]), "destinations.DE"),
        (lambda d: d["reasons"].pop(L_CAPACITY_DOWNGRADE), "reasons"),
        (
            lambda d: d["reasons"][L_RANDOM_SELECTION].update(carrier_visible="no"),
            "reasons.L_RANDOM_SELECTION.carrier_visible",
        ),
        (lambda d: d.pop("default"), "expected exactly the keys"),
    ],
)
def test_validation_errors_name_file_entry_and_field(tmp_path, change, where):
    data = copy.deepcopy(SHIPPED)
    change(data)
    path = write(tmp_path, data)
    with pytest.raises(ConfigError) as err:
        load_lane_settings(path)
    assert str(err.value).startswith(f"{path}: ")
    assert where in str(err.value)


def test_missing_or_broken_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_lane_settings(tmp_path / "absent.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("default: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_lane_settings(bad)


# --- random selection ------------------------------------------------------------------------


def synthetic(n: int, high_share: float, dests: tuple[str, ...], seed: int = 7) -> list[dict]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        score = rng.choice((60, 65, 70, 95)) if rng.random() < high_share else rng.choice((0, 35))
        out.append(decision(i, score, dests[i % len(dests)]))
    return out


def batches(items: list, size: int):
    for start in range(0, len(items), size):
        yield start // size, items[start : start + size]


def binomial_tolerance(n: int, p: float, sigmas: float = 4.0) -> float:
    return sigmas * math.sqrt(p * (1 - p) / n)


def test_random_pick_rate_matches_the_configured_minimum_per_destination():
    s = load_lane_settings()
    dests = ("DE", "US", "AU")
    records = synthetic(100_000, 0.1, dests)
    alloc = LaneAllocator(s)
    picked = dict.fromkeys(dests, 0)
    for b, chunk in batches(records, 500):
        for d, c in zip(chunk, alloc.allocate(chunk, NOW + b * 1000), strict=True):
            if c is not None and c.random_pick:
                picked[d["destination_country"]] += 1
                assert final_route(d, c) == INSPECT
                assert c.reason["code"] == L_RANDOM_SELECTION and c.reason["contribution"] == 0
    per_dest = len(records) // len(dests)
    for dest in dests:
        rate = s.for_destination(dest).min_random_rate
        observed = picked[dest] / per_dest
        assert abs(observed - rate) <= binomial_tolerance(per_dest, rate), (dest, observed, rate)


def test_random_picks_are_independent_of_the_score():
    rate = 0.05
    high = [f"HWB{i:09d}" for i in range(0, 40_000, 2)]
    low = [f"HWB{i:09d}" for i in range(1, 40_000, 2)]
    for group in (high, low):
        observed = sum(is_random_pick("k", w, rate) for w in group) / len(group)
        assert abs(observed - rate) <= binomial_tolerance(len(group), rate)


def test_random_picks_agree_across_allocators_batch_splits_and_clocks(tmp_path):
    s = settings_with(tmp_path, default={"min_random_rate": 0.02, "inspect_ceiling": 0.02})
    records = synthetic(20_000, 0.2, ("DE", "FR"))
    whole = LaneAllocator(s).allocate(records, NOW)
    flags_whole = [bool(c and c.random_pick) for c in whole]
    rng = random.Random(3)
    split = LaneAllocator(s)
    flags_split: list[bool] = []
    start = 0
    while start < len(records):
        size = rng.randint(1, 900)
        chunk = records[start : start + size]
        clock = NOW + rng.randint(0, 10**9)
        flags_split.extend(bool(c and c.random_pick) for c in split.allocate(chunk, clock))
        start += size
    assert flags_split == flags_whole
    assert 0.015 < sum(flags_whole) / len(records) < 0.025
    # a pure function of (salt, house waybill)
    expected = [is_random_pick(s.default.salt, d["house_waybill"], 0.02) for d in records]
    assert flags_whole == expected


def test_another_salt_picks_other_consignments():
    waybills = [f"HWB{i:09d}" for i in range(20_000)]
    a = {w for w in waybills if is_random_pick("salt-a", w, 0.05)}
    b = {w for w in waybills if is_random_pick("salt-b", w, 0.05)}
    assert len(a & b) < 0.2 * len(a)


def test_random_pick_already_inspected_is_flagged_not_changed(tmp_path):
    s = settings_with(tmp_path, default={"min_random_rate": 0.01})
    [n] = random_waybills(s.default.salt, 0.01, True, 1)
    [change] = LaneAllocator(s).allocate([decision(n, 95)], NOW)
    assert change.route == INSPECT and change.random_pick
    assert change.reason["code"] == L_RANDOM_SELECTION


def test_random_route_hold_raises_release_and_never_lowers(tmp_path):
    s = settings_with(tmp_path, default={"min_random_rate": 0.05, "random_route": HOLD})
    ns = random_waybills(s.default.salt, 0.05, True, 3)
    batch = [decision(ns[0], 0), decision(ns[1], 35), decision(ns[2], 95)]
    changes = LaneAllocator(s).allocate(batch, NOW)
    assert [c.route for c in changes] == [HOLD, HOLD, INSPECT]
    assert all(c.random_pick for c in changes)


# --- capacity ------------------------------------------------------------------------------


CEILINGS = {"DE": 0.03, "US": 0.02, "AU": 0.05}


def capacity_settings(tmp_path):
    return settings_with(
        tmp_path,
        default={
            "inspect_ceiling": CEILINGS["DE"],
            "min_random_rate": 0.005,
            "window_seconds": 600,
            "window_buckets": 60,
            "warm_up_consignments": 1000,
        },
        destinations={
            "US": {"inspect_ceiling": CEILINGS["US"], "min_random_rate": 0.002},
            "AU": {"inspect_ceiling": CEILINGS["AU"]},
        },
    )


def test_inspect_share_stays_at_or_below_the_ceiling_after_warm_up(tmp_path):
    s = capacity_settings(tmp_path)
    dests = tuple(CEILINGS)
    # 10% of consignments score for inspection: well above every ceiling, so the quota binds.
    records = synthetic(100_000, 0.10, dests)
    alloc = LaneAllocator(s)
    inspected = dict.fromkeys(dests, 0)
    total = dict.fromkeys(dests, 0)
    worst = dict.fromkeys(dests, 0.0)
    clock = NOW
    for b, chunk in batches(records, 250):
        clock = NOW + b * 2_000  # 250 every 2 s: the 600 s window holds ~25,000 consignments
        for d, c in zip(chunk, alloc.allocate(chunk, clock), strict=True):
            total[d["destination_country"]] += 1
            inspected[d["destination_country"]] += final_route(d, c) == INSPECT
            if c is not None and not c.random_pick:
                assert c.route == HOLD and d["route"] == INSPECT
        if clock - NOW > s.default.window_seconds * 1000:  # the warm-up burst has left the window
            for dest in dests:
                i, t = alloc.window(dest)
                worst[dest] = max(worst[dest], i / t)
    for dest, ceiling in CEILINGS.items():
        overall = inspected[dest] / total[dest]
        assert overall <= ceiling
        assert overall >= 0.98 * ceiling  # capacity is used, not wasted
        # Buckets leaving the window can lift the share by at most one bucket's worth.
        assert worst[dest] <= ceiling * (1 + 1 / (s.default.window_buckets - 1)), dest


def test_capacity_is_first_come_first_served_and_says_why(tmp_path):
    s = settings_with(
        tmp_path,
        default={"inspect_ceiling": 0.05, "min_random_rate": 0.0, "warm_up_consignments": 0},
    )
    scores = [0] * 94 + [60, 95, 65, 60, 70, 80]  # ceiling 5%: the fifth INSPECT comes too early
    batch = [decision(i, sc) for i, sc in enumerate(scores)]
    changes = LaneAllocator(s).allocate(batch, NOW)
    downgraded = [i for i, c in enumerate(changes) if c is not None]
    assert downgraded == [98]  # at 99 consignments 5% allows 4; at 100 the sixth fits again
    reason = changes[98].reason
    assert changes[98] == LaneChange(HOLD, False, reason)
    assert reason["code"] == L_CAPACITY_DOWNGRADE and reason["contribution"] == 0
    assert "4 of 99 consignments of filing partition 0" in reason["evidence"]
    assert "ceiling 5.00%" in reason["evidence"] and "score 70" in reason["evidence"]


def _lanes(changes, batch):
    return [final_route(d, c) for d, c in zip(batch, changes, strict=True)]


def test_lanes_do_not_depend_on_batch_splits_or_how_workers_share_the_partitions(tmp_path):
    s = settings_with(
        tmp_path,
        default={"inspect_ceiling": 0.04, "min_random_rate": 0.01, "warm_up_consignments": 40},
    )
    rng = random.Random(7)
    stream = [
        decision(
            n,
            rng.choice([0, 0, 0, 35, 70, 90]),
            source_partition=rng.randrange(4),
            filing_time=NOW + n * 1000,
        )
        for n in range(3000)
    ]
    whole = _lanes(LaneAllocator(s, partitions=4).allocate(stream, NOW + 10**8, {}), stream)
    assert whole.count(INSPECT) < 0.04 * len(stream) + 4 * 2  # the ceiling holds (+ picks)
    # one worker per pair of partitions, each its own state, batches of random sizes,
    # partitions interleaved differently
    routes = {}
    for mine in ({0, 1}, {2, 3}):
        alloc, state = LaneAllocator(s, partitions=4), {}
        own = [d for d in stream if d["source_partition"] in mine]
        start = 0
        while start < len(own):
            size = rng.randint(1, 300)
            chunk = own[start : start + size]
            allocated = _lanes(alloc.allocate(chunk, NOW + 10**8, state), chunk)
            for d, route in zip(chunk, allocated, strict=True):
                routes[d["house_waybill"]] = route
            start += size
    assert [routes[d["house_waybill"]] for d in stream] == whole


def test_forced_outcomes_and_random_picks_are_never_downgraded(tmp_path):
    s = settings_with(
        tmp_path,
        default={"inspect_ceiling": 0.01, "min_random_rate": 0.01, "warm_up_consignments": 0},
    )
    salt = s.default.salt
    picks = random_waybills(salt, 0.01, True, 30)
    plain = random_waybills(salt, 0.01, False, 200)
    batch = (
        [decision(n, 10) for n in picks[:15]]  # random picks of low risk
        + [decision(n, 61) for n in picks[15:]]  # random picks that rules also inspect
        + [decision(n, 99, forced=True) for n in plain[:20]]  # forced INSPECT
        + [decision(n, 0, forced=True, route=RELEASE) for n in plain[20:30]]
        + [decision(n, 20, forced_outcome=INSPECT, route=INSPECT) for n in plain[30:35]]
        + [decision(n, 0, forced_outcome=RELEASE, route=RELEASE) for n in plain[35:40]]
        + [decision(n, 99) for n in plain[40:60]]  # rule-based, all over capacity
        + [decision(n, 0) for n in plain[60:]]
    )
    alloc = LaneAllocator(s)
    changes = alloc.allocate(batch, NOW)
    for d, c in zip(batch, changes, strict=True):
        if d.get("forced") or d.get("forced_outcome"):
            assert c is None
        elif d["house_waybill"] in {f"HWB{n:09d}" for n in picks}:
            assert c.random_pick and c.route == INSPECT
        elif d["route"] == INSPECT:
            assert c.route == HOLD and c.reason["code"] == L_CAPACITY_DOWNGRADE
    # mandatory inspections are counted, even beyond the ceiling
    assert alloc.window("DE") == (55, len(batch))
    # and the next batch of rule-based INSPECTs finds no capacity left
    later = alloc.allocate([decision(n, 99) for n in plain[60:70]], NOW + 1)
    assert all(c is not None and c.route == HOLD for c in later)


def test_warm_up_lets_a_fresh_worker_inspect_before_its_share_means_anything(tmp_path):
    s = settings_with(
        tmp_path,
        default={"inspect_ceiling": 0.03, "min_random_rate": 0.0, "warm_up_consignments": 1000},
    )
    alloc = LaneAllocator(s)
    changes = alloc.allocate([decision(i, 90) for i in range(50)], NOW)
    assert sum(c is None for c in changes) == 30  # 3% of the 1,000 warm-up consignments


def test_window_forgets_old_traffic(tmp_path):
    s = settings_with(
        tmp_path,
        default={
            "inspect_ceiling": 0.1,
            "min_random_rate": 0.0,
            "window_seconds": 60,
            "window_buckets": 6,
            "warm_up_consignments": 0,
        },
    )
    alloc = LaneAllocator(s)
    alloc.allocate([decision(i, 90 if i >= 90 else 0) for i in range(100)], NOW)
    assert alloc.window("DE") == (10, 100)
    full = alloc.allocate([decision(1000 + i, 90) for i in range(10)], NOW + 1_000)
    assert [c is None for c in full] == [False] * 9 + [True]  # 10% of 110 -> 1 more, last
    assert alloc.window("DE", NOW + 61_000) == (0, 0)
    fresh = alloc.allocate(
        [decision(2000 + i, 90 if i >= 90 else 0) for i in range(100)], NOW + 61_000
    )
    assert fresh == [None] * 100


def test_pre_loading_decisions_are_left_alone(tmp_path):
    s = settings_with(
        tmp_path,
        default={"inspect_ceiling": 0.01, "min_random_rate": 1.0, "random_route": HOLD},
    )
    batch = [decision(i, 95, stage=PRE_LOADING, placi_outcome="DO_NOT_LOAD") for i in range(50)]
    assert LaneAllocator(s).allocate(batch, NOW) == [None] * 50


def test_a_re_assessment_counts_its_inspection_not_another_consignment(tmp_path):
    s = settings_with(
        tmp_path,
        default={"inspect_ceiling": 0.5, "min_random_rate": 0.0, "warm_up_consignments": 0},
    )
    alloc = LaneAllocator(s)
    alloc.allocate([decision(i, 0) for i in range(10)], NOW)
    alloc.allocate([decision(3, 90, revision=1)], NOW, previous=["RELEASE"])
    assert alloc.window("DE") == (1, 10)
    # revised again, still an inspection: it keeps its place and counts no second one
    assert alloc.allocate([decision(3, 95, revision=2)], NOW, previous=["INSPECT"]) == [None]
    assert alloc.window("DE") == (1, 10)


def test_a_revision_that_was_inspected_is_not_downgraded_when_the_quota_is_full(tmp_path):
    s = settings_with(
        tmp_path,
        default={"inspect_ceiling": 0.1, "min_random_rate": 0.0, "warm_up_consignments": 0},
    )
    alloc = LaneAllocator(s)
    alloc.allocate([decision(i, 90 if i == 9 else 0) for i in range(10)], NOW)  # 1 of 10
    [full] = alloc.allocate([decision(10, 90)], NOW)
    assert full is not None and full.route == HOLD  # a new inspection would exceed it
    assert alloc.allocate([decision(9, 99, revision=1)], NOW, previous=["INSPECT"]) == [None]
    assert alloc.window("DE") == (1, 11)


def test_reconfigure_keeps_counts_when_the_window_is_unchanged(tmp_path):
    s = settings_with(tmp_path, default={"min_random_rate": 0.0, "warm_up_consignments": 0})
    alloc = LaneAllocator(s)
    alloc.allocate([decision(i, 0) for i in range(100)], NOW)
    tighter = settings_with(
        tmp_path,
        default={"min_random_rate": 0.0, "warm_up_consignments": 0, "inspect_ceiling": 0.01},
    )
    alloc.reconfigure(tighter)
    assert alloc.window("DE") == (0, 100)
    changes = alloc.allocate([decision(100 + i, 90) for i in range(3)], NOW)
    assert [c is None for c in changes] == [True, False, False]  # 1% of 103 -> 1
    reshaped = settings_with(tmp_path, default={"window_buckets": 7})
    alloc.reconfigure(reshaped)
    assert alloc.window("DE") == (0, 0)


def test_apply_change_sets_route_flag_and_keeps_reasons_ordered():
    d = decision(
        1,
        40,
        reasons=[
            {
                "code": "R_A",
                "description": "",
                "contribution": 40.0,
                "evidence": None,
                "carrier_visible": True,
            },
            {
                "code": "T_TRUSTED",
                "description": "",
                "contribution": -10.0,
                "evidence": None,
                "carrier_visible": True,
            },
        ],
    )
    reason = {
        "code": L_RANDOM_SELECTION,
        "description": "",
        "contribution": 0.0,
        "evidence": None,
        "carrier_visible": False,
    }
    out = apply_change(d, LaneChange(INSPECT, True, reason))
    assert out["route"] == INSPECT and out["random_pick"] is True
    assert [r["code"] for r in out["reasons"]] == ["R_A", L_RANDOM_SELECTION, "T_TRUSTED"]
    assert d["route"] == HOLD and len(d["reasons"]) == 2  # the input is not changed
    assert apply_change(d, None)["random_pick"] is False


def test_selection_propensity_is_one_for_what_rules_examine_and_the_random_rate_otherwise():
    lanes = LaneAllocator(load_lane_settings())  # shipped: default 0.5%, US 0.3%, AU 1%
    propensity = lanes.selection_propensity
    assert propensity(decision(1, 0, "DE")) == 0.005
    assert propensity(decision(2, 0, "US")) == 0.003
    assert propensity(decision(3, 0, "AU")) == 0.01
    assert propensity(decision(4, 40, "US")) == 1.0  # a hold is examined (documents at least)
    assert propensity(decision(5, 90, "US")) == 1.0
    assert propensity(decision(6, 0, "DE", stage=PRE_LOADING)) is None
    assert apply_change(decision(7, 0), None, 0.005)["selection_propensity"] == 0.005
    reason = {"code": L_RANDOM_SELECTION, "description": "", "contribution": 0.0}
    raised = apply_change(
        decision(8, 0), LaneChange(INSPECT, True, reason | {"evidence": None}), 0.005
    )
    assert raised["route"] == INSPECT and raised["selection_propensity"] == 0.005


def test_speed_per_decision():
    s = load_lane_settings()
    records = synthetic(20_000, 0.1, ("DE", "US", "FR", "GB", "AU", "CA"))
    alloc = LaneAllocator(s)
    alloc.allocate(records[:500], NOW)  # destinations compiled
    start = time.perf_counter()
    for b, chunk in batches(records, 500):
        alloc.allocate(chunk, NOW + b * 100)
    per_decision_us = (time.perf_counter() - start) / len(records) * 1e6
    print(f"lanes: {per_decision_us:.2f} µs/decision")
    assert per_decision_us < 25


# --- counts kept in a table ---------------------------------------------------------------------


def test_counts_kept_in_the_callers_state_survive_a_new_allocator(tmp_path):
    s = settings_with(
        tmp_path,
        default={"inspect_ceiling": 0.1, "min_random_rate": 0.0, "warm_up_consignments": 0},
    )
    state: dict = {}
    first = LaneAllocator(s, partitions=2)
    first.allocate([decision(i, 80 if i >= 90 else 0) for i in range(100)], NOW, state)
    assert first.window("DE", state=state) == (10, 100)
    json.loads(json.dumps(state))  # plain data: a table entry

    restarted = LaneAllocator(s, partitions=2)  # a restart: nothing in memory
    assert restarted.window("DE", state=state) == (10, 100)
    more = [decision(1000 + i, 90) for i in range(5)]
    changes = restarted.allocate(more, NOW + 1, state)
    assert [final_route(d, c) for d, c in zip(more, changes, strict=True)] == [HOLD] * 5
    assert LaneAllocator(s, partitions=2).window("DE") == (0, 0)  # its own state: empty


def test_counts_are_kept_per_filing_partition_and_a_worker_sees_its_own(tmp_path):
    s = settings_with(
        tmp_path,
        default={"inspect_ceiling": 0.5, "min_random_rate": 0.0, "warm_up_consignments": 0},
    )
    state: dict = {}
    batch = [decision(i, 80 if i % 2 else 0, source_partition=i % 2) for i in range(40)]
    LaneAllocator(s, partitions=2).allocate(batch, NOW, state)
    assert set(state) == {lane_key("DE", 0), lane_key("DE", 1)}
    assert state[lane_key("DE", 1)]["partition"] == 1
    # each partition holds the ceiling for its own traffic: half of partition 1's 20
    mine = {k: v for k, v in state.items() if v["partition"] == 1}
    assert LaneAllocator(s, partitions=2).window("DE", state=mine) == (10, 20)


def reason(code: str, contribution: float) -> dict:
    return {
        "code": code,
        "description": code,
        "contribution": contribution,
        "evidence": "",
        "carrier_visible": False,
    }


def test_critical_reasons_are_never_downgraded_but_count(tmp_path):
    s = settings_with(
        tmp_path,
        default={"inspect_ceiling": 0.01, "min_random_rate": 0.0, "warm_up_consignments": 0},
        destinations={"GB": {"critical_reasons": {"W_IPR_BRAND": 0}}},
    )
    assert s.default.critical_reasons["W_PARTY_WATCHLIST"] == 30  # the shipped default
    serious = [reason("W_PARTY_WATCHLIST", 40), reason("W_IPR_BRAND", 35)]
    batch = (
        [decision(n, 110, reasons=serious) for n in range(10)]
        + [decision(n, 99, reasons=[reason("W_PARTY_WATCHLIST", 25)]) for n in range(10, 20)]
        + [decision(n, 0) for n in range(20, 200)]
    )
    alloc = LaneAllocator(s)
    changes = alloc.allocate(batch, NOW)
    assert changes[:10] == [None] * 10  # a serious watchlist hit is inspected whatever the quota
    assert all(c.route == HOLD for c in changes[10:20])  # a warning-level hit is not critical
    assert alloc.window("DE") == (10, 200)  # and the critical ones used the capacity
    # GB's own mapping replaces the default's: there the watchlist hit is not critical
    gb = alloc.allocate([decision(n, 110, dest="GB", reasons=serious[:1]) for n in range(5)], NOW)
    assert all(c is not None and c.route == HOLD for c in gb[1:])
    ipr = alloc.allocate([decision(9, 99, dest="GB", reasons=serious[1:])], NOW + 1)
    assert ipr == [None]


@pytest.mark.parametrize(
    "critical, where",
    [
        ([1], "default.critical_reasons"),
        ({"W_PARTY_WATCHLIST": -1}, "default.critical_reasons.W_PARTY_WATCHLIST"),
        ({"W_PARTY_WATCHLIST": "high"}, "default.critical_reasons.W_PARTY_WATCHLIST"),
    ],
)
def test_critical_reasons_are_validated(tmp_path, critical, where):
    data = copy.deepcopy(SHIPPED)
    data["default"]["critical_reasons"] = critical
    path = write(tmp_path, data)
    with pytest.raises(ConfigError, match=where.replace(".", r"\.")):
        load_lane_settings(path)


def test_a_critical_reason_does_not_leave_random_selection(tmp_path):
    s = settings_with(
        tmp_path,
        default={"inspect_ceiling": 0.1, "min_random_rate": 0.05, "random_route": INSPECT},
        destinations={},
    )
    [n] = random_waybills(s.default.salt, 0.05, True, 1)
    held = decision(n, 40, reasons=[reason("W_PARTY_WATCHLIST", 40)])  # HOLD by score
    [change] = LaneAllocator(s).allocate([held], NOW)
    assert change is not None and change.random_pick and change.route == INSPECT


def test_the_random_selection_key_is_the_secret_not_a_setting(monkeypatch, tmp_path):
    """The key comes from GREENLANE_LANES_KEY (or the secrets file), and another key picks
    other consignments; without either, loading stops with the variable named."""
    a = load_lane_settings()
    assert a.default.salt == os.environ["GREENLANE_LANES_KEY"]
    assert a.for_destination("US").salt == a.default.salt
    monkeypatch.setenv("GREENLANE_LANES_KEY", "another-key-of-enough-length")
    assert load_lane_settings().default.salt == "another-key-of-enough-length"
    monkeypatch.delenv("GREENLANE_LANES_KEY")
    monkeypatch.setenv("GREENLANE_SECRETS_FILE", str(tmp_path / "none.toml"))
    with pytest.raises(ConfigError, match="GREENLANE_LANES_KEY is not set, nor lanes_key in"):
        load_lane_settings()
