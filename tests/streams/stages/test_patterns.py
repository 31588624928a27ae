import copy
import json
from collections.abc import MutableMapping
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from greenlane.streams.devtools.simulator import generate
from greenlane.streams.settings import ConfigError
from greenlane.streams.stages import quality
from greenlane.streams.stages.patterns import (
    CARRIER_PREFIX,
    NORM_PREFIX,
    OBSERVING_KEY,
    P_CARRIER_DQ_RISING,
    P_NEW_SELLER_VELOCITY,
    P_SPLIT_SHIPMENT,
    P_UNDERVALUATION_VS_NORM,
    SELLER_PREFIX,
    SPLIT_PREFIX,
    detect_batch,
    expire_state,
    load_pattern_settings,
    mark_observing_since,
    norm_key,
    split_group_key,
    state_partition,
)
from greenlane.streams.stages.patterns import DEFAULT_PATH as PATTERNS_FILE
from tests.factories import HOUR_MS, NOW_MS, item, party, pre_arrival

SETTINGS = load_pattern_settings()
DAY_MS = 24 * HOUR_MS
LATER = NOW_MS + 365 * DAY_MS  # "now" of the receiving worker: after every filing below


def only(settings, *enabled):
    """The settings with just the named patterns switched on."""
    sections = ("split_shipment", "undervaluation", "new_seller_velocity", "carrier_dq_rising")
    return replace(
        settings, **{s: replace(getattr(settings, s), enabled=s in enabled) for s in sections}
    )


def eu_150(destination):
    return 150.0 if destination == "DE" else None


def run(records, values, state, settings=SETTINGS, failed=None, now=LATER):
    return detect_batch(
        records,
        values,
        failed if failed is not None else [False] * len(records),
        state,
        now,
        settings,
        eu_150,
    )


def codes(result):
    return [[r["code"] for r in reasons] for reasons in result.reasons]


# ------------------------------------------------------------------------- split shipments

SPLIT = only(SETTINGS, "split_shipment")


def parcel(n, hours=0.0, **over):
    return pre_arrival(f"HWB{n:04d}", filing_time=NOW_MS + int(hours * HOUR_MS), **over)


def test_three_parcels_of_60_across_batches_flag_the_third_and_name_the_group():
    state = {}
    first = run([parcel(1, 0)], [60.0], state, SPLIT)
    second = run([parcel(2, 5)], [60.0], state, SPLIT)
    third = run([parcel(3, 30)], [60.0], state, SPLIT)
    assert codes(first) == codes(second) == [[]]
    assert codes(third) == [[P_SPLIT_SHIPMENT]]
    reason = third.reasons[0][0]
    assert "3 consignments" in reason["evidence"]
    assert "180.00" in reason["evidence"] and "150.00" in reason["evidence"]
    assert all(w in reason["evidence"] for w in ("HWB0001", "HWB0002", "HWB0003"))
    assert reason["contribution"] == SETTINGS.split_shipment.weight
    [group] = third.split_groups
    assert group["reassess"] == ["HWB0001", "HWB0002"]
    assert group["house_waybills"] == ["HWB0001", "HWB0002", "HWB0003"]
    assert group["total"] == 180.0 and group["threshold"] == 150.0
    assert group["reason"] == reason

    # A fourth parcel is flagged too, but the earlier ones were already reported.
    fourth = run([parcel(4, 40)], [60.0], state, SPLIT)
    assert codes(fourth) == [[P_SPLIT_SHIPMENT]]
    assert "240.00" in fourth.reasons[0][0]["evidence"]
    assert fourth.split_groups[0]["reassess"] == []


def test_a_group_within_one_batch_flags_every_member_with_the_group_total():
    result = run([parcel(1, 0), parcel(2, 1), parcel(3, 2)], [60.0] * 3, {}, SPLIT)
    assert codes(result) == [[P_SPLIT_SHIPMENT]] * 3
    assert all("180.00" in r[0]["evidence"] for r in result.reasons)
    assert result.split_groups[0]["reassess"] == []


