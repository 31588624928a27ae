import json

import pytest

from greenlane.streams.domain.batch import DecodeFailure
from greenlane.streams.runtime.serde import (
    UNDECODABLE,
    UNKNOWN_SCHEMA_ID,
    WRONG_SCHEMA,
    WireDecoder,
    WireEncoder,
    load_schema,
    peek_schema_id,
    strip_logical_types,
)
from greenlane.streams.settings import schema_path

RESPONSE = load_schema(schema_path("carrier_response"))


def response(**over):
    r = {
        "response_id": "r1",
        "carrier_id": "C1",
        "message_id": "m1",
        "house_waybill": "H1",
        "stage": "PRE_ARRIVAL",
        "status": "ACCEPTED",
        "outcome": "RELEASE",
        "codes": [{"code": "X", "message": "y"}],
        "responded_at": 1_795_000_000_123,
    }
    r.update(over)
    return r


def fetcher(registry: dict[int, dict]):
    calls = []

    def fetch(schema_id):
        calls.append(schema_id)
        s = registry.get(schema_id)
        return None if s is None else json.dumps(s)

    fetch.calls = calls
    return fetch


def test_round_trip_keeps_timestamps_as_epoch_millis():
    enc = WireEncoder(RESPONSE, 42)
    raw = enc.encode(response())
    assert raw[:5] == b"\x00\x00\x00\x00\x2a"
    assert peek_schema_id(raw) == 42
    [decoded] = WireDecoder(RESPONSE, fetcher({42: RESPONSE})).decode_batch([raw])
    assert decoded == response()
    assert isinstance(decoded["responded_at"], int)


def test_failures_come_back_in_place_and_do_not_stop_the_batch():
    good = WireEncoder(RESPONSE, 42).encode(response())
    unknown = WireEncoder(RESPONSE, 7).encode(response())
    dec = WireDecoder(RESPONSE, fetcher({42: RESPONSE}))
    out = dec.decode_batch([b"not avro", None, good[:9], unknown, good, good + b"xx"])
    codes = [o.error_code if isinstance(o, DecodeFailure) else "ok" for o in out]
    assert codes == [UNDECODABLE, UNDECODABLE, UNDECODABLE, UNKNOWN_SCHEMA_ID, "ok", UNDECODABLE]
    assert out[3].schema_id == 7


def test_schema_of_another_record_is_refused():
    decision = load_schema(schema_path("release"))
    raw = WireEncoder(RESPONSE, 5).encode(response())
    [out] = WireDecoder(decision, fetcher({5: RESPONSE})).decode_batch([raw])
    assert isinstance(out, DecodeFailure) and out.error_code == WRONG_SCHEMA
    assert "CarrierResponse" in out.message


def test_older_writer_schema_is_resolved_to_reader_defaults():
    old = json.loads(json.dumps(RESPONSE))
    old["fields"] = [f for f in old["fields"] if f["name"] != "carrier_id"]
    raw = WireEncoder(old, 3).encode({k: v for k, v in response().items() if k != "carrier_id"})
    [out] = WireDecoder(RESPONSE, fetcher({3: old})).decode_batch([raw])
    assert out["carrier_id"] is None and out["outcome"] == "RELEASE"


def test_schema_lookups_are_cached_per_id():
    fetch = fetcher({42: RESPONSE})
    raw = WireEncoder(RESPONSE, 42).encode(response())
    WireDecoder(RESPONSE, fetch).decode_batch([raw] * 50)
    assert fetch.calls == [42]


def test_registry_errors_become_unknown_schema_failures():
    def broken(_):
        raise ConnectionError("registry down")

    raw = WireEncoder(RESPONSE, 42).encode(response())
    [out] = WireDecoder(RESPONSE, broken).decode_batch([raw])
    assert out.error_code == UNKNOWN_SCHEMA_ID and "registry down" in out.message


@pytest.mark.parametrize("value", [b"", b"\x00\x00", b"\x01\x00\x00\x00\x01abc"])
def test_no_header(value):
    assert peek_schema_id(value) is None


def test_strip_logical_types_is_deep():
    s = strip_logical_types(load_schema(schema_path("pre_arrival")))
    assert "logicalType" not in json.dumps(s)


def test_a_burst_of_random_schema_ids_costs_a_bounded_number_of_lookups():
    fetch = fetcher({42: RESPONSE})
    body = WireEncoder(RESPONSE, 42).encode(response())[5:]
    burst = [b"\x00" + (1000 + i).to_bytes(4, "big") + body for i in range(100)]
    good = WireEncoder(RESPONSE, 42).encode(response())
    out = WireDecoder(RESPONSE, fetch).decode_batch([good, *burst])
    assert isinstance(out[0], dict)
    assert all(o.error_code == UNKNOWN_SCHEMA_ID for o in out[1:])
    assert len(fetch.calls) == WireDecoder.NEW_IDS_PER_BATCH  # 42 and the first 7 of the burst
