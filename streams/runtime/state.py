"""greenlane's tables on Faust: the one module that touches Faust's table storage.

The stages see a table only through a per-batch :class:`~greenlane.streams.domain.state.Overlay`
whose base is :meth:`TableState.view`. After a batch, :meth:`TableState.commit` writes the
overlay's changes to the local store (RocksDB or memory) and hands the changelog records to
the batch's delivery; the records' changelog offsets become the store's persisted offsets once
the broker confirmed them, so a restarted worker recovers only what it has not got on disk.

Why not ``table[key] = value``: Faust's write path takes the partition from the *current
event* (so it cannot write from a timer, nor to the partition greenlane chooses) and produces
each changelog record with its own future, which costs more than the whole assessment. What
this module relies on in faust-streaming 0.15.3 is listed in docs/faust-internals.md, and
tests/streams/runtime/test_state.py pins it against a real worker's tables.
"""

from __future__ import annotations

import json
import os
import zlib
from collections.abc import Callable, Iterator, Mapping
from functools import cache
from itertools import islice
from typing import Any, Protocol

import orjson
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from faust.serializers import codecs
from faust.types import TP

from greenlane.streams.domain.state import Overlay
from greenlane.streams.settings.secrets import pseudonymiser

SIZE_SAMPLE = 200

Placement = Callable[[str, Any], int]
"""The changelog partition of an entry, given its key and value (the old value for a deletion)."""


class ChangelogSink(Protocol):
    """Where the changelog records go: one batch's delivery (runtime.publisher)."""

    def changelog(
        self, state: TableState, topic: str, partition: int, key: bytes, value: bytes | None
    ) -> None: ...


def by_filing_partition(_key: str, value: Any) -> int:
    """Entries about one consignment live in the partition of the filing that wrote them: the
    one Faust restores together with that filing's source partition."""
    return value["partition"]


def by_key_hash(partitions: int) -> Placement:
    """Entries keyed by something else than a filing: a stable hash of the key."""

    def place(key: str, _value: Any) -> int:
        return zlib.crc32(key.encode()) % partitions

    return place


def by_key_partition(partition_of: Callable[[str], int], partitions: int) -> Placement:
    """Entries whose key names the partition whose traffic they count (``partition_of``);
    keys written before they did are placed by a hash of the key, where they were."""
    legacy = by_key_hash(partitions)

    def place(key: str, value: Any) -> int:
        try:
            return partition_of(key)
        except (IndexError, ValueError):
            return legacy(key, value)

    return place


def _encode_key(key: Any) -> bytes:
    """A key's bytes exactly as ``json.dumps`` wrote them (non-ASCII escaped): the keys already
    in the stores and changelogs. orjson writes the same bytes for ASCII keys but DEL."""
    if isinstance(key, str) and key.isascii() and "\x7f" not in key:
        return orjson.dumps(key)
    return json.dumps(key, separators=(",", ":")).encode()


# A sealed value: this mark, a 12-byte nonce, then the AES-GCM ciphertext and its tag. JSON
# never starts with 0xA5, so values written before the seal (clear JSON) are still read.
SEAL_MARK = b"\xa5GL1"
_NONCE_BYTES = 12


@cache
def _aead() -> AESGCM:
    """The seal on table values, keyed from the deployment's pseudonymisation key: the
    changelog topics and the files on disk hold link entries (the filing, names included, for
    a re-assessment) and replay logs (decisions with watchlist evidence) only sealed."""
    return AESGCM(pseudonymiser().derive("table seal v1"))


def _encode(value: Any) -> bytes:
    """A value's bytes, sealed: orjson, two to three times faster than json on the link and
    replay-log entries; what it cannot write (keys that are not strings) goes through json.
    What orjson would not read back as json does (non-finite floats, written as null;
    integers past 64 bits, read as floats) never reaches a table: the bounds refuse
    non-finite amounts on the way in (stages.bounds) and integers are Avro longs."""
    try:
        clear = orjson.dumps(value)
    except TypeError:
        clear = json.dumps(value, separators=(",", ":")).encode()
    nonce = os.urandom(_NONCE_BYTES)
    return SEAL_MARK + nonce + _aead().encrypt(nonce, clear, None)


def _decode(raw: bytes) -> Any:
    """Either encoder's bytes, sealed or (written before the seal) not; json reads what
    orjson refuses (NaN written by json.dumps). A seal that does not open (another key, or
    bytes changed) raises cryptography's InvalidTag: never read as something else."""
    if raw[: len(SEAL_MARK)] == SEAL_MARK:
        start = len(SEAL_MARK)
        nonce = raw[start : start + _NONCE_BYTES]
        raw = _aead().decrypt(nonce, raw[start + _NONCE_BYTES :], None)
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return json.loads(raw)


