"""Stateful risk patterns (WCO E-Commerce FoS Standard 10): what a stream shows and one filing
does not — split shipments under the de minimis, undervaluation against the running norm of
the goods, new sellers shipping fast, carriers whose data quality is slipping.

The state is a plain mapping of short string keys to JSON-able dicts, so the worker can keep it
in a changelog-backed Faust table (or a dict in tests). ``detect_batch`` never mutates a value it
read: it builds new ones, writes each changed key once at the end of the batch and reports the
keys in ``changed_keys``. Windows are in event time (filing time, capped at ``now_ms``), so a
replay gives the same answers as the live run; entries are forgotten by the same clock.

Party names and addresses enter keys only as digests: the changelog topic then holds no
personal data in clear (Standard 1), and keys stay short whatever carriers send.

Scale-out: split shipments and seller velocity are about one seller, whichever partition each
house waybill filed on, so the worker re-keys declarations by seller (``observe`` makes the
record, ``detect_entity_batch`` counts it on the seller's partition) and sends what it finds
back to each consignment's partition. Value norms and carrier trends are learnt per filing
partition (``scope``): each partition is a uniform sample of the traffic, so a partition's norm
is as good an estimate as the whole's and the answers do not depend on how many workers share
the partitions. Every key carries its scope (``key@partition``), so a worker holding several
partitions keeps them apart.
"""

from __future__ import annotations

import hashlib
import math
import re
import unicodedata
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from operator import itemgetter
from pathlib import Path
from typing import Any, ClassVar

from greenlane.streams.settings import SETTINGS_DIR, ConfigError, build_section, read_yaml
from greenlane.streams.settings.secrets import pseudonymiser

P_SPLIT_SHIPMENT = "P_SPLIT_SHIPMENT"
P_UNDERVALUATION_VS_NORM = "P_UNDERVALUATION_VS_NORM"
P_NEW_SELLER_VELOCITY = "P_NEW_SELLER_VELOCITY"
P_CARRIER_DQ_RISING = "P_CARRIER_DQ_RISING"

# State key prefixes, one per kind of entry; every entry has "l", its latest event time (ms).
SPLIT_PREFIX = "split:"
NORM_PREFIX = "norm:"
SELLER_PREFIX = "seller:"
CARRIER_PREFIX = "carrier:"
# When this state started watching traffic (event time); never expires.
OBSERVING_KEY = "meta:observing_since"

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS

DEFAULT_PATH = SETTINGS_DIR / "patterns.yaml"

PatternState = MutableMapping[str, dict]
"""Where the patterns remember: a Faust table or a dict, key -> JSON-able dict."""


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class _Pattern:
    """What every pattern section has; ``code`` is fixed, the rest is the officers' choice."""

    code: ClassVar[str]
    # Derived at init (milliseconds): how long an entry is kept after its latest event.
    forget_ms: ClassVar[float]
    enabled: bool
    description: str
    weight: float
    carrier_visible: bool

    def __post_init__(self) -> None:
        # Windows in milliseconds, computed once rather than per record.
        for name, value in self.derived().items():
            object.__setattr__(self, name, value)

    def derived(self) -> dict[str, float]:
        return {"forget_ms": self.forget_after_days * DAY_MS}  # type: ignore[attr-defined]

    def reason(self, evidence: str) -> dict:
        return {
            "code": self.code,
            "description": self.description,
            "contribution": self.weight,
            "evidence": evidence,
            "carrier_visible": self.carrier_visible,
        }

    def check(self, where: str) -> None:
        if not self.description.strip():
            raise ConfigError(f"{where}.description: must not be blank")
        _at_least(self, where, "weight", 0.0)


@dataclass(frozen=True)
class SplitShipment(_Pattern):
    code: ClassVar[str] = P_SPLIT_SHIPMENT
    window_ms: ClassVar[float]
    window_hours: float
    min_consignments: int
    max_group_size: int
    evidence_waybills: int

    def check(self, where: str) -> None:
        super().check(where)
        _at_least(self, where, "window_hours", 0.0, strict=True)
        _at_least(self, where, "min_consignments", 2)
        _at_least(self, where, "max_group_size", self.min_consignments)
        _at_least(self, where, "evidence_waybills", 0)

    def derived(self) -> dict[str, float]:
        window = self.window_hours * HOUR_MS
        return {"window_ms": window, "forget_ms": window}


