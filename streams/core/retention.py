"""Bounded tables: entries past their retention are forgotten, by event time."""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any


def forget_stale(table: MutableMapping[str, Any], time_field: str, older_than_ms: int) -> int:
    """Delete entries whose ``time_field`` (event time, so replays agree) is before
    ``older_than_ms``; entries without it are kept, since nothing says they are old.
    Returns how many were deleted."""
    stale = [
        key
        for key, entry in table.items()
        if isinstance(entry, dict) and entry.get(time_field, older_than_ms) < older_than_ms
    ]
    for key in stale:
        del table[key]
    return len(stale)