class _SealedJSON(codecs.Codec):
    """The tables' value serializer, for what Faust itself reads from a changelog (the memory
    store's recovery, standbys); greenlane's own writes go through ``_encode``."""

    def _dumps(self, obj: Any) -> bytes:
        return _encode(obj)

    def _loads(self, s: bytes) -> Any:
        return _decode(s)


SEALED = "greenlane-sealed-json"
codecs.register(SEALED, _SealedJSON())


def sealed_table(app: Any, name: str, **options: Any) -> Any:
    """``app.Table(name, **options)`` whose values are sealed in its changelog and store.

    Faust takes a table's value serializer only from a ``value_type`` model, and builds the
    changelog topic from it in the constructor; so both are set again here, before the app
    starts (its table manager reads the topic only then). tests/streams/runtime/test_state.py
    pins that Faust's own reads and its recovery consumer decode with it."""
    table = app.Table(name, **options)
    table.value_serializer = SEALED
    table.changelog_topic = table._new_changelog_topic()
    return table


class _RocksView(Mapping[str, Any]):
    """Reads of a RocksDB-backed table, on whichever partition holds the key."""

    def __init__(self, state: TableState) -> None:
        self._state = state
        self._dbs = state.open_dbs()  # once per view: a view lives for one batch

    def __getitem__(self, key: str) -> Any:
        raw = self._state.raw_get(_encode_key(key), self._dbs)
        if raw is None:
            raise KeyError(key)
        return _decode(raw)

    def get(self, key: str, default: Any = None) -> Any:
        raw = self._state.raw_get(_encode_key(key), self._dbs)
        return default if raw is None else _decode(raw)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self._state.raw_get(_encode_key(key), self._dbs) is not None

    def __iter__(self) -> Iterator[str]:
        for key, _ in self._state.raw_items():
            yield _decode(key)

    def __len__(self) -> int:
        return sum(1 for _ in self._state.raw_items())

    def items(self):  # one pass over the DBs, not a lookup per key
        return ((_decode(k), _decode(v)) for k, v in self._state.raw_items())


