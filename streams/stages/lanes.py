"""Lanes and quotas: random selection and an inspection-rate ceiling per destination.

Runs after ``routing.route_for`` has turned the score into a route, on pre-arrival decisions only
(pre-loading screening happens at origin and does not use the destination's inspection capacity).
It changes a route in two ways, both set out in ``settings/lanes.yaml``:

1. Exploration (after ASYCUDA's minimum random selection rate). Rules only learn from what gets
   inspected, so a share of consignments is picked at random, whatever their score. The pick is a
   keyed hash of the house waybill (``salt``: the secret lanes key, ``settings.secrets``, never
   the lanes file) compared with ``min_random_rate``: a pure function of (key, house waybill), so
   every worker, every replay and every batch split agrees. The key must stay secret: whoever
   knows it can choose waybill numbers that are never picked.
2. Capacity (after ASYCUDA's expected lane rate). A destination can physically inspect only so
   much; when rule-based INSPECTs would push its inspect share over ``inspect_ceiling``, the
   lowest-scoring ones become documentary checks (HOLD) and say why. Forced outcomes and
   decisions with a critical reason (``critical_reasons``: a watchlisted party, a counterfeit
   brand, prohibited goods) are never downgraded: capacity must not hide the worst.

Capacity algorithm: per destination and filing partition, moving counts of consignments and
inspections over a rolling window (``window_buckets`` time buckets of ``window_seconds /
window_buckets`` each) in event time: a decision's filing time, capped at the caller's clock
``now_ms``. Decisions are taken one by one, in the order given (a partition's offset order): a
rule-based INSPECT is kept while the partition's inspections in the window stay within
``floor(ceiling * max(consignments in the window, warm-up share))``, else it becomes a HOLD and
says why; random picks and forced INSPECTs are never downgraded but count. The warm-up share
is ``warm_up_consignments`` divided among the partitions. Capacity is first come, first served:
the allocation of a consignment depends only on its partition's earlier traffic, never on how
the runtime cut the stream into batches, on the wall clock, or on how many workers share the
partitions, so one worker and ten give the same lanes and a replay gives the same lanes again.
Each partition holds the ceiling for its own traffic, so the total holds it too; filings are
spread over partitions by a hash of the house waybill, so each partition's share of a
destination is about the same. Two things can lift a window's share over the ceiling:
mandatory inspections, and a bucket with a share below the ceiling leaving the window (by at
most about ceiling / (window_buckets - 1)); the next rule-based inspections wait until the
share is back under.

The counts are entries of a state mapping the caller passes (the worker's ``lane_quotas``
table through a batch overlay): one per destination and filing partition, so they survive a
restart and move with their partition. A filing redelivered after a crash does not meet the
quota again: the batch core republishes its logged decision (core.pipeline, the replay log).
"""

from __future__ import annotations

import hashlib
import math
from collections import deque
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

from greenlane.streams.domain.vocabulary import HOLD, INSPECT, PRE_ARRIVAL, RELEASE
from greenlane.streams.reference import countries
from greenlane.streams.settings import SETTINGS_DIR, ConfigError, read_yaml
from greenlane.streams.settings.secrets import SPECS, secret

L_RANDOM_SELECTION = "L_RANDOM_SELECTION"
L_CAPACITY_DOWNGRADE = "L_CAPACITY_DOWNGRADE"
REASON_CODES = (L_RANDOM_SELECTION, L_CAPACITY_DOWNGRADE)
ROUTE_RANK = {RELEASE: 0, HOLD: 1, INSPECT: 2}
DOWNGRADE_ROUTE = HOLD  # the documentary check a capacity downgrade falls back to
_HASH_SPACE = 1 << 64


@dataclass(frozen=True)
class DestinationLanes:
    """The lane settings of one destination (or the default)."""

    inspect_ceiling: float
    min_random_rate: float
    random_route: str
    window_seconds: float
    window_buckets: int
    warm_up_consignments: int
    salt: str
    # reason code -> the least contribution at which it is critical: never downgraded
    critical_reasons: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def bucket_ms(self) -> int:
        return max(1, int(self.window_seconds * 1000 / self.window_buckets))


@dataclass(frozen=True)
class ReasonText:
    description: str
    carrier_visible: bool