def test_another_seller_is_another_group():
    other = party("Guangzhou Lucky Goods Ltd", "CN", party_id="SELLER-99")
    result = run(
        [parcel(1, 0), parcel(2, 1), parcel(3, 2, seller=other)], [60.0, 60.0, 60.0], {}, SPLIT
    )
    assert codes(result) == [[], [], []]


def test_consignee_spelling_variants_are_the_same_consignee():
    variant = party("SCHMIDT, Anna", "DE", address="1 main st. 10115  de city")
    result = run(
        [parcel(1, 0), parcel(2, 1, consignee=variant), parcel(3, 2)], [60.0] * 3, {}, SPLIT
    )
    assert codes(result) == [[P_SPLIT_SHIPMENT]] * 3
    assert split_group_key(parcel(1), SPLIT) == split_group_key(parcel(2, consignee=variant), SPLIT)
    # The consignee's name is nowhere in the state key (only a digest is).
    assert "schmidt" not in split_group_key(parcel(1), SPLIT).lower()


def test_a_parcel_outside_the_window_does_not_join_the_group():
    window = SETTINGS.split_shipment.window_hours
    state = {}
    run([parcel(1, 0)], [60.0], state, SPLIT)
    run([parcel(2, window - 1)], [60.0], state, SPLIT)
    result = run([parcel(3, window + 1)], [60.0], state, SPLIT)
    assert codes(result) == [[]]
    # The expired parcel was dropped from the state, not just ignored.
    [entry] = state.values()
    assert [e[0] for e in entry["e"]] == ["HWB0002", "HWB0003"]


def test_a_consignment_over_the_threshold_or_without_one_is_not_a_split():
    state = {}
    result = run([parcel(1, 0), parcel(2, 1)], [60.0, 151.0], state, SPLIT)
    assert codes(result) == [[], []]
    exactly = run([parcel(3, 0), parcel(4, 1)], [75.0, 75.0], {}, SPLIT)
    assert codes(exactly) == [[], []]  # together at, not over, the threshold
    no_threshold = [parcel(n, n, destination_country="US") for n in range(5)]
    assert codes(run(no_threshold, [60.0] * 5, {}, SPLIT)) == [[]] * 5
    assert codes(run([parcel(9)], [None], {}, SPLIT)) == [[]]


def test_late_filings_are_kept_in_time_order_and_the_earliest_is_dropped_first():
    small = replace(SPLIT, split_shipment=replace(SPLIT.split_shipment, max_group_size=2))
    state = {}
    run([parcel(1, 10), parcel(2, 2)], [10.0, 10.0], state, small)
    run([parcel(3, 11)], [10.0], state, small)
    [entry] = state.values()
    assert [e[0] for e in entry["e"]] == ["HWB0001", "HWB0003"]


def test_a_refiled_consignment_is_not_counted_twice():
    state = {}
    run([parcel(1, 0), parcel(2, 1)], [60.0, 60.0], state, SPLIT)
    amended = run([parcel(1, 3)], [70.0], state, SPLIT)
    assert codes(amended) == [[]]
    [entry] = state.values()
    assert sorted((e[0], e[1]) for e in entry["e"]) == [("HWB0001", 70.0), ("HWB0002", 60.0)]
    # Amended above the threshold, it is dutiable on its own and leaves the group.
    run([parcel(1, 4)], [160.0], state, SPLIT)
    assert codes(run([parcel(3, 5)], [60.0], state, SPLIT)) == [[]]


# ------------------------------------------------------------------------- undervaluation

NORM = only(SETTINGS, "undervaluation")


def priced(n, per_kg, hours=0.0, **line):
    kg = 0.5
    return pre_arrival(
        f"N{n:05d}",
        items=[item(net_weight_kg=kg, value=per_kg * kg, **line)],
        filing_time=NOW_MS + int(hours * HOUR_MS),
    ), per_kg * kg