class TableState:
    """One Faust table as greenlane uses it: batch reads through a view, batched writes."""

    def __init__(self, table: Any, placement: Placement, movable: bool = False) -> None:
        """``movable``: an entry may change partition (a consignment whose two filings arrived
        on different partitions); its copy in the old partition is then deleted."""
        self.table = table
        self.placement = placement
        self.movable = movable
        self._persisted: dict[int, int] = {}

    # ---------------------------------------------------------------- what Faust gives us

    @property
    def name(self) -> str:
        return self.table.name

    @property
    def changelog_topic(self) -> str:
        return self.table.changelog_topic_name

    @property
    def _store(self) -> Any:
        return self.table.data

    @property
    def on_disk(self) -> bool:
        """RocksDB (faust.stores.rocksdb.Store) rather than the memory store's dict."""
        return hasattr(self._store, "_db_for_partition")

    def active_dbs(self) -> dict[int, Any]:
        """partition -> DB of the partitions this worker is active for (not its standbys,
        whose copies may lag)."""
        actives = self.table.app.assignor.assigned_actives()
        topic = self.changelog_topic
        return {p: db for p, db in list(self._store._dbs.items()) if TP(topic, p) in actives}

    def open_dbs(self) -> dict[int, Any]:
        """partition -> DB of every partition open here. Reads look in all of them: a
        worker's own pattern entries may sit in a partition it is not active for (they are
        placed by a hash of their key), and it must read what it wrote."""
        return dict(self._store._dbs)

    def raw_get(self, key: bytes, dbs: Mapping[int, Any]) -> bytes | None:
        """The stored bytes of ``key`` in ``dbs`` (open_dbs): the key index first, then
        each partition whose bloom filter may hold it."""
        index = self._store._key_index
        partition = index.get(key)
        if partition is not None and partition in dbs:
            value = dbs[partition].get(key)
            if value is not None:
                return value
        for p, db in dbs.items():
            if p != partition and db.key_may_exist(key):
                value = db.get(key)
                if value is not None:
                    index[key] = p
                    return value
        return None

    def raw_items(self) -> Iterator[tuple[bytes, bytes]]:
        offset_key = self._store.offset_key
        for db in self.active_dbs().values():
            for key, value in db.items():
                if key != offset_key:
                    yield key, value

    # ---------------------------------------------------------------- greenlane's API

    def chunks(self, size: int) -> Iterator[dict[str, Any]]:
        """The whole table in pieces of ``size`` entries, for a sweep that yields to the event
        loop between pieces (entries may change meanwhile: judge again before deleting)."""
        if self.on_disk:
            chunk: dict[str, Any] = {}
            for key, value in self.raw_items():
                chunk[_decode(key)] = _decode(value)
                if len(chunk) >= size:
                    yield chunk
                    chunk = {}
            if chunk:
                yield chunk
            return
        data = self._store.data
        keys = list(data)
        for start in range(0, len(keys), size):
            piece = {k: data[k] for k in keys[start : start + size] if k in data}
            if piece:
                yield piece

    def view(self) -> Mapping[str, Any]:
        """The committed state, as the base of a batch's overlay."""
        if self.on_disk:
            return _RocksView(self)
        return self._store.data  # the memory store's dict

    def commit(self, batch: Overlay, sink: ChangelogSink) -> int:
        """Write a batch's overlay (its sets and deletions) to the store and hand their
        changelog records to ``sink``; returns how many entries changed."""
        changes = batch.changes()
        if not changes:
            return 0
        topic = self.changelog_topic
        place = self.placement
        previous = batch.original  # what the batch read: no second lookup in the store
        if self.on_disk:
            store = self._store
            db_for = store._db_for_partition
            index = store._key_index
            for key, value in changes.items():
                kb = _encode_key(key)
                old = previous(key) if (value is None or self.movable) else None
                if value is None:
                    if old is None:
                        continue
                    partition = place(key, old)
                    db_for(partition).delete(kb)
                    index.pop(kb, None)
                    sink.changelog(self, topic, partition, kb, None)
                    continue
                partition = place(key, value)
                if old is not None and (was := place(key, old)) != partition:
                    db_for(was).delete(kb)
                    sink.changelog(self, topic, was, kb, None)
                vb = _encode(value)
                db_for(partition).put(kb, vb)
                index[kb] = partition
                sink.changelog(self, topic, partition, kb, vb)
        else:
            data = self._store.data
            for key, value in changes.items():
                kb = _encode_key(key)
                if value is None:
                    old = data.pop(key, None)
                    if old is not None:
                        sink.changelog(self, topic, place(key, old), kb, None)
                    continue
                partition = place(key, value)
                old = previous(key) if self.movable else None
                if old is not None and (was := place(key, old)) != partition:
                    sink.changelog(self, topic, was, kb, None)  # recovery must not revive it
                data[key] = value
                sink.changelog(self, topic, partition, kb, _encode(value))
        return len(changes)

    def persisted(self, offsets: Mapping[int, int]) -> None:
        """The broker confirmed these changelog offsets (partition -> highest): on disk, a
        restart recovers from just after them. Never moves backwards."""
        if not self.on_disk:
            return
        store = self._store
        for partition, offset in offsets.items():
            if offset > self._persisted.get(partition, -1):
                self._persisted[partition] = offset
                if partition in store._dbs:  # not revoked meanwhile
                    store.set_persisted_offset(TP(self.changelog_topic, partition), offset)

    def size(self) -> tuple[int, int]:
        """(entries, bytes) on this worker's active partitions; bytes are RocksDB's estimate
        of live data and memtables, or in memory the encoded size estimated from a sample."""
        if self.on_disk:
            entries = size = 0
            for db in self.active_dbs().values():
                props = db.property_int_value
                entries += props("rocksdb.estimate-num-keys") or 0
                size += (props("rocksdb.estimate-live-data-size") or 0) + (
                    props("rocksdb.cur-size-all-mem-tables") or 0
                )
            return entries, size
        data = self._store.data
        sample = list(islice(data.items(), SIZE_SAMPLE))  # encoding all of it would stall
        if not sample:
            return 0, 0
        sampled = sum(len(_encode_key(k)) + len(_encode(v)) for k, v in sample)
        return len(data), sampled * len(data) // len(sample)


def worker_ready(app: Any, assigned: bool = False) -> tuple[bool, str]:
    """Ready: not crashed, not rebalancing, its tables recovered, and either partitions of its
    own or, once the group has answered (``assigned``: partitions were assigned at least once,
    none perhaps), none to have: a worker beyond the partition count is a ready spare, or a
    rolling update that adds one would wait for it forever.

    Called from the metrics server's thread: it only reads flags and sets.
    """
    try:
        if app.crashed:
            return False, "crashed"
        if app.rebalancing:
            return False, "rebalancing"
        actives = app.assignor.assigned_actives()
        if not actives and not assigned:
            return False, "no partitions assigned yet"
        if app.in_recovery or not app.tables.recovery.completed.is_set():
            return False, "recovering tables"
    except Exception as exc:  # a worker still starting up may lack some of these
        return False, f"starting ({type(exc).__name__})"
    if not actives:
        return True, "ready, idle: the group gave it no partition (more workers than partitions)"
    return True, "ready"