@dataclass(frozen=True)
class Undervaluation(_Pattern):
    code: ClassVar[str] = P_UNDERVALUATION_VS_NORM
    log_ratio: ClassVar[float]
    min_observations: int
    ratio: float
    min_z_score: float
    memory_lines: int
    clip_z_score: float
    min_spread: float
    forget_after_days: float

    def check(self, where: str) -> None:
        super().check(where)
        _at_least(self, where, "min_observations", 1)
        _at_least(self, where, "ratio", 1.0, strict=True)
        _at_least(self, where, "min_z_score", 0.0)
        _at_least(self, where, "memory_lines", 1)
        _at_least(self, where, "clip_z_score", 0.0, strict=True)
        _at_least(self, where, "min_spread", 0.0, strict=True)
        _at_least(self, where, "forget_after_days", 0.0, strict=True)

    def derived(self) -> dict[str, float]:
        return {**super().derived(), "log_ratio": math.log(max(self.ratio, 1.0))}


@dataclass(frozen=True)
class NewSellerVelocity(_Pattern):
    code: ClassVar[str] = P_NEW_SELLER_VELOCITY
    new_for_ms: ClassVar[float]
    window_ms: ClassVar[float]
    new_for_days: float
    window_hours: float
    max_consignments: int
    track_at_most: int
    forget_after_days: float

    def check(self, where: str) -> None:
        super().check(where)
        _at_least(self, where, "new_for_days", 0.0, strict=True)
        _at_least(self, where, "window_hours", 0.0, strict=True)
        _at_least(self, where, "max_consignments", 1)
        _at_least(self, where, "track_at_most", self.max_consignments + 1)
        _at_least(self, where, "forget_after_days", self.new_for_days)

    def derived(self) -> dict[str, float]:
        return {
            **super().derived(),
            "new_for_ms": self.new_for_days * DAY_MS,
            "window_ms": self.window_hours * HOUR_MS,
        }


@dataclass(frozen=True)
class CarrierDqRising(_Pattern):
    code: ClassVar[str] = P_CARRIER_DQ_RISING
    recent_ms: ClassVar[float]
    baseline_ms: ClassVar[float]
    recent_hours: float
    baseline_days: float
    min_recent_filings: float
    ratio: float
    min_increase: float
    forget_after_days: float

    def check(self, where: str) -> None:
        super().check(where)
        _at_least(self, where, "recent_hours", 0.0, strict=True)
        _at_least(self, where, "baseline_days", self.recent_hours / 24, strict=True)
        _at_least(self, where, "min_recent_filings", 1.0)
        _at_least(self, where, "ratio", 1.0)
        _at_least(self, where, "min_increase", 0.0)
        if self.min_increase > 1.0:
            raise ConfigError(
                f"{where}.min_increase: a share, expected <= 1, got {self.min_increase}"
            )
        _at_least(self, where, "forget_after_days", self.baseline_days)

    def derived(self) -> dict[str, float]:
        return {
            **super().derived(),
            "recent_ms": self.recent_hours * HOUR_MS,
            "baseline_ms": self.baseline_days * DAY_MS,
        }


SECTIONS: dict[str, type[_Pattern]] = {
    "split_shipment": SplitShipment,
    "undervaluation": Undervaluation,
    "new_seller_velocity": NewSellerVelocity,
    "carrier_dq_rising": CarrierDqRising,
}
TOP_KEYS = {"version", "normalisation", *SECTIONS}


def _at_least(section: Any, where: str, name: str, low: float, strict: bool = False) -> None:
    value = getattr(section, name)
    if value < low or (strict and value == low):
        relation = ">" if strict else ">="
        raise ConfigError(f"{where}.{name}: expected {relation} {low:g}, got {value!r}")