def feed(state, per_kg_values, start=0, failed=False, settings=NORM):
    pairs = [priced(start + n, v, hours=(start + n) / 100) for n, v in enumerate(per_kg_values)]
    return run(
        [p[0] for p in pairs],
        [p[1] for p in pairs],
        state,
        settings,
        failed=[failed] * len(pairs),
    )


def test_the_norm_warms_up_before_it_flags_undervaluation():
    warm = SETTINGS.undervaluation.min_observations
    state = {}
    normal = [20.0 * (1.3 if n % 2 else 0.8) for n in range(warm - 1)]
    result = feed(state, [*normal, 1.0])
    assert codes(result) == [[]] * warm  # the norm had seen only warm - 1 lines
    result = feed(state, [1.0], start=warm)
    assert codes(result) == [[P_UNDERVALUATION_VS_NORM]]
    evidence = result.reasons[0][0]["evidence"]
    assert "HS 610910 from CN" in evidence and "1.00 per kg" in evidence
    norm = state[norm_key("610910", "CN")]
    assert norm["n"] == warm + 1
    assert 12.0 < float(evidence.split("norm of ")[1].split(" ")[0]) < 25.0


def test_only_far_below_the_norm_fires_and_other_goods_have_their_own_norm():
    state = {}
    feed(state, [20.0 * (1.2 if n % 2 else 0.85) for n in range(60)])
    ratio = SETTINGS.undervaluation.ratio
    assert codes(feed(state, [20.0 / (ratio * 0.8)], start=100)) == [[]]
    assert codes(feed(state, [20.0 / (ratio * 2)], start=101)) == [[P_UNDERVALUATION_VS_NORM]]
    other_origin, value = priced(200, 1.0, origin_country="VN")
    assert codes(run([other_origin], [value], state, NORM)) == [[]]


def test_failed_filings_do_not_teach_the_norm_and_outliers_barely_move_it():
    state = {}
    feed(state, [20.0 * (1.2 if n % 2 else 0.85) for n in range(60)])
    before = state[norm_key("610910", "CN")]
    result = feed(state, [0.01], start=100, failed=True)
    assert codes(result) == [[P_UNDERVALUATION_VS_NORM]]
    assert norm_key("610910", "CN") not in result.changed_keys
    assert state[norm_key("610910", "CN")] == before
    feed(state, [0.01] * 5, start=200)
    after = state[norm_key("610910", "CN")]
    assert after["n"] == before["n"] + 5
    assert after["m"] > before["m"] - 0.5  # five lines 2000x below pull it less than 40%


def test_on_synthetic_traffic_the_norm_finds_the_undervalued_consignments():
    """The simulator undervalues some risky consignments blatantly; once the norms are warm, the
    pattern should find most of them, and what else it flags is fraud too (the world's subtler
    undervaluation and misdeclared goods)."""
    filings = [
        f
        for f in generate(30000, seed=21, invalid_share=0.0, start_ms=NOW_MS)
        if f.role == "pre_arrival"
    ]
    records, values = declarations_with_values([f.value for f in filings])
    result = run(records, values, {}, NORM)
    warm = len(records) // 3
    blatant = ["undervaluation" in f.signals for f in filings[warm:]]
    fraud = [
        b or (f.truth.mechanism in ("undervaluation", "misdeclared_hs") and not f.truth.hidden)
        for b, f in zip(blatant, filings[warm:], strict=True)
    ]
    flagged = [bool(c) for c in codes(result)[warm:]]
    assert sum(blatant) > 50
    assert sum(t and f for t, f in zip(fraud, flagged, strict=True)) / sum(flagged) >= 0.95
    assert sum(t and f for t, f in zip(blatant, flagged, strict=True)) / sum(blatant) >= 0.7


# ------------------------------------------------------------------------- velocity

VELOCITY = only(
    replace(
        SETTINGS,
        new_seller_velocity=replace(SETTINGS.new_seller_velocity, max_consignments=5),
    ),
    "new_seller_velocity",
)