@dataclass(frozen=True)
class LaneSettings:
    version: str
    default: DestinationLanes
    destinations: Mapping[str, DestinationLanes]
    reasons: Mapping[str, ReasonText]
    source: str

    def for_destination(self, country: str) -> DestinationLanes:
        """The destination's own settings, or the default."""
        return self.destinations.get(country, self.default)


@dataclass(frozen=True, slots=True)
class LaneChange:
    """A route changed (or flagged) by lanes, with the reason to add to the decision."""

    route: str
    random_pick: bool
    reason: dict


# --- loading -------------------------------------------------------------------------------


def _share(low_open: bool) -> Callable[[Any, str], float]:
    def check(value: Any, where: str) -> float:
        ok = not isinstance(value, bool) and isinstance(value, int | float)
        ok = ok and (0 < value <= 1 if low_open else 0 <= value <= 1)
        if not ok:
            span = "(0, 1]" if low_open else "[0, 1]"
            raise ConfigError(f"{where}: expected a share in {span}, got {value!r}")
        return float(value)

    return check


def _whole(minimum: int) -> Callable[[Any, str], int]:
    def check(value: Any, where: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ConfigError(f"{where}: expected a whole number >= {minimum}, got {value!r}")
        return value

    return check


def _positive(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ConfigError(f"{where}: expected a positive number, got {value!r}")
    return float(value)


def _random_route(value: Any, where: str) -> str:
    if value not in (HOLD, INSPECT):
        raise ConfigError(f"{where}: expected {HOLD} or {INSPECT}, got {value!r}")
    return value


def _critical(value: Any, where: str) -> Mapping[str, float]:
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: expected a mapping of reason code to least contribution")
    out = {}
    for code, least in value.items():
        if not isinstance(code, str) or not code.strip():
            raise ConfigError(f"{where}: expected reason codes as keys, got {code!r}")
        if isinstance(least, bool) or not isinstance(least, int | float) or least < 0:
            raise ConfigError(f"{where}.{code}: expected a contribution >= 0, got {least!r}")
        out[code] = float(least)
    return MappingProxyType(out)


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where}: expected a non-empty string, got {value!r}")
    return value


FIELD_CHECKS = {
    "inspect_ceiling": _share(low_open=True),
    "min_random_rate": _share(low_open=False),
    "random_route": _random_route,
    "window_seconds": _positive,
    "window_buckets": _whole(1),
    "warm_up_consignments": _whole(0),
    "critical_reasons": _critical,
}
OPTIONAL_FIELDS = {"critical_reasons"}


def _mapping(value: Any, where: str) -> dict:
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: expected a mapping, got {value!r}")
    return value


def _entry(spec: Any, where: str, base: DestinationLanes | None) -> DestinationLanes:
    """One destination's settings; ``base`` is None for the default, which must be complete."""
    spec = _mapping(spec, where)
    if "salt" in spec:
        raise ConfigError(
            f"{where}.salt: the random-selection key is a secret, not a setting: remove it and "
            f"set {SPECS['lanes_key'].env} (or lanes_key in the secrets file)"
        )
    unknown = set(spec) - set(FIELD_CHECKS)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {sorted(unknown)}; known: {list(FIELD_CHECKS)}")
    if base is None:
        missing = [k for k in FIELD_CHECKS if k not in spec and k not in OPTIONAL_FIELDS]
        if missing:
            raise ConfigError(f"{where}: missing key(s) {missing}")
    values = {k: FIELD_CHECKS[k](v, f"{where}.{k}") for k, v in spec.items()}
    if base is None:
        lanes = DestinationLanes(**values, salt=secret("lanes_key"))
    else:
        lanes = replace(base, **values)
    if lanes.random_route == INSPECT and lanes.min_random_rate > lanes.inspect_ceiling:
        raise ConfigError(
            f"{where}.min_random_rate: random picks go to {INSPECT}, so "
            f"{lanes.min_random_rate:g} must not exceed inspect_ceiling {lanes.inspect_ceiling:g}"
        )
    return lanes


def _reasons(spec: Any, where: str) -> dict[str, ReasonText]:
    spec = _mapping(spec, where)
    if set(spec) != set(REASON_CODES):
        raise ConfigError(f"{where}: expected exactly {list(REASON_CODES)}, got {sorted(spec)}")
    out = {}
    for code in REASON_CODES:
        entry = _mapping(spec[code], f"{where}.{code}")
        if set(entry) != {"description", "carrier_visible"}:
            raise ConfigError(f"{where}.{code}: expected 'description' and 'carrier_visible'")
        visible = entry["carrier_visible"]
        if not isinstance(visible, bool):
            raise ConfigError(f"{where}.{code}.carrier_visible: expected true or false")
        out[code] = ReasonText(_text(entry["description"], f"{where}.{code}.description"), visible)
    return out


def load_lane_settings(path: Path | None = None) -> LaneSettings:
    """Load and validate lanes.yaml; errors name the file, the entry and the field."""
    path = path or SETTINGS_DIR / "lanes.yaml"
    data = read_yaml(path, "lane settings")
    top = {"version", "reasons", "default", "destinations"}
    if not isinstance(data, dict) or set(data) != top:
        got = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise ConfigError(f"{path}: expected exactly the keys {sorted(top)}, got {got}")
    reasons = _reasons(data["reasons"], f"{path}: reasons")
    default = _entry(data["default"], f"{path}: default", None)
    known = countries()
    destinations = {}
    for country, spec in _mapping(data["destinations"] or {}, f"{path}: destinations").items():
        where = f"{path}: destinations.{country}"
        if country not in known:
            raise ConfigError(f"{where}: not an ISO 3166-1 alpha-2 country code")
        destinations[country] = _entry(spec or {}, where, default)
    return LaneSettings(
        version=str(data["version"]),
        default=default,
        destinations=MappingProxyType(destinations),
        reasons=MappingProxyType(reasons),
        source=str(path),
    )


# --- allocation ----------------------------------------------------------------------------


def is_random_pick(salt: str, house_waybill: str, rate: float) -> bool:
    """Whether a consignment is in the random sample: a keyed hash of the waybill below ``rate``."""
    return _Selector(salt, rate).picks(house_waybill)


class _Selector:
    __slots__ = ("key", "threshold")

    def __init__(self, salt: str, rate: float) -> None:
        # Any salt length: blake2b keys are at most 64 bytes, so the key is the salt's digest.
        self.key = hashlib.blake2b(salt.encode(), digest_size=32).digest()
        self.threshold = round(rate * _HASH_SPACE)

    def picks(self, house_waybill: str) -> bool:
        digest = hashlib.blake2b(house_waybill.encode(), digest_size=8, key=self.key).digest()
        return int.from_bytes(digest) < self.threshold


class _Window:
    """Moving counts of one destination's consignments and inspections, in time buckets, for
    one filing partition: a state entry ``{"partition", "bucket_ms", "buckets"}`` read back."""

    __slots__ = ("bucket_ms", "buckets", "changed", "inspected", "n_buckets", "partition", "total")

    def __init__(self, bucket_ms: int, n_buckets: int, partition: int, entry: dict | None) -> None:
        self.bucket_ms = bucket_ms
        self.n_buckets = n_buckets
        self.partition = partition
        self.changed = False
        # [bucket id, consignments, inspections]; counted in other units (settings changed): none
        kept = entry["buckets"] if entry and entry.get("bucket_ms") == bucket_ms else []
        self.buckets: deque[list[int]] = deque(list(b) for b in kept)
        self.total = sum(b[1] for b in self.buckets)
        self.inspected = sum(b[2] for b in self.buckets)

    def advance(self, now_ms: int) -> None:
        oldest = now_ms // self.bucket_ms - self.n_buckets
        buckets = self.buckets
        while buckets and buckets[0][0] <= oldest:
            _, total, inspected = buckets.popleft()
            self.total -= total
            self.inspected -= inspected
            self.changed = True

    def add(self, now_ms: int, total: int, inspected: int) -> None:
        if not total and not inspected:
            return
        bucket = now_ms // self.bucket_ms
        # A clock that steps back adds to the newest bucket rather than reordering the window.
        if self.buckets and self.buckets[-1][0] >= bucket:
            self.buckets[-1][1] += total
            self.buckets[-1][2] += inspected
        else:
            self.buckets.append([bucket, total, inspected])
        self.total += total
        self.inspected += inspected
        self.changed = True

    def entry(self) -> dict:
        return {
            "partition": self.partition,
            "bucket_ms": self.bucket_ms,
            "buckets": [list(b) for b in self.buckets],
        }


@dataclass(slots=True)
class _Destination:
    """Per destination: its settings compiled, its window, its reasons."""

    lanes: DestinationLanes
    selector: _Selector
    random_change: LaneChange  # a random pick raised to the random route
    random_reason: dict
    warm_up: int  # this partition's share of warm_up_consignments


def _duration(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


LANE_PREFIX = "lane:"


def lane_key(country: str, partition: int) -> str:
    return f"{LANE_PREFIX}{country}:{partition}"


class LaneAllocator:
    """The lane rules compiled; the counts live in a state mapping the caller keeps (a table:
    one entry per destination and filing partition, so they survive a restart and move with
    their partition), or in the allocator itself when the caller passes none."""

    def __init__(self, settings: LaneSettings, partitions: int = 1) -> None:
        """``partitions``: of the filing topics; counts are kept per partition of the filing."""
        self.settings = settings
        self.partitions = partitions
        self._destinations: dict[str, _Destination] = {}
        self._own_state: dict[str, dict] = {}

    def reconfigure(self, settings: LaneSettings) -> None:
        """New settings (hot reload); counts kept in other bucket sizes are not read again."""
        self.settings = settings
        self._destinations = {}

    def _destination(self, country: str) -> _Destination:
        lanes = self.settings.for_destination(country)
        text = self.settings.reasons[L_RANDOM_SELECTION]
        reason = {
            "code": L_RANDOM_SELECTION,
            "description": text.description,
            "contribution": 0.0,
            "evidence": f"random selection rate {lanes.min_random_rate:.2%} for {country}",
            "carrier_visible": text.carrier_visible,
        }
        dest = _Destination(
            lanes=lanes,
            selector=_Selector(lanes.salt, lanes.min_random_rate),
            random_change=LaneChange(lanes.random_route, True, reason),
            random_reason=reason,
            warm_up=math.ceil(lanes.warm_up_consignments / self.partitions),
        )
        self._destinations[country] = dest
        return dest

    def window(
        self,
        country: str,
        now_ms: int | None = None,
        state: MutableMapping[str, dict] | None = None,
    ) -> tuple[int, int]:
        """(inspections, consignments) to a destination in the window, over the partitions
        ``state`` holds, for metrics and tests."""
        state = self._own_state if state is None else state
        lanes = self.settings.for_destination(country)
        inspected = total = 0
        for p in range(self.partitions):
            w = _Window(lanes.bucket_ms, lanes.window_buckets, p, state.get(lane_key(country, p)))
            if now_ms is not None:
                w.advance(now_ms)
            inspected += w.inspected
            total += w.total
        return inspected, total

    def allocate(
        self,
        decisions: Sequence[dict],
        now_ms: int,
        state: MutableMapping[str, dict] | None = None,
        previous: Sequence[str | None] | None = None,
    ) -> list[LaneChange | None]:
        """Per decision: None (unchanged) or the lane change and its reason.

        Only PRE_ARRIVAL decisions are considered, one by one in the given order. Forced
        decisions (``forced`` true, or a ``forced_outcome`` of INSPECT) and those
        with a critical reason (the destination's ``critical_reasons``) are left alone but
        count towards the window. ``previous``: per decision, the route of the consignment's
        earlier decision at this stage (None: a new consignment; default: none earlier). A
        revision is not another consignment, and one whose earlier decision was an INSPECT
        keeps its place under the ceiling (it was counted then) and counts no second
        inspection. ``now_ms`` caps the event time (a filing time in the future).
        ``state``: where the counts are read and written (a batch's overlay);
        None keeps them in the allocator.
        """
        state = self._own_state if state is None else state
        out: list[LaneChange | None] = [None] * len(decisions)
        windows: dict[tuple[str, int], _Window] = {}
        destinations = self._destinations
        for i, d in enumerate(decisions):
            if d["stage"] != PRE_ARRIVAL:
                continue
            country = d["destination_country"]
            dest = destinations.get(country) or self._destination(country)
            lanes = dest.lanes
            partition = self._partition(d)
            window = windows.get((country, partition))
            if window is None:
                entry = state.get(lane_key(country, partition))
                window = _Window(lanes.bucket_ms, lanes.window_buckets, partition, entry)
                windows[country, partition] = window
            t = min(d.get("filing_time") or now_ms, now_ms)
            window.advance(t)
            earlier = previous[i] if previous is not None else None
            new = 0 if earlier is not None else 1
            held = earlier == INSPECT  # counted when it was decided: keeps its place
            route = d["route"]
            inspected = False
            if d.get("forced") or d.get("forced_outcome") == INSPECT:
                inspected = route == INSPECT  # a forced HOLD (a quality hold) is not exempt
            elif dest.selector.picks(d["house_waybill"]):
                random_route = lanes.random_route
                if ROUTE_RANK[route] < ROUTE_RANK[random_route]:
                    out[i] = dest.random_change
                    route = random_route
                else:  # already at or above the random lane: only flagged, never lowered
                    out[i] = LaneChange(route, True, dest.random_reason)
                inspected = route == INSPECT
            elif route == INSPECT:
                volume = max(window.total + new, dest.warm_up)
                allowance = math.floor(lanes.inspect_ceiling * volume + 1e-9)
                if held or window.inspected < allowance or _critical_reason(d, lanes):
                    inspected = True  # a critical reason is inspected whatever the quota
                else:
                    out[i] = self._downgrade(country, lanes, window, new, d["risk_score"])
            window.add(t, new, int(inspected and not held))
        for (country, partition), window in windows.items():
            if window.changed:
                state[lane_key(country, partition)] = window.entry()
        return out

    def selection_propensity(self, decision: dict) -> float | None:
        """How likely a consignment like this one is to be examined (held or inspected), from
        its route before lanes: 1 when rules and model send it to HOLD or INSPECT, else the
        destination's random selection rate. Feedback weighs a labelled consignment by its
        inverse (a random pick of released traffic stands for 1/rate of it): the selection
        bias correction of ``models.retrain``. None for a pre-loading decision."""
        if decision["stage"] != PRE_ARRIVAL:
            return None
        if decision["route"] != RELEASE:
            return 1.0
        country = decision["destination_country"]
        dest = self._destinations.get(country) or self._destination(country)
        return dest.lanes.min_random_rate

    def _partition(self, decision: dict) -> int:
        return (decision.get("source_partition") or 0) % self.partitions

    def _downgrade(
        self, country: str, lanes: DestinationLanes, window: _Window, new: int, score: float
    ) -> LaneChange:
        text = self.settings.reasons[L_CAPACITY_DOWNGRADE]
        total = window.total + new
        evidence = (
            f"{country}: {window.inspected} of {total} consignments of filing partition "
            f"{window.partition} inspected over {_duration(lanes.window_seconds)} "
            f"({window.inspected / max(total, 1):.2%}); ceiling {lanes.inspect_ceiling:.2%}; "
            f"score {score:g}"
        )
        return LaneChange(
            DOWNGRADE_ROUTE,
            False,
            {
                "code": L_CAPACITY_DOWNGRADE,
                "description": text.description,
                "contribution": 0.0,
                "evidence": evidence,
                "carrier_visible": text.carrier_visible,
            },
        )


def _critical_reason(decision: dict, lanes: DestinationLanes) -> bool:
    """A reason the destination never lets capacity hide (a watchlisted party, a counterfeit)."""
    critical = lanes.critical_reasons
    if not critical:
        return False
    for r in decision["reasons"]:
        least = critical.get(r["code"])
        if least is not None and r["contribution"] >= least:
            return True
    return False


def apply_change(
    decision: dict, change: LaneChange | None, propensity: float | None = None
) -> dict:
    """The decision with the lane change applied: route, ``random_pick`` flag and the reason,
    and its ``selection_propensity`` (``LaneAllocator.selection_propensity``, taken before).

    Reasons stay ordered by contribution, largest first (the lane reasons contribute 0).
    """
    if change is None:
        return {
            **decision,
            "random_pick": decision.get("random_pick", False),
            "selection_propensity": propensity,
        }
    reasons = sorted([*decision["reasons"], dict(change.reason)], key=lambda r: -r["contribution"])
    return {
        **decision,
        "route": change.route,
        "random_pick": change.random_pick,
        "reasons": reasons,
        "selection_propensity": propensity,
    }
