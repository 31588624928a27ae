"""The seller-keyed pattern stage: observations in, findings for the waybills' partitions out."""

import json

from greenlane.streams.domain.batch import InboundMessage
from greenlane.streams.domain.state import Overlay
from greenlane.streams.domain.vocabulary import PRE_ARRIVAL
from greenlane.streams.runtime.serde import WireEncoder, load_schema
from greenlane.streams.settings import schema_path
from greenlane.streams.stages.patterns import seller_partition
from tests.factories import NOW_MS, item, party, pre_arrival
from tests.streams.core.wire import IDS, INTERNAL, SCHEMAS, TOPIC, forwarded

BUYER = party("Jan Kowalski", "PL", address="ul. Lipowa 5, 00-001 Warszawa")


def parcel(waybill, **over):
    return pre_arrival(
        waybill, destination_country="PL", consignee=BUYER, items=[item(value=60.0)], **over
    )


def on_partition(records, partition, offset=0):
    """Pre-arrival messages as if filed on ``partition`` of the filing topic."""
    enc = WireEncoder(SCHEMAS[PRE_ARRIVAL], IDS[PRE_ARRIVAL])
    return [
        InboundMessage(
            r["house_waybill"].encode(),
            enc.encode(r),
            TOPIC[PRE_ARRIVAL],
            partition,
            offset + i,
            NOW_MS,
        )
        for i, r in enumerate(records)
    ]


def test_observations_go_to_the_sellers_partition_and_findings_back_to_each_waybills(
    assessor, sellers
):
    state: dict = {}
    found = []
    for n, partition in enumerate((0, 3, 1)):  # one group, filed on three partitions
        msgs = on_partition([parcel(f"XP{n}")], partition, offset=n)
        out = assessor.assess(PRE_ARRIVAL, msgs, {}, NOW_MS + n, patterns={})
        [obs] = out.forwards
        assert obs.partition == seller_partition(obs.record["seller_key"], 4)
        assert obs.record["filing_partition"] == partition
        view = Overlay(state)
        result = sellers.assess(forwarded(out, "pattern_observation"), view, NOW_MS + n)
        state.update(view.changes())
        found += result.forwards
    sent = {f.record["house_waybill"]: f.partition for f in found}
    assert sent == {"XP0": 0, "XP1": 3, "XP2": 1}  # each to the partition it filed on
    assert {f.key for f in found} == {b"XP0", b"XP1", b"XP2"}
    assert {f.record["reason"]["code"] for f in found} == {"P_SPLIT_SHIPMENT"}
    assert len({f.record["finding_id"] for f in found}) == 3
    # the state is kept for the seller's partition, with no names in it
    assert {key.rsplit("@", 1)[1] for key in state} == {str(obs.partition)}
    assert "Kowalski" not in json.dumps(state)


def test_an_undecodable_observation_is_dead_lettered_without_a_carrier_response(sellers):
    bad = InboundMessage(b"k", b"\x00garbage", "internal.pattern-observation", 2, 7, NOW_MS)
    out = sellers.assess([bad], {}, NOW_MS)
    [(key, dead)] = out.dead_letters
    assert key == b"k" and dead["source_partition"] == 2 and dead["source_offset"] == 7
    assert out.responses == [] and out.forwards == []


def test_findings_encode_with_their_schema(assessor, sellers):
    out = assessor.assess(
        PRE_ARRIVAL, on_partition([parcel(f"FE{n}") for n in range(3)], 0), {}, NOW_MS, patterns={}
    )
    result = sellers.assess(forwarded(out, "pattern_observation"), {}, NOW_MS)
    enc = WireEncoder(load_schema(schema_path("pattern_finding")), INTERNAL["pattern_finding"])
    assert len(result.forwards) == 3
    assert all(enc.encode(f.record) for f in result.forwards)


def test_an_observation_redelivered_republishes_its_findings_and_counts_once(assessor, sellers):
    state: dict = {}
    parcels = [parcel(f"RD{n}") for n in range(3)]
    out = assessor.assess(PRE_ARRIVAL, on_partition(parcels, 0), {}, NOW_MS, patterns={})
    obs = forwarded(out, "pattern_observation")
    log: dict = {}
    committed = Overlay(state)
    first = sellers.assess(obs, committed, NOW_MS, log)
    assert committed.changes()
    state.update(committed.changes())
    again = Overlay(state)
    replay = sellers.assess(obs, again, NOW_MS, log)
    assert sorted(f.record["house_waybill"] for f in first.forwards) == ["RD0", "RD1", "RD2"]
    assert replay.forwards == first.forwards
    assert again.changes() == {}  # counted once