@dataclass(frozen=True)
class PatternSettings:
    """patterns.yaml, validated, with the party normaliser compiled from it."""

    version: str
    source: str
    abbreviations: Mapping[str, str]
    ignore_tokens: frozenset[str]
    split_shipment: SplitShipment
    undervaluation: Undervaluation
    new_seller_velocity: NewSellerVelocity
    carrier_dq_rising: CarrierDqRising
    normalise: Callable[[str], str] = field(init=False, repr=False, compare=False)
    """Case, accents, punctuation and token order ignored; abbreviations applied, titles and
    legal forms dropped: "Dr. Anna  SCHMIDT" and "Schmidt, Anna" are the same person."""
    seller_digest: Callable[[str | None, str, str], str] = field(
        init=False, repr=False, compare=False
    )
    """(party_id, name, country) -> digest of the registration id when given, else of the
    normalised name and country."""

    def __post_init__(self) -> None:
        # Parties repeat a lot in real traffic: each distinct text is normalised once.
        normalise = lru_cache(maxsize=1 << 16)(self._normalise_uncached)
        object.__setattr__(self, "normalise", normalise)
        seller = lru_cache(maxsize=1 << 16)(self._seller_digest_uncached)
        object.__setattr__(self, "seller_digest", seller)

    def _normalise_uncached(self, text: str) -> str:
        tokens = []
        for token in _NOT_WORD.sub(" ", _fold(text)).split():
            token = self.abbreviations.get(token, token)
            if token not in self.ignore_tokens:
                tokens.append(token)
        tokens.sort()
        return " ".join(tokens)

    def _seller_digest_uncached(self, party_id: str | None, name: str, country: str) -> str:
        party_id = (party_id or "").strip()
        if party_id:
            return _digest("id", party_id.upper())
        return _digest("name", self.normalise(name), country)


_NOT_WORD = re.compile(r"[\W_]+")


def _fold(text: str) -> str:
    if text.isascii():
        return text.lower()
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def _normalisation(data: Any, where: str) -> tuple[dict[str, str], frozenset[str]]:
    if not isinstance(data, dict) or set(data) != {"abbreviations", "ignore_tokens"}:
        raise ConfigError(f"{where}: expected exactly 'abbreviations' and 'ignore_tokens'")
    abbreviations = data["abbreviations"]
    if not isinstance(abbreviations, dict):
        raise ConfigError(f"{where}.abbreviations: expected a mapping of word -> abbreviation")
    folded = {}
    for word, short in abbreviations.items():
        if not isinstance(word, str) or not isinstance(short, str) or not short.strip():
            raise ConfigError(
                f"{where}.abbreviations.{word}: expected a word mapped to a non-blank word, "
                f"got {short!r}"
            )
        folded[_fold(word).strip()] = _fold(short).strip()
    ignore = data["ignore_tokens"]
    if not isinstance(ignore, list) or not all(isinstance(t, str) and t.strip() for t in ignore):
        raise ConfigError(f"{where}.ignore_tokens: expected a list of non-blank words")
    return folded, frozenset(_fold(t).strip() for t in ignore)


def load_pattern_settings(path: Path | None = None) -> PatternSettings:
    """Load and validate patterns.yaml; errors name the file, the section and the key."""
    path = path or DEFAULT_PATH
    data = read_yaml(path, "pattern settings")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping with keys {sorted(TOP_KEYS)}")
    unknown = set(data) - TOP_KEYS
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {sorted(unknown)}; known: {sorted(TOP_KEYS)}")
    missing = TOP_KEYS - set(data)
    if missing:
        raise ConfigError(f"{path}: missing key(s) {sorted(missing)}")
    sections = {}
    for name, cls in SECTIONS.items():
        where = f"{path}: {name}"
        section = build_section(cls, data[name], where)
        section.check(where)
        sections[name] = section
    abbreviations, ignore = _normalisation(data["normalisation"], f"{path}: normalisation")
    return PatternSettings(
        version=str(data["version"]),
        source=str(path),
        abbreviations=abbreviations,
        ignore_tokens=ignore,
        **sections,
    )


# --------------------------------------------------------------------------- keys


def _exp(x: float) -> float:
    """``math.exp`` that saturates instead of raising for a value from an extreme input."""
    return math.exp(min(x, 700.0))


def _digest(*parts: str) -> str:
    """A keyed digest (the deployment's pseudonymisation key): the pattern state and the
    observation topic name parties only by these."""
    return pseudonymiser()("patterns", *parts)


def seller_digest(seller: dict, settings: PatternSettings) -> str:
    """Digest of who the seller is: its registration id when given, else name and country."""
    return settings.seller_digest(seller.get("party_id"), seller["name"], seller["country"])


