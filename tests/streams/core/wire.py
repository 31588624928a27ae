"""Filings and internal records as the batch cores get them: Avro in the Confluent wire format,
with a registry of four schemas held in memory."""

import json

from greenlane.streams.domain.batch import InboundMessage
from greenlane.streams.domain.vocabulary import PRE_ARRIVAL, PRE_LOADING
from greenlane.streams.runtime.serde import WireDecoder, WireEncoder, load_schema
from greenlane.streams.settings import schema_path
from tests.factories import NOW_MS

SCHEMAS = {
    PRE_LOADING: load_schema(schema_path("pre_loading")),
    PRE_ARRIVAL: load_schema(schema_path("pre_arrival")),
}
IDS = {PRE_LOADING: 1, PRE_ARRIVAL: 2}
INTERNAL = {"pattern_observation": 7, "pattern_finding": 8}
SCHEMAS_DECISION = load_schema(schema_path("release"))
TOPIC = {PRE_LOADING: "filing.pre-loading", PRE_ARRIVAL: "filing.pre-arrival"}


def fetch(schema_id):
    by_id = {IDS[s]: SCHEMAS[s] for s in IDS}
    by_id.update({i: load_schema(schema_path(role)) for role, i in INTERNAL.items()})
    return json.dumps(by_id[schema_id]) if schema_id in by_id else None


def internal_decoder(role):
    return WireDecoder(load_schema(schema_path(role)), fetch)


def forwarded(out, role, offset=0):
    """The outcome's records for an internal topic, as the stage reading that topic gets them."""
    enc = WireEncoder(load_schema(schema_path(role)), INTERNAL[role])
    mine = [f for f in out.forwards if f.role == role]
    return [
        InboundMessage(f.key, enc.encode(f.record), role, f.partition, offset + i, NOW_MS)
        for i, f in enumerate(mine)
    ]


def messages(stage, records, start_offset=0):
    enc = WireEncoder(SCHEMAS[stage], IDS[stage])
    return [
        InboundMessage(
            r["house_waybill"].encode(), enc.encode(r), TOPIC[stage], 0, start_offset + i, NOW_MS
        )
        for i, r in enumerate(records)
    ]