def shipments(seller, count, start_hours, spacing_hours=0.5, prefix="V"):
    return [
        pre_arrival(
            f"{prefix}{start_hours}-{n}",
            seller=seller,
            filing_time=NOW_MS + int((start_hours + n * spacing_hours) * HOUR_MS),
        )
        for n in range(count)
    ]


def watched():
    """A state that has been watching traffic for a month."""
    state = {}
    mark_observing_since(state, NOW_MS - 30 * DAY_MS)
    return state


def test_a_new_seller_shipping_fast_is_flagged_an_established_one_is_not():
    newcomer = party("Fresh Start Shop", "CN")
    result = run(shipments(newcomer, 7, 0), [30.0] * 7, watched(), VELOCITY)
    # the burst as a whole: once the sixth arrives, every consignment of the window is flagged
    assert codes(result) == [[P_NEW_SELLER_VELOCITY]] * 7
    assert "6 consignments within 24 h (more than 5)" in result.reasons[0][0]["evidence"]
    assert "7 consignments within 24 h" in result.reasons[6][0]["evidence"]

    state = watched()
    veteran = party("Old Hand Trading", "CN")
    run(shipments(veteran, 1, 0), [30.0], state, VELOCITY)
    burst = run(shipments(veteran, 7, 8 * 24), [30.0] * 7, state, VELOCITY)
    assert codes(burst) == [[]] * 7
    # Established sellers keep no list of consignments.
    assert [v["t"] for k, v in state.items() if k != OBSERVING_KEY] == [None]


def test_a_freshly_started_state_does_not_take_every_seller_for_a_new_one():
    state = {}
    busy = party("Big Busy Bazaar", "CN")
    result = run(shipments(busy, 7, 0), [30.0] * 7, state, VELOCITY)
    assert codes(result) == [[]] * 7
    assert state[OBSERVING_KEY]["since"] == NOW_MS
    # A week on, a seller never seen before is new.
    newcomer = party("Fresh Start Shop", "CN")
    result = run(shipments(newcomer, 7, 8 * 24), [30.0] * 7, state, VELOCITY)
    assert codes(result)[-1] == [P_NEW_SELLER_VELOCITY]


def test_a_redelivered_batch_does_not_inflate_the_count():
    newcomer = party("Fresh Start Shop", "CN")
    state = watched()
    batch = shipments(newcomer, 6, 0)
    first = run(batch, [30.0] * 6, state, VELOCITY)
    assert codes(first) == [[P_NEW_SELLER_VELOCITY]] * 6
    again = run(batch, [30.0] * 6, state, VELOCITY)
    assert codes(again) == [[]] * 6 and again.flags == []  # flagged once, counted once
    seventh = run(shipments(newcomer, 7, 0)[6:], [30.0], state, VELOCITY)
    assert "; 7 consignments within" in seventh.reasons[0][0]["evidence"]


def test_a_burst_over_several_batches_flags_the_earlier_ones_with_their_partitions():
    newcomer = party("Fresh Start Shop", "CN")
    state = watched()
    parcels = shipments(newcomer, 7, 0)
    early = run(parcels[:4], [30.0] * 4, state, VELOCITY)
    assert codes(early) == [[]] * 4 and early.flags == []
    late = detect_batch(
        parcels[4:], [30.0] * 3, [False] * 3, state, LATER, VELOCITY, eu_150, partitions=[2] * 3
    )
    assert codes(late) == [[P_NEW_SELLER_VELOCITY]] * 3
    assert [(f["house_waybill"], f["partition"]) for f in late.flags] == [
        (p["house_waybill"], 0) for p in parcels[:4]
    ]
    assert {f["reason"]["code"] for f in late.flags} == {P_NEW_SELLER_VELOCITY}


def test_the_same_consignments_are_flagged_whatever_order_they_arrive_in():
    def flagged(order):
        state, out = watched(), set()
        for n in order:
            result = run([parcels[n]], [30.0], state, VELOCITY)
            out |= {parcels[n]["house_waybill"] for r in result.reasons if r}
            out |= {f["house_waybill"] for f in result.flags}
        return out

    newcomer = party("Fresh Start Shop", "CN")
    parcels = shipments(newcomer, 7, 0)
    assert (
        flagged(range(7)) == flagged([6, 0, 5, 1, 4, 2, 3]) == {p["house_waybill"] for p in parcels}
    )