def split_group_key(declaration: dict, settings: PatternSettings) -> str:
    """State key of a split-shipment group: destination, consignee (name, address), seller.

    Also the key to re-partition declarations by, so that a group lives on one partition.
    """
    consignee = declaration["consignee"]
    return SPLIT_PREFIX + _digest(
        declaration["destination_country"],
        settings.normalise(consignee["name"]),
        settings.normalise(consignee["address"]),
        consignee["country"],
        seller_digest(declaration["seller"], settings),
    )


def seller_key(declaration: dict, settings: PatternSettings) -> str:
    """State key of a seller's velocity entry (also the key to re-partition by for it)."""
    return SELLER_PREFIX + seller_digest(declaration["seller"], settings)


def norm_key(hs_code: str, origin: str) -> str:
    return f"{NORM_PREFIX}{hs_code[:6]}:{origin}"


def carrier_key(carrier_id: str) -> str:
    return CARRIER_PREFIX + carrier_id


SCOPE_MARK = "@"


def scoped(key: str, scope: int | None) -> str:
    """``key`` as kept for the partition ``scope`` (None: unscoped, a single-process state)."""
    return key if scope is None else f"{key}{SCOPE_MARK}{scope}"


def state_partition(key: str) -> int:
    """The partition a scoped state key belongs to (where its changelog record goes)."""
    return int(key.rsplit(SCOPE_MARK, 1)[1])


def observe(
    declaration: dict,
    value_in_reference: float | None,
    de_minimis: float | None,
    settings: PatternSettings,
) -> dict:
    """What the seller-keyed patterns need of a declaration, with the parties as digests only
    (a PatternObservation record without its routing fields)."""
    return {
        "house_waybill": declaration["house_waybill"],
        "filing_time": declaration["filing_time"],
        "destination_country": declaration["destination_country"],
        "seller_key": seller_key(declaration, settings),
        "split_key": split_group_key(declaration, settings),
        "value_reference": value_in_reference,
        "de_minimis": de_minimis,
    }


def seller_partition(seller_key_: str, partitions: int) -> int:
    """The partition a seller's observations and state live on: a stable hash of its key (not
    the producer's partitioner, so every client and every replay agrees)."""
    digest = hashlib.blake2b(seller_key_.encode(), digest_size=8).digest()
    return int.from_bytes(digest) % partitions


# --------------------------------------------------------------------------- detection


@dataclass(slots=True)
class PatternResult:
    """What one batch found and which state it wrote.

    ``split_groups``: one entry per split-shipment group that fired in the batch, with
    ``reassess`` naming the house waybills of earlier batches flagged for the first time (their
    decisions are already out; the caller may issue revisions carrying ``reason``).
    """

    reasons: list[list[dict]]
    changed_keys: set[str] = field(default_factory=set)
    split_groups: list[dict] = field(default_factory=list)
    # consignments of earlier batches a pattern now includes: {"house_waybill", "partition",
    # "reason", "by"}, one per consignment and pattern, ever (their decisions get a new
    # revision); "by": the index of the declaration that completed the pattern
    flags: list[dict] = field(default_factory=list)


