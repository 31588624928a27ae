"""Pins what runtime.state relies on in faust-streaming's table stores (docs/faust-internals.md)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import faust
import pytest
from cryptography.exceptions import InvalidTag
from faust.types import TP
from hypothesis import given, settings
from hypothesis import strategies as st

from greenlane.streams.domain.state import Overlay
from greenlane.streams.runtime.state import (
    SEAL_MARK,
    TableState,
    _decode,
    _encode,
    _encode_key,
    by_filing_partition,
    by_key_hash,
    by_key_partition,
    sealed_table,
    worker_ready,
)
from greenlane.streams.stages.patterns import scoped, state_partition

PARTITIONS = 4


class Sink:
    """Collects changelog records as a batch's delivery would produce them."""

    def __init__(self) -> None:
        self.records: list[tuple[str, int, bytes, bytes | None]] = []

    def changelog(self, state, topic, partition, key, value) -> None:
        self.records.append((topic, partition, key, value))


def batch(state: TableState, changes: dict) -> Overlay:
    """A batch's overlay with these changes (None deletes)."""
    view = Overlay(state.view())
    for key, value in changes.items():
        if value is None:
            view.pop(key, None)
        else:
            view[key] = value
    return view


def make_table(tmp_path: Path, store: str, monkeypatch) -> faust.Table:
    app = faust.App(f"state-test-{store[:3]}", store=store, datadir=str(tmp_path))
    table = sealed_table(app, "links", default=None, partitions=PARTITIONS)
    actives = {TP(table.changelog_topic_name, p) for p in range(PARTITIONS)}
    monkeypatch.setattr(app.assignor, "assigned_actives", lambda: actives)
    return table


@pytest.fixture(params=["rocksdb://", "memory://"])
def table(request, tmp_path, monkeypatch) -> faust.Table:
    return make_table(tmp_path, request.param, monkeypatch)


def test_entries_go_to_the_partition_greenlane_chooses_and_move_with_it(table) -> None:
    state = TableState(table, by_filing_partition, movable=True)
    topic = table.changelog_topic_name
    sink = Sink()
    view = Overlay(state.view())
    view["H1"] = {"partition": 2, "route": "RELEASE"}
    assert state.commit(view, sink) == 1
    assert [r[:3] for r in sink.records] == [(topic, 2, b'"H1"')]
    assert _decode(sink.records[0][3]) == {"partition": 2, "route": "RELEASE"}
    assert state.view()["H1"] == {"partition": 2, "route": "RELEASE"}
    assert "H1" in state.view() and "H2" not in state.view()

    sink = Sink()
    state.commit(batch(state, {"H1": {"partition": 3, "route": "INSPECT"}}), sink)
    assert [(p, v and _decode(v)) for _, p, _, v in sink.records] == [
        (2, None),  # the old partition's copy is deleted, in the store and the changelog
        (3, {"partition": 3, "route": "INSPECT"}),
    ]
    assert dict(state.view().items()) == {"H1": {"partition": 3, "route": "INSPECT"}}

    sink = Sink()
    state.commit(batch(state, {"H1": None, "never-stored": None}), sink)
    assert [(p, v) for _, p, _, v in sink.records] == [(3, None)]
    assert state.view().get("H1") is None and len(state.view()) == 0


def test_rocksdb_bytes_are_what_faust_itself_reads_and_recovers(tmp_path, monkeypatch) -> None:
    table = make_table(tmp_path, "rocksdb://", monkeypatch)
    state = TableState(table, by_key_hash(PARTITIONS))
    assert state.on_disk
    value = {"l": 5, "amounts": [1.5, 2.0], "name": "Łódź"}
    state.commit(batch(state, {"seller:ab": value}), Sink())
    store = table.data
    kb = store._encode_key("seller:ab")
    partition = by_key_hash(PARTITIONS)("seller:ab", value)
    assert store._decode_value(store._db_for_partition(partition).get(kb)) == value
    assert store["seller:ab"] == value  # Faust's own read path, outside an event
    # what recovery would apply from the changelog is byte for byte what is stored
    sink = Sink()
    state.commit(batch(state, {"seller:ab": value}), sink)
    [(_, _, key, raw)] = sink.records
    assert key == kb and raw == store._db_for_partition(partition).get(kb)
    # the recovery consumer decodes changelog records with the changelog topic's serializer
    topic = table.changelog_topic
    assert table.app.tables[table.name] is table and topic.get_topic_name().endswith("-changelog")
    assert (
        table.app.serializers.loads_value(topic.value_type, raw, serializer=topic.value_serializer)
        == value
    )