def test_scoped_state_keeps_partitions_apart():
    state = {}
    run_scoped = lambda scope: detect_batch(  # noqa: E731
        [parcel(1, 0)], [60.0], [False], state, LATER, SETTINGS, eu_150, scope=scope
    )
    run_scoped(0)
    run_scoped(3)
    assert {state_partition(k) for k in state} == {0, 3}
    assert len(state) == 2 * len({k.rsplit("@", 1)[0] for k in state})


def test_a_new_seller_keeps_a_bounded_list_and_says_at_least():
    cfg = replace(VELOCITY.new_seller_velocity, track_at_most=8)
    state = watched()
    busy = party("Flood Shop", "CN")
    result = run(
        shipments(busy, 12, 0, spacing_hours=0.1),
        [30.0] * 12,
        state,
        replace(VELOCITY, new_seller_velocity=cfg),
    )
    assert "at least 8 consignments" in result.reasons[-1][0]["evidence"]
    [entry] = [v for k, v in state.items() if k.startswith(SELLER_PREFIX)]
    assert len(entry["t"]) == len(entry["w"]) == 8
    assert entry["w"][-1] == "V0-11"  # the latest are kept


def test_a_new_seller_spread_over_days_is_not_flagged():
    slow = party("Slow Steady Store", "CN")
    state = watched()
    result = run(shipments(slow, 12, 0, spacing_hours=6), [30.0] * 12, state, VELOCITY)
    assert codes(result) == [[]] * 12


# ------------------------------------------------------------------------- carrier DQ

CARRIER = only(SETTINGS, "carrier_dq_rising")


def filings_of(carrier, start_hours, count, spacing_hours):
    return [
        pre_arrival(
            f"C{carrier}{start_hours}-{n}",
            carrier_id=carrier,
            filing_time=NOW_MS + int((start_hours + n * spacing_hours) * HOUR_MS),
        )
        for n in range(count)
    ]


def test_a_carrier_whose_failure_rate_jumps_is_flagged_a_steady_one_is_not():
    state = {}
    # Twenty days at 2% failures, for two carriers.
    for day in range(20):
        for carrier in ("POST-A", "POST-B"):
            batch = filings_of(carrier, day * 24, 100, 0.24)
            failed = [n % 50 == 0 for n in range(100)]
            result = run(batch, [30.0] * 100, state, CARRIER, failed)
            assert codes(result) == [[]] * 100
    # Then, in six hours, POST-A fails 40% while POST-B stays steady.
    slipping = filings_of("POST-A", 20 * 24, 150, 0.04)
    steady = filings_of("POST-B", 20 * 24, 150, 0.04)
    out = run(
        slipping + steady,
        [30.0] * 300,
        state,
        CARRIER,
        [n % 5 < 2 for n in range(150)] + [n % 50 == 0 for n in range(150)],
    )
    flagged_a = [c for c in codes(out)[:150] if c == [P_CARRIER_DQ_RISING]]
    assert len(flagged_a) > 50
    assert not any(codes(out)[150:])
    assert "POST-A" in out.reasons[149][0]["evidence"]
    assert out.changed_keys == {CARRIER_PREFIX + "POST-A", CARRIER_PREFIX + "POST-B"}


# ------------------------------------------------------------------------- state discipline


class RecordingState(MutableMapping):
    """A dict that remembers which keys were written or deleted."""

    def __init__(self, data):
        self.data = data
        self.written = set()

    def __getitem__(self, key):
        return self.data[key]

    def __setitem__(self, key, value):
        self.written.add(key)
        self.data[key] = value

    def __delitem__(self, key):
        self.written.add(key)
        del self.data[key]

    def __iter__(self):
        return iter(self.data)

    def __len__(self):
        return len(self.data)