class _Batch:
    """One call of ``detect_batch``: a read-through cache over the state, and the findings."""

    def __init__(
        self, state: PatternState, settings: PatternSettings, size: int, scope: int | None
    ) -> None:
        self.state = state
        self.settings = settings
        self.scope = scope
        self.local: dict[str, Any] = {}
        self.changed: set[str] = set()
        self.reasons: list[list[dict]] = [[] for _ in range(size)]
        # split groups: reason per declaration index (the group's latest), members in batch
        self.split_reasons: dict[int, dict] = {}
        self.in_batch: dict[str, dict[str, int]] = {}
        self.groups: dict[str, dict] = {}
        self.flags: list[dict] = []
        self.current = 0
        self.sellers_in_batch: dict[str, dict[str, int]] = {}

    def get(self, key: str) -> Any:
        value = self.local.get(key, _UNREAD)
        if value is _UNREAD:
            value = self.local[key] = self.state.get(key)
        return value

    def put(self, key: str, value: dict) -> None:
        self.local[key] = value
        self.changed.add(key)

    def finish(self) -> PatternResult:
        for i, reason in self.split_reasons.items():
            self.reasons[i].append(reason)
        for reasons in self.reasons:
            if len(reasons) > 1:
                reasons.sort(key=_by_contribution)
        for key in self.changed:
            self.state[key] = self.local[key]
        return PatternResult(self.reasons, self.changed, list(self.groups.values()), self.flags)

    # ------------------------------------------------------------------- split shipments

    def split(self, i: int, obs: dict, t: int, partition: int) -> None:
        cfg = self.settings.split_shipment
        self.current = i
        value = obs["value_reference"]
        if value is None or not value >= 0:  # unknown, or NaN
            return
        destination = obs["destination_country"]
        threshold = obs["de_minimis"]
        if threshold is None:
            return  # no relief to split for
        key = scoped(obs["split_key"], self.scope)
        waybill = obs["house_waybill"]
        window = cfg.window_ms
        old = self.get(key)
        if value > threshold:  # dutiable anyway; if it was amended upwards it leaves its group
            if old is not None and any(e[0] == waybill for e in old["e"]):
                kept = [e for e in old["e"] if e[0] != waybill]
                self.put(key, {"l": old["l"], "e": kept})
            return
        flag = 0
        entries = []
        latest = t
        if old is not None:
            latest = max(old["l"], t)
            horizon = latest - window
            for e in old["e"]:
                if e[0] == waybill:  # an amended or redelivered filing replaces its entry
                    flag = e[3]
                elif e[2] >= horizon:
                    entries.append(e)
        entries.append([waybill, value, t, flag, partition])
        if len(entries) > 1 and entries[-2][2] > t:
            entries.sort(key=_by_time)
        if len(entries) > cfg.max_group_size:
            del entries[: len(entries) - cfg.max_group_size]
        self.in_batch.setdefault(key, {})[waybill] = i
        group = [e for e in entries if abs(e[2] - t) <= window]
        total = sum(e[1] for e in group)
        if len(group) >= cfg.min_consignments and total > threshold:
            self._split_fired(key, waybill, destination, group, entries, total, threshold)
        self.put(key, {"l": latest, "e": entries})

    def _split_fired(
        self,
        key: str,
        waybill: str,
        destination: str,
        group: list[list],
        entries: list[list],
        total: float,
        threshold: float,
    ) -> None:
        cfg = self.settings.split_shipment
        waybills = [e[0] for e in group]
        shown = waybills[: cfg.evidence_waybills]
        more = len(waybills) - len(shown)
        evidence = (
            f"{len(group)} consignments from one seller to one consignee within "
            f"{cfg.window_hours:g} h, each at most the de minimis {threshold:.2f}, together "
            f"{total:.2f}"
        )
        if shown:
            evidence += ": " + ", ".join(shown) + (f" and {more} more" if more else "")
        reason = cfg.reason(evidence)
        members = self.in_batch[key]
        fired = self.groups.get(key)
        reassess = fired["reassess"] if fired else []
        in_group = set(waybills)
        for n, e in enumerate(entries):
            if e[0] not in in_group:
                continue
            index = members.get(e[0])
            if index is not None:
                self.split_reasons[index] = reason
            elif not e[3]:
                reassess.append(e[0])
                self._flag(e[0], e[4] if len(e) > 4 else -1, reason)
            if not e[3]:
                entries[n] = [*e[:3], 1, *e[4:]]  # never mutate what was read
        self.groups[key] = {
            "key": key,
            "destination_country": destination,
            "trigger_waybill": waybill,
            "house_waybills": waybills,
            "total": total,
            "threshold": threshold,
            "window_hours": cfg.window_hours,
            "reassess": reassess,
            "reason": reason,
        }

    # ------------------------------------------------------------------- undervaluation

    def undervaluation(
        self, i: int, record: dict, value: float | None, failed: bool, t: int
    ) -> None:
        cfg = self.settings.undervaluation
        items = record["items"]
        values = _line_values(items, value)
        if values is None:
            return
        worst: tuple[float, str, dict, float, dict] | None = None
        for item, line_value in zip(items, values, strict=True):
            kg = item["net_weight_kg"]
            hs = item["hs_code"]
            per_kg = line_value / kg if kg > 0 else 0.0
            if not (0.0 < per_kg < math.inf and len(hs) >= 6):
                continue
            x = math.log(per_kg)
            key = scoped(norm_key(hs, item["origin_country"]), self.scope)
            old = self.get(key)
            if old is not None and t - old["l"] > cfg.forget_ms:
                old = None
            if old is not None and old["n"] >= cfg.min_observations:
                spread = max(math.sqrt(old["v"]), cfg.min_spread)
                gap = old["m"] - x
                if (
                    gap >= cfg.log_ratio
                    and gap >= cfg.min_z_score * spread
                    and (worst is None or gap > worst[0])
                ):
                    worst = (gap, hs[:6], item, per_kg, old)
            if not failed:  # a filing that failed data quality does not teach the norm
                self.put(key, _learn(old, x, t, cfg))
        if worst is not None:
            gap, hs6, item, per_kg, norm = worst
            evidence = (
                f"HS {hs6} from {item['origin_country']}: {per_kg:.2f} per kg against a norm "
                f"of {_exp(norm['m']):.2f} per kg ({_exp(gap):.1f}x below, norm of "
                f"{norm['n']} lines)"
            )
            self.reasons[i].append(cfg.reason(evidence))

    # ------------------------------------------------------------------- velocity

    def _flag(self, waybill: str, partition: int, reason: dict) -> None:
        """An earlier batch's consignment now in a pattern: its decision is to be amended."""
        if partition >= 0:  # entries from before partitions were kept cannot be sent back
            self.flags.append(
                {
                    "house_waybill": waybill,
                    "partition": partition,
                    "reason": reason,
                    "by": self.current,  # the declaration whose arrival completed the pattern
                }
            )

    def seller_velocity(self, i: int, obs: dict, t: int, since: int, partition: int) -> None:
        cfg = self.settings.new_seller_velocity
        self.current = i
        key = scoped(obs["seller_key"], self.scope)
        old = self.get(key)
        if old is None or t - old["l"] > cfg.forget_ms:
            first, last, times, waybills, parts, flagged = t, t, [], [], [], []
        else:
            first, last = min(old["f"], t), max(old["l"], t)
            times, waybills = old["t"], old["w"]
            if times is not None:
                parts = old.get("p") or [-1] * len(times)
                flagged = old.get("g") or [1] * len(times)
        # New: first seen lately, after watching long enough to have seen it before if it had
        # shipped (a freshly started worker would otherwise take every seller for a new one).
        if t - first > cfg.new_for_ms or first - since < cfg.new_for_ms:
            # Established: only the last-seen time matters, and a coarse one will do.
            if old is None or times is not None or last - old["l"] > cfg.forget_ms / 100:
                self.put(key, {"f": first, "l": last, "t": None, "w": None})
            return
        # The seller's consignments within the window, sorted by time: times, house waybills,
        # their partitions and whether each was flagged, as parallel lists so that pruning and
        # insertion are C-level list operations.
        start = bisect_left(times, last - cfg.window_ms)
        # copies: what was read stays as is
        times, waybills = times[start:], waybills[start:]
        parts, flagged = parts[start:], flagged[start:]
        waybill = obs["house_waybill"]
        j = bisect_left(times, t)
        k = bisect_right(times, t, j)
        if waybill not in waybills[j:k]:  # else redelivered: counted already
            times.insert(k, t)
            waybills.insert(k, waybill)
            parts.insert(k, partition)
            flagged.insert(k, 0)
        if len(times) > cfg.track_at_most:
            cut = len(times) - cfg.track_at_most
            del times[:cut], waybills[:cut], parts[:cut], flagged[:cut]
        members = self.sellers_in_batch.setdefault(key, {})
        members[waybill] = i
        count = len(times)
        if count > cfg.max_consignments and not all(flagged):
            # The burst as a whole: every consignment of the window not flagged yet, so the
            # same consignments are flagged whatever order they arrive in.
            at_least = "at least " if count >= cfg.track_at_most else ""
            evidence = (
                f"seller first seen {(t - first) / DAY_MS:.1f} days ago; {at_least}{count} "
                f"consignments within {cfg.window_hours:g} h (more than {cfg.max_consignments})"
            )
            reason = cfg.reason(evidence)
            for n, done in enumerate(flagged):
                if done:
                    continue
                flagged[n] = 1
                index = members.get(waybills[n])
                if index is not None:
                    self.reasons[index].append(reason)
                else:
                    self._flag(waybills[n], parts[n], reason)
        self.put(key, {"f": first, "l": last, "t": times, "w": waybills, "p": parts, "g": flagged})

    def carrier_quality(self, i: int, record: dict, failed: bool, t: int) -> None:
        cfg = self.settings.carrier_dq_rising
        key = scoped(carrier_key(record["carrier_id"]), self.scope)
        old = self.get(key)
        if old is None or t - old["l"] > cfg.forget_ms:
            ns = fs = nb = fb = 0.0
            last = t
        else:
            last = max(old["l"], t)
            dt = t - old["l"]
            if dt > 0:
                recent = math.exp(-dt / cfg.recent_ms)
                base = math.exp(-dt / cfg.baseline_ms)
                ns, fs = old["ns"] * recent, old["fs"] * recent
                nb, fb = old["nb"] * base, old["fb"] * base
            else:  # same instant or out of order: counted as now
                ns, fs, nb, fb = old["ns"], old["fs"], old["nb"], old["fb"]
        ns += 1.0
        nb += 1.0
        if failed:
            fs += 1.0
            fb += 1.0
        self.put(key, {"l": last, "ns": ns, "fs": fs, "nb": nb, "fb": fb})
        if ns < cfg.min_recent_filings:
            return
        recent_rate, base_rate = fs / ns, fb / nb
        if recent_rate - base_rate >= cfg.min_increase and recent_rate >= cfg.ratio * base_rate:
            evidence = (
                f"carrier {record['carrier_id']}: {recent_rate:.0%} of filings failed data "
                f"quality over about {cfg.recent_hours:g} h against {base_rate:.0%} over about "
                f"{cfg.baseline_days:g} days"
            )
            self.reasons[i].append(cfg.reason(evidence))