def test_values_are_sealed_in_the_changelog_and_on_disk(tmp_path, monkeypatch) -> None:
    """A link entry holds the filing, names included: neither the changelog record nor the
    stored bytes show it; a value written before the seal still reads, a changed one never."""
    table = make_table(tmp_path, "rocksdb://", monkeypatch)
    state = TableState(table, by_key_hash(PARTITIONS))
    value = {"consignee": "Jane Example, 1 Sample Street", "partition": 1}
    sink = Sink()
    state.commit(batch(state, {"H9": value}), sink)
    [(_, _, key, raw)] = sink.records
    stored = table.data._db_for_partition(by_key_hash(PARTITIONS)("H9", value)).get(key)
    for sealed in (raw, stored):
        assert sealed.startswith(SEAL_MARK) and b"Jane" not in sealed and b"Sample" not in sealed
        assert _decode(sealed) == value
    assert _decode(b'{"partition":1}') == {"partition": 1}  # clear JSON from before the seal
    tampered = raw[:-1] + bytes([raw[-1] ^ 1])
    with pytest.raises(InvalidTag):
        _decode(tampered)
    assert _encode(value) != raw  # a fresh nonce each time


def test_persisted_offsets_only_move_forward(tmp_path, monkeypatch) -> None:
    table = make_table(tmp_path, "rocksdb://", monkeypatch)
    state = TableState(table, by_filing_partition)
    state.commit(batch(state, {"H1": {"partition": 1}}), Sink())
    tp = TP(table.changelog_topic_name, 1)
    state.persisted({1: 41})
    assert table.data.persisted_offset(tp) == 41
    state.persisted({1: 40})  # a batch confirmed late does not move recovery backwards
    assert table.data.persisted_offset(tp) == 41
    state.persisted({1: 57})
    assert table.data.persisted_offset(tp) == 57
    assert "__faust" not in "".join(state.view())  # the offset key is not an entry


def test_table_size_counts_the_entries(table) -> None:
    state = TableState(table, by_filing_partition)
    state.commit(
        batch(state, {f"H{i}": {"partition": i % PARTITIONS, "n": i} for i in range(50)}), Sink()
    )
    entries, size = state.size()
    assert entries == 50 or (state.on_disk and 40 <= entries <= 60)  # RocksDB estimates
    assert size > 0


def test_a_worker_that_has_not_joined_its_group_is_not_ready() -> None:
    app = faust.App("state-test-ready", broker="kafka://127.0.0.1:1")
    assert worker_ready(app) == (False, "no partitions assigned yet")


def flags(actives: set, rebalancing: bool = False, recovered: bool = True) -> SimpleNamespace:
    """What worker_ready reads of a Faust app."""
    completed = SimpleNamespace(is_set=lambda: recovered)
    return SimpleNamespace(
        crashed=False,
        rebalancing=rebalancing,
        assignor=SimpleNamespace(assigned_actives=lambda: actives),
        in_recovery=False,
        tables=SimpleNamespace(recovery=SimpleNamespace(completed=completed)),
    )


def test_a_spare_worker_the_group_gave_no_partition_is_ready_once_the_group_answered() -> None:
    assert worker_ready(flags(set()), assigned=False) == (False, "no partitions assigned yet")
    ok, why = worker_ready(flags(set()), assigned=True)
    assert ok and why.startswith("ready, idle")
    assert worker_ready(flags(set(), rebalancing=True), assigned=True) == (False, "rebalancing")
    assert worker_ready(flags({"tp"}, recovered=False), True) == (False, "recovering tables")
    assert worker_ready(flags({"tp"}), assigned=True) == (True, "ready")


def test_a_sweep_reads_the_table_in_pieces(table) -> None:
    state = TableState(table, by_filing_partition)
    entries = {f"H{i}": {"partition": i % PARTITIONS, "n": i} for i in range(25)}
    state.commit(batch(state, entries), Sink())
    pieces = list(state.chunks(10))
    assert [len(p) for p in pieces] == [10, 10, 5]
    assert {k: v for p in pieces for k, v in p.items()} == entries


def test_keys_that_name_their_partition_are_placed_there_and_older_ones_by_hash():
    place = by_key_partition(state_partition, PARTITIONS)
    assert place(scoped("seller:ab", 1), {}) == 1
    assert place("seller:ab", {}) == by_key_hash(PARTITIONS)("seller:ab", {})


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_keys_keep_the_bytes_json_gave_them(key: str) -> None:
    """Entries already in the stores and changelogs were keyed by json.dumps: a key must find
    them whatever characters it holds (orjson differs on non-ASCII and DEL)."""
    assert _encode_key(key) == json.dumps(key, separators=(",", ":")).encode()


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(JSON_VALUES)
def test_values_read_back_as_json_wrote_them(value) -> None:
    """What a value's bytes decode to is what json's would, and entries written before orjson
    read back unchanged (integers are Avro longs: 64 bits)."""
    as_json = json.dumps(value, separators=(",", ":")).encode()
    assert _decode(_encode(value)) == json.loads(as_json)
    assert _decode(as_json) == json.loads(as_json)


def test_a_value_json_wrote_with_nan_still_reads() -> None:
    assert _decode(b'{"x":NaN}')["x"] != _decode(b'{"x":NaN}')["x"]
