"""The state a batch sees: a per-batch overlay over one table.

Every table greenlane keeps (consignment links, decision summaries, pattern state) is read and
changed by the pure stages through an :class:`Overlay`: reads fall through to the table, writes
and deletions stay in the overlay. The runtime then writes ``changes()`` to the table and its
changelog in one go, and only after their delivery is confirmed are the batch's offsets
committed. A batch that fails therefore changes nothing it would have to undo, and the stages
never hold a raw store (Faust, RocksDB or a dict in tests: it is all one ``Mapping`` to them).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, MutableMapping
from typing import Any

_ABSENT = object()  # a key this overlay has deleted (distinct from a stored None)


class Overlay(MutableMapping[str, Any]):
    """Read-through, write-back view of ``base`` for one batch.

    Values are treated as immutable: a stage that changes an entry builds a new dict and
    assigns it, so the base is never modified behind the overlay's back.
    """

    __slots__ = ("_base", "_changes", "_read")

    def __init__(self, base: Mapping[str, Any]) -> None:
        self._base = base
        self._changes: dict[str, Any] = {}
        self._read: dict[str, Any] = {}  # base values as read (a store lookup costs)

    def original(self, key: str) -> Any:
        """The committed value of ``key`` (None: absent), whatever this batch did to it."""
        value = self._read.get(key, _ABSENT)
        if value is _ABSENT and key not in self._read:
            value = self._read[key] = self._base.get(key, _ABSENT)
        return None if value is _ABSENT else value

    def __getitem__(self, key: str) -> Any:
        value = self.get(key, _ABSENT)
        if value is _ABSENT:
            raise KeyError(key)
        return value

    def get(self, key: str, default: Any = None) -> Any:
        value = self._changes.get(key, _ABSENT)
        if value is _ABSENT:
            if key in self._changes:  # deleted in this batch
                return default
            value = self.original(key)
            return default if value is None else value
        return value

    def __contains__(self, key: object) -> bool:
        if key in self._changes:
            return self._changes[key] is not _ABSENT
        return isinstance(key, str) and self.original(key) is not None

    def __setitem__(self, key: str, value: Any) -> None:
        if value is None:
            raise ValueError(f"state entry {key!r}: None is reserved for deletions; use del")
        self._changes[key] = value

    def __delitem__(self, key: str) -> None:
        if key not in self:
            raise KeyError(key)
        self._changes[key] = _ABSENT

    def __iter__(self) -> Iterator[str]:
        for key in self._base:
            if key not in self._changes:
                yield key
        for key, value in self._changes.items():
            if value is not _ABSENT:
                yield key

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def changes(self) -> dict[str, Any]:
        """What this batch wrote: key -> new value, or None for a deletion."""
        return {k: (None if v is _ABSENT else v) for k, v in self._changes.items()}

    def commit_to(self, table: MutableMapping[str, Any]) -> None:
        """Write this batch's changes into a plain dict table (in-process runs of the core;
        the worker commits through its tables' changelogs instead)."""
        for key, value in self.changes().items():
            if value is None:
                table.pop(key, None)
            else:
                table[key] = value

    def __bool__(self) -> bool:  # an empty table is still a table, not "no state"
        return True

    def __repr__(self) -> str:
        return f"Overlay({len(self._changes)} changes over {type(self._base).__name__})"