def _learn(old: dict | None, x: float, t: int, cfg: Undervaluation) -> dict:
    """The norm after one more line: exponentially weighted mean and variance of log value/kg.

    Until ``memory_lines`` lines are seen it is the plain running mean; once trusted, a line
    moves it by at most ``clip_z_score`` spreads, so a run of undervalued goods cannot quickly
    redefine what is normal.
    """
    if old is None:
        return {"l": t, "n": 1, "m": x, "v": 0.0}
    n = old["n"]
    m = old["m"]
    v = old["v"]
    alpha = max(1.0 / (n + 1), 1.0 / cfg.memory_lines)
    d = x - m
    if n >= cfg.min_observations:
        limit = cfg.clip_z_score * max(math.sqrt(v), cfg.min_spread)
        d = max(-limit, min(limit, d))
    return {
        "l": max(old["l"], t),
        "n": n + 1,
        "m": m + alpha * d,
        "v": (1.0 - alpha) * (v + alpha * d * d),
    }


def _line_values(items: list[dict], value: float | None) -> list[float] | None:
    """The consignment's value apportioned to its lines (in the reference currency).

    Only possible when all lines share one currency; mixed-currency consignments are rare and
    skipped rather than guessed.
    """
    if value is None or not items:
        return None
    if len(items) == 1:
        return [value]
    currency = items[0]["currency"]
    total = 0.0
    for item in items:
        if item["currency"] != currency:
            return None
        total += item["value"]
    if total <= 0:
        return None
    scale = value / total
    return [item["value"] * scale for item in items]