RATES = quality.load_quality_rules().reference_rates


def simulated(count, seed=11):
    """Pre-arrival declarations of synthetic traffic, with their values in the reference
    currency; sellers and consignees repeat as in real traffic."""
    return declarations_with_values(
        [
            f.value
            for f in generate(count, seed=seed, invalid_share=0.0, start_ms=NOW_MS)
            if f.role == "pre_arrival"
        ]
    )


def declarations_with_values(records):
    values = []
    for r in records:
        rates = [RATES.get(i["currency"]) for i in r["items"]]
        ok = None not in rates
        values.append(
            sum(i["value"] * x for i, x in zip(r["items"], rates, strict=True)) if ok else None
        )
    return records, values


def with_split_groups(records, values, groups=10):
    """Synthetic traffic with split shipments woven in: for each group, one parcel of 60 in the
    first half of the stream and two in the second (the simulator's repeat buyers rarely buy
    from the same seller twice). Returns the records, their values and where the second half
    starts."""
    half = len(records) // 2
    halves = [(list(records[:half]), list(values[:half])), (records[half:], values[half:])]
    out_records, out_values = [], []
    for h, (recs, vals) in enumerate(halves):
        recs, vals = list(recs), list(vals)
        for g in reversed(range(groups)):
            for n, at in reversed(list(enumerate((g * 50, g * 50 + 20)[: 1 + h]))):
                buyer = party(f"Split Buyer {g}", "DE", address=f"{g} Split Lane, 10115 Berlin")
                t = recs[at]["filing_time"]
                recs.insert(at, pre_arrival(f"SPLIT{g}-{h + n}", consignee=buyer, filing_time=t))
                vals.insert(at, 60.0)
        out_records += recs
        out_values += vals
        if h == 0:
            second = len(out_records)
    return out_records, out_values, second


def test_changed_keys_are_exactly_the_writes_and_nothing_read_is_mutated():
    records, values, half = with_split_groups(*simulated(3000))
    failed = [n % 7 == 0 for n in range(len(records))]
    plain = watched()
    first = run(records[:half], values[:half], plain, failed=failed[:half])
    assert first.changed_keys == set(plain) - {OBSERVING_KEY}
    originals = dict(plain)  # the very objects the next batch will read
    snapshot = copy.deepcopy(plain)
    state = RecordingState(plain)
    result = run(records[half:], values[half:], state, failed=failed[half:])
    assert result.changed_keys == state.written
    for key, value in originals.items():
        assert value == snapshot[key], f"{key} was changed in place"
        if key not in result.changed_keys:
            assert plain[key] is value
    kinds = {k.split(":", 1)[0] + ":" for k in result.changed_keys}
    assert kinds == {SPLIT_PREFIX, NORM_PREFIX, SELLER_PREFIX, CARRIER_PREFIX}
    found = {c for reasons in codes(result) for c in reasons}
    assert {P_SPLIT_SHIPMENT, P_NEW_SELLER_VELOCITY, P_UNDERVALUATION_VS_NORM} <= found
    assert sorted(w for g in result.split_groups for w in g["reassess"]) == [
        f"SPLIT{g}-0" for g in range(10)
    ]


def test_results_depend_only_on_inputs_and_state_and_survive_a_json_round_trip():
    records, values, _ = with_split_groups(*simulated(2000, seed=5))
    failed = [n % 11 == 0 for n in range(len(records))]
    batches = [
        (records[i : i + 100], values[i : i + 100], failed[i : i + 100])
        for i in range(0, len(records), 100)
    ]

    def replay(through_json):
        state, out = watched(), []
        for recs, vals, fails in batches:
            result = run(recs, vals, state, failed=fails)
            out.append((result.reasons, sorted(result.changed_keys), result.split_groups))
            if through_json:  # as a JSON-serialised table would give it back
                state = json.loads(json.dumps(state, allow_nan=False))
        return out

    assert replay(False) == replay(True)


