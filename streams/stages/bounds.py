"""Hard bounds on what a message may carry, checked before any stage sees it.

Data quality (``stages.quality``) judges whether a filing is right; bounds only keep what no
real filing carries (a 600 KB house waybill, a description of one 400 KB word, a value of
``5e-324``, an arrival in the year 10000) from costing the worker time or memory or breaking
a stage. A message outside them is dead-lettered with the field and the bound, and its carrier
is told why. The limits are national settings (``[bounds]`` in ``quality.toml``); this module
compiles one checker per Avro reader schema so a record is walked once, without reflection.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

OUT_OF_BOUNDS = "OUT_OF_BOUNDS"
OVERSIZED = "OVERSIZED"
DAY_MS = 86_400_000

# Free-text fields (names, addresses, descriptions, remarks) get ``max_text_chars``; every
# other string is an identifier or a code and gets ``max_code_chars``.
TEXT_FIELDS = frozenset(
    {"name", "address", "description", "cargo_description", "listing_url", "notes"}
)


@dataclass(frozen=True, slots=True)
class Bounds:
    """``[bounds]`` of quality.toml, validated by ``quality.load_quality_rules``."""

    max_message_bytes: int
    max_key_bytes: int
    max_text_chars: int
    max_code_chars: int
    max_list_items: int
    max_count: int
    max_amount: float
    min_nonzero_amount: float
    max_age_days: float
    max_ahead_days: float

    def problems(self) -> list[tuple[str, str]]:
        """(key, what is wrong) for every inconsistent limit; empty when all are usable."""
        out = []
        for key in (
            "max_message_bytes",
            "max_key_bytes",
            "max_text_chars",
            "max_code_chars",
            "max_list_items",
            "max_count",
        ):
            if getattr(self, key) < 1:
                out.append((key, "must be >= 1"))
        if not (math.isfinite(self.max_amount) and self.max_amount > 0):
            out.append(("max_amount", "must be a finite number > 0"))
        if not (0 < self.min_nonzero_amount < 1):
            out.append(("min_nonzero_amount", "must be between 0 and 1 (exclusive)"))
        for key in ("max_age_days", "max_ahead_days"):
            if not (0 < getattr(self, key) <= 36_500):
                out.append((key, "must be > 0 and at most 36500 days"))
        return out


def message_problem(key: bytes | None, value: bytes | None, bounds: Bounds) -> str | None:
    """Why the raw message is too large to decode at all, or None."""
    if value is not None and len(value) > bounds.max_message_bytes:
        return (
            f"message of {len(value):,} bytes: at most {bounds.max_message_bytes:,} bytes "
            "are accepted (quality.toml [bounds] max_message_bytes)"
        )
    if key is not None and len(key) > bounds.max_key_bytes:
        return (
            f"key of {len(key):,} bytes: at most {bounds.max_key_bytes:,} bytes are accepted "
            "(quality.toml [bounds] max_key_bytes)"
        )
    return None


Check = Callable[[Any, int], "str | None"]
"""(value, now in epoch ms) -> why it is out of bounds, after the path of the failing field
below this value ('.name', '[i]', then ': why'), or None."""


def _named_types(schema: Any, names: dict[str, Any], namespace: str | None) -> None:
    if isinstance(schema, list):
        for branch in schema:
            _named_types(branch, names, namespace)
    elif isinstance(schema, dict):
        kind = schema.get("type")
        if kind in ("record", "enum", "fixed"):
            ns = schema.get("namespace", namespace)
            names[schema["name"]] = schema
            if ns:
                names[f"{ns}.{schema['name']}"] = schema
            for f in schema.get("fields", ()):
                _named_types(f["type"], names, ns)
        elif kind == "array":
            _named_types(schema["items"], names, namespace)
        elif kind == "map":
            _named_types(schema["values"], names, namespace)
        elif isinstance(kind, dict | list):
            _named_types(kind, names, namespace)


def compile_checker(schema: dict, bounds: Bounds) -> Callable[[dict, int], str | None]:
    """A function that returns the first bound a decoded record of ``schema`` breaks (field
    path and limit, for a dead letter and the carrier), or None."""
    names: dict[str, Any] = {}
    _named_types(schema, names, None)
    text_max, code_max = bounds.max_text_chars, bounds.max_code_chars
    list_max = bounds.max_list_items
    count_max = bounds.max_count
    amount_max, tiny = bounds.max_amount, bounds.min_nonzero_amount
    age_ms = int(bounds.max_age_days * DAY_MS)
    ahead_ms = int(bounds.max_ahead_days * DAY_MS)

    def string(limit: int) -> Check:
        def check(v: Any, now: int) -> str | None:
            if len(v) > limit:
                return f": {len(v):,} characters, at most {limit:,}"
            return None

        return check

    def count(v: Any, now: int) -> str | None:
        if not -count_max <= v <= count_max:
            return f": {v} is outside [-{count_max:,}, {count_max:,}]"
        return None

    def amount(v: Any, now: int) -> str | None:
        if v != v or v in (math.inf, -math.inf):
            return f": {v} is not a finite number"
        size = abs(v)
        if size > amount_max:
            return f": {v!r} is larger than {amount_max:g}"
        if 0 < size < tiny:
            return f": {v!r} is too close to zero (smallest non-zero {tiny:g})"
        return None

    def moment(v: Any, now: int) -> str | None:
        if not now - age_ms <= v <= now + ahead_ms:
            return (
                f": {v} (epoch ms) is outside the plausible window of "
                f"{bounds.max_age_days:g} days before to {bounds.max_ahead_days:g} days after now"
            )
        return None

    def plain(v: Any, now: int) -> str | None:
        return None

    def build(t: Any, field: str) -> Check:
        if isinstance(t, list):
            branches = [(b, build(b, field)) for b in t if b != "null"]
            if len(branches) == 1:
                inner = branches[0][1]

                def optional(v: Any, now: int) -> str | None:
                    return None if v is None else inner(v, now)

                return optional
            checks = [c for _, c in branches]

            def union(v: Any, now: int) -> str | None:
                if v is None:
                    return None
                for c in checks:
                    try:
                        why = c(v, now)
                    except TypeError:  # another branch's type
                        continue
                    return why
                return None

            return union
        if isinstance(t, str) and t in names:
            return build(names[t], field)
        if isinstance(t, dict):
            kind = t.get("type")
            if t.get("logicalType", "").startswith("timestamp") or (
                isinstance(kind, dict) and kind.get("logicalType", "").startswith("timestamp")
            ):
                return moment
            if kind == "record":
                fields = [(f["name"], build(f["type"], f["name"])) for f in t["fields"]]

                def record(v: Any, now: int) -> str | None:
                    for name, c in fields:
                        why = c(v.get(name), now)
                        if why is not None:
                            return f".{name}{why}"
                    return None

                return record
            if kind == "array":
                item = build(t["items"], field)

                def array(v: Any, now: int) -> str | None:
                    if len(v) > list_max:
                        return f": {len(v):,} entries, at most {list_max:,}"
                    for i, x in enumerate(v):
                        why = item(x, now)
                        if why is not None:
                            return f"[{i}]{why}"
                    return None

                return array
            if kind in ("enum", "fixed"):
                return plain
            return build(kind, field)
        if t == "string":
            return string(text_max if field in TEXT_FIELDS else code_max)
        if t == "bytes":
            return string(bounds.max_message_bytes)
        if t in ("int", "long"):
            return count
        if t in ("float", "double"):
            return amount
        return plain

    top = build(schema, "")

    def check_record(record: dict, now_ms: int) -> str | None:
        why = top(record, now_ms)  # the failing field's path is built on the way back up
        return why[1:] if why is not None and why.startswith(".") else why

    return check_record