_by_time = itemgetter(2)
_UNREAD = object()


def _by_contribution(reason: dict) -> float:
    return -reason["contribution"]


ENTITY_PATTERNS = ("split_shipment", "new_seller_velocity")
"""Counted per seller (``detect_entity_batch``); the others per filing partition."""
FILING_PATTERNS = ("undervaluation", "carrier_dq_rising")
ALL_PATTERNS = (*ENTITY_PATTERNS, *FILING_PATTERNS)


def _since(run: _Batch, observations: Sequence[dict], now_ms: int) -> int:
    """When the state started watching (velocity needs it), recorded at its first batch."""
    key = scoped(OBSERVING_KEY, run.scope)
    watching = run.get(key)
    if watching is not None:
        return watching["since"]
    since = min(min(o["filing_time"] for o in observations), now_ms)
    run.put(key, {"l": since, "since": since})
    return since


def detect_entity_batch(
    observations: Sequence[dict],
    partitions: Sequence[int],
    state: PatternState,
    now_ms: int,
    settings: PatternSettings,
    scope: int | None = None,
) -> PatternResult:
    """Split-shipment and seller-velocity reasons for each observation (``observe``), in
    order, updating ``state``; ``partitions``: each house waybill's filing partition (where a
    later flag must be sent). ``scope``: the seller partition whose observations these are."""
    run = _Batch(state, settings, len(observations), scope)
    split = settings.split_shipment.enabled
    velocity = settings.new_seller_velocity.enabled
    since = _since(run, observations, now_ms) if velocity and observations else 0
    for i, obs in enumerate(observations):
        t = min(obs["filing_time"], now_ms)  # a filing cannot be later than its receipt
        if split:
            run.split(i, obs, t, partitions[i])
        if velocity:
            run.seller_velocity(i, obs, t, since, partitions[i])
    return run.finish()