def test_expiry_forgets_each_kind_after_its_memory():
    state = {}
    run([parcel(1, 0)], [60.0], state)
    keys = set(state) - {OBSERVING_KEY}
    assert {k.split(":")[0] + ":" for k in keys} == {
        SPLIT_PREFIX,
        NORM_PREFIX,
        SELLER_PREFIX,
        CARRIER_PREFIX,
    }
    assert expire_state(state, NOW_MS + HOUR_MS, SETTINGS) == set()
    window = SETTINGS.split_shipment.window_hours * HOUR_MS
    gone = expire_state(state, NOW_MS + window + 1, SETTINGS)
    assert {k.split(":")[0] + ":" for k in gone} == {SPLIT_PREFIX}
    forget = max(
        SETTINGS.undervaluation.forget_after_days,
        SETTINGS.new_seller_velocity.forget_after_days,
        SETTINGS.carrier_dq_rising.forget_after_days,
    )
    gone |= expire_state(state, NOW_MS + int(forget * DAY_MS) + 1, SETTINGS)
    assert gone == keys
    assert list(state) == [OBSERVING_KEY]  # when watching began is never forgotten


def test_a_stale_seller_is_new_again():
    seller = party("Comeback Kid Store", "CN")
    state = watched()
    run(shipments(seller, 1, 0), [30.0], state, VELOCITY)
    back = (SETTINGS.new_seller_velocity.forget_after_days + 1) * 24
    result = run(shipments(seller, 7, back), [30.0] * 7, state, VELOCITY)
    assert codes(result)[-1] == [P_NEW_SELLER_VELOCITY]


# ------------------------------------------------------------------------- configuration


def write_settings(tmp_path: Path, change) -> Path:
    data = yaml.safe_load(PATTERNS_FILE.read_text())
    change(data)
    path = tmp_path / "patterns.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize(
    "change, named",
    [
        (lambda d: d["split_shipment"].update(window_hours=0), "split_shipment.window_hours"),
        (lambda d: d["split_shipment"].update(min_consignments=1), "min_consignments"),
        (lambda d: d["split_shipment"].pop("weight"), "missing key(s) ['weight']"),
        (lambda d: d["split_shipment"].update(window=72), "unknown key(s) ['window']"),
        (lambda d: d["undervaluation"].update(ratio=1), "undervaluation.ratio"),
        (lambda d: d["undervaluation"].update(min_observations="30"), "min_observations"),
        (lambda d: d["new_seller_velocity"].update(enabled="yes"), "enabled"),
        (lambda d: d["new_seller_velocity"].update(track_at_most=3), "track_at_most"),
        (lambda d: d["carrier_dq_rising"].update(min_increase=2), "min_increase"),
        (lambda d: d["carrier_dq_rising"].update(baseline_days=0.5), "baseline_days"),
        (lambda d: d["carrier_dq_rising"].update(description=" "), "description"),
        (lambda d: d.pop("carrier_dq_rising"), "missing key(s) ['carrier_dq_rising']"),
        (lambda d: d.update(velocity={}), "unknown key(s) ['velocity']"),
        (lambda d: d["normalisation"].update(ignore_tokens="mr"), "ignore_tokens"),
        (lambda d: d["normalisation"]["abbreviations"].update(street=""), "abbreviations.street"),
    ],
)
def test_config_errors_name_the_file_and_key(tmp_path, change, named):
    path = write_settings(tmp_path, change)
    with pytest.raises(ConfigError) as err:
        load_pattern_settings(path)
    assert str(path) in str(err.value)
    assert named in str(err.value)


def test_missing_or_broken_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_pattern_settings(tmp_path / "nope.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("split_shipment: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_pattern_settings(broken)


def test_a_disabled_pattern_neither_fires_nor_writes():
    result = run([parcel(1, 0), parcel(2, 1), parcel(3, 2)], [60.0] * 3, {}, only(SETTINGS))
    assert codes(result) == [[], [], []]
    assert result.changed_keys == set()