def detect_batch(
    declarations: Sequence[dict],
    values_in_reference: Sequence[float | None],
    quality_failed: Sequence[bool],
    state: PatternState,
    now_ms: int,
    settings: PatternSettings,
    de_minimis: Callable[[str], float | None],
    kinds: Sequence[str] = ALL_PATTERNS,
    scope: int | None = None,
    partitions: Sequence[int] | None = None,
) -> PatternResult:
    """Pattern reasons for each pre-arrival declaration, in order, updating ``state``.

    ``values_in_reference``: each consignment's intrinsic value in the reference currency (None
    when unknown); ``quality_failed``: whether it failed data quality; ``de_minimis(dest)``: the
    destination's threshold in the reference currency, None when there is none. Declarations
    are taken in the given order, so the result depends only on the inputs and the state.
    ``kinds``: the patterns to run (the worker runs ``FILING_PATTERNS`` here and the others
    on the seller's partition); ``scope``: the filing partition the state is kept for;
    ``partitions``: each declaration's (for flags of earlier batches; default ``scope``).
    """
    if not len(declarations) == len(values_in_reference) == len(quality_failed):
        raise ValueError("declarations, values_in_reference and quality_failed differ in length")
    run = _Batch(state, settings, len(declarations), scope)
    split = settings.split_shipment.enabled and "split_shipment" in kinds
    norm = settings.undervaluation.enabled and "undervaluation" in kinds
    velocity = settings.new_seller_velocity.enabled and "new_seller_velocity" in kinds
    carrier = settings.carrier_dq_rising.enabled and "carrier_dq_rising" in kinds
    since = _since(run, declarations, now_ms) if velocity and declarations else 0
    thresholds: dict[str, float | None] = {}
    default_partition = scope if scope is not None else 0
    for i, record in enumerate(declarations):
        t = min(record["filing_time"], now_ms)  # a filing cannot be later than its receipt
        value = values_in_reference[i]
        failed = bool(quality_failed[i])
        if split or velocity:
            destination = record["destination_country"]
            if destination not in thresholds:
                thresholds[destination] = de_minimis(destination)
            obs = observe(record, value, thresholds[destination], settings)
            partition = partitions[i] if partitions is not None else default_partition
            if split:
                run.split(i, obs, t, partition)
            if velocity:
                run.seller_velocity(i, obs, t, since, partition)
        if norm:
            run.undervaluation(i, record, value, failed, t)
        if carrier:
            run.carrier_quality(i, record, failed, t)
    return run.finish()


_FORGET_BY_PREFIX: tuple[tuple[str, str], ...] = (
    (SPLIT_PREFIX, "split_shipment"),
    (NORM_PREFIX, "undervaluation"),
    (SELLER_PREFIX, "new_seller_velocity"),
    (CARRIER_PREFIX, "carrier_dq_rising"),
)


def mark_observing_since(state: PatternState, since_ms: int, scope: int | None = None) -> None:
    """Record that the state has watched traffic since ``since_ms`` unless it already knows
    (after loading history into it, or in tests)."""
    key = scoped(OBSERVING_KEY, scope)
    if key not in state:
        state[key] = {"l": since_ms, "since": since_ms}


def expire_state(state: PatternState, now_ms: int, settings: PatternSettings) -> set[str]:
    """Delete entries whose latest event is older than their pattern remembers; returns the keys.

    ``detect_batch`` already ignores stale entries it touches; this sweep (run now and then,
    e.g. from a Faust timer) reclaims the ones nothing touches any more.
    """
    horizons = [
        (prefix, now_ms - getattr(settings, name).forget_ms) for prefix, name in _FORGET_BY_PREFIX
    ]
    stale = []
    for key, value in state.items():
        for prefix, horizon in horizons:
            if key.startswith(prefix):
                if value["l"] < horizon:
                    stale.append(key)
                break
    for key in stale:
        del state[key]
    return set(stale)
