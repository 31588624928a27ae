"""Explained targeting rules (Standards 4 and 10): a filing's facts in, a score with reasons out.

Rules live in versioned profiles (``settings/targeting/profiles/*.yaml``, or a folder named in
the settings) so targeting officers change what is risky without a software release; a running
worker picks changes up (``RuleBook``). Each rule is compiled once into a predicate over
``FilingFacts``; facts are derived once per filing, so a rule costs a predicate call, not
another pass over the fields.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from greenlane.streams.domain.vocabulary import (
    PLACI_OUTCOMES,
    PRE_ARRIVAL,
    PRE_LOADING,
    SEVERITY,
    STAGES,
)
from greenlane.streams.settings import SETTINGS_DIR, ConfigError, read_yaml
from greenlane.streams.settings.watch import Watched

DEFAULT_FOLDER = SETTINGS_DIR / "targeting"
# What a rule may force, and what that means at each stage (most severe wins).
FORCE_AT_STAGE = {
    "HOLD": {PRE_ARRIVAL: "HOLD", PRE_LOADING: "REQUEST_FOR_INFORMATION"},
    "INSPECT": {PRE_ARRIVAL: "INSPECT", PRE_LOADING: "HIGH_RISK_CARGO_SCREENING"},
    "REQUEST_FOR_INFORMATION": {PRE_ARRIVAL: "HOLD", PRE_LOADING: "REQUEST_FOR_INFORMATION"},
    "HIGH_RISK_CARGO_SCREENING": {
        PRE_ARRIVAL: "INSPECT",
        PRE_LOADING: "HIGH_RISK_CARGO_SCREENING",
    },
    "DO_NOT_LOAD": {PRE_ARRIVAL: "INSPECT", PRE_LOADING: "DO_NOT_LOAD"},
}
log = logging.getLogger("greenlane.targeting")


@dataclass(frozen=True, slots=True)
class FilingFacts:
    """What the rules look at, derived once per filing."""

    stage: str
    hs_codes: tuple[str, ...]
    text: str  # all goods descriptions, lower-case, joined
    origins: frozenset[str]
    route: frozenset[str]
    finding_codes: frozenset[str]
    quality_score: float
    value_per_kg: float | None  # in the reference currency
    linked_outcome: str | None
    has_link: bool
    by_air: bool
    dispatch: frozenset[str] = frozenset()  # shipper / seller country
    total_value: float | None = None  # in the reference currency
    weight_kg: float = 0.0  # gross (pre-loading) or summed net (pre-arrival)
    carrier_id: str = ""
    platform: str = ""
    filing_time: int = 0  # epoch ms: validity periods are judged on the filing, not the clock


Predicate = Callable[[FilingFacts], "str | None"]
"""Returns the evidence (a short text) when the condition holds, None when it does not."""


@dataclass(frozen=True, slots=True)
class Rule:
    code: str
    description: str
    weight: float
    stages: frozenset[str]
    carrier_visible: bool
    predicates: tuple[Predicate, ...]
    force: str | None = None  # an outcome this rule imposes whatever the score
    profile: str = ""
    valid_from: int | None = None  # epoch ms, inclusive
    valid_until: int | None = None  # epoch ms, exclusive
    refer: tuple[str, ...] = ()  # partner agencies that get a copy of the decision
    reads_link: bool = False  # a condition on the other filing (LINK_CONDITIONS)

    def evaluate(self, facts: FilingFacts) -> dict | None:
        """The reason this rule gives for a filing, or None when it does not fire."""
        if facts.stage not in self.stages:
            return None
        return self.fire(facts)

    def fire(self, facts: FilingFacts) -> dict | None:
        """As ``evaluate``, for callers that already know the rule applies to the stage."""
        if (self.valid_from is not None and facts.filing_time < self.valid_from) or (
            self.valid_until is not None and facts.filing_time >= self.valid_until
        ):
            return None
        evidence = []
        for predicate in self.predicates:
            found = predicate(facts)
            if found is None:
                return None
            evidence.append(found)
        if self.force:
            evidence.append(f"forces {FORCE_AT_STAGE[self.force][facts.stage]}")
        if self.refer:
            evidence.append(f"refers to {', '.join(self.refer)}")
        return {
            "code": self.code,
            "description": self.description,
            "contribution": self.weight,
            "evidence": "; ".join(e for e in evidence if e) or None,
            "carrier_visible": self.carrier_visible,
        }


@dataclass(frozen=True)
class Thresholds:
    hold: float
    inspect: float
    request_for_information: float
    high_risk_cargo_screening: float
    do_not_load: float
    # pre-arrival: reason codes that, all present, inspect whatever the score adds up to
    inspect_together: tuple[frozenset[str], ...] = ()


@dataclass(frozen=True)
class TargetingRules:
    version: str
    thresholds: Thresholds
    rules: tuple[Rule, ...]
    source: str
    agencies: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Per stage, the rules that apply to it: the hot loop does no stage tests.
        by_stage = {st: tuple(r for r in self.rules if st in r.stages) for st in STAGES}
        object.__setattr__(self, "_by_stage", by_stage)
        object.__setattr__(self, "_refer", {r.code: r.refer for r in self.rules if r.refer})
        reads = {st: any(r.reads_link for r in by_stage[st]) for st in STAGES}
        object.__setattr__(self, "_reads_link", reads)

    def reads_link(self, stage: str) -> bool:
        """Whether a rule of ``stage`` reads the other filing (its outcome, or whether there
        is one): only then can the other filing change this stage's assessment."""
        return self._reads_link[stage]  # type: ignore[attr-defined]

    def referrals(self, reasons: list[dict]) -> list[str]:
        """The partner agencies the fired rules refer the consignment to."""
        refer = self._refer  # type: ignore[attr-defined]
        return sorted({a for r in reasons for a in refer.get(r["code"], ())})

    def for_stage(self, stage: str) -> tuple[Rule, ...]:
        return self._by_stage[stage]  # type: ignore[attr-defined]


def _string_list(value: Any, where: str) -> list[str]:
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where}: expected a non-empty list of strings")
    return value


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    return float(value)


def _goods(spec: Any, where: str) -> Predicate:
    if not isinstance(spec, dict) or not set(spec) <= {"hs_prefix", "keywords"} or not spec:
        raise ConfigError(f"{where}: expected 'hs_prefix' and/or 'keywords'")
    prefixes = (
        tuple(_string_list(spec["hs_prefix"], f"{where}.hs_prefix"))
        if ("hs_prefix" in spec)
        else ()
    )
    keywords = _string_list(spec["keywords"], f"{where}.keywords") if "keywords" in spec else []
    pattern = (
        re.compile(r"\b(?:" + "|".join(re.escape(k.lower()) for k in keywords) + r")\b")
        if keywords
        else None
    )

    def goods(f: FilingFacts) -> str | None:
        for code in f.hs_codes:
            if code.startswith(prefixes):
                return f"HS {code}"
        if pattern is not None:
            match = pattern.search(f.text)
            if match:
                return f"description mentions '{match.group(0)}'"
        return None

    return goods


def _countries(attr: str, label: str) -> Callable[[Any, str], Predicate]:
    def build(spec: Any, where: str) -> Predicate:
        listed = frozenset(c.upper() for c in _string_list(spec, where))

        def in_list(f: FilingFacts) -> str | None:
            hit = getattr(f, attr) & listed
            return f"{label} {', '.join(sorted(hit))}" if hit else None

        return in_list

    return build


def _quality_finding(spec: Any, where: str) -> Predicate:
    codes = frozenset(_string_list(spec, where))

    def has_finding(f: FilingFacts) -> str | None:
        hit = f.finding_codes & codes
        return ", ".join(sorted(hit)) if hit else None

    return has_finding


def _quality_score_below(spec: Any, where: str) -> Predicate:
    limit = _number(spec, where)

    def below(f: FilingFacts) -> str | None:
        return (
            f"quality score {f.quality_score:.2f} < {limit:g}" if f.quality_score < limit else None
        )

    return below


def _value_per_kg_below(spec: Any, where: str) -> Predicate:
    limit = _number(spec, where)

    def below(f: FilingFacts) -> str | None:
        v = f.value_per_kg
        return f"{v:.2f} per kg < {limit:g}" if v is not None and v < limit else None

    return below


def _linked_outcome_in(spec: Any, where: str) -> Predicate:
    outcomes = frozenset(_string_list(spec, where))
    unknown = outcomes - set(PLACI_OUTCOMES)
    if unknown:
        raise ConfigError(f"{where}: unknown PLACI outcome(s) {sorted(unknown)}")

    def linked(f: FilingFacts) -> str | None:
        return f"pre-loading outcome {f.linked_outcome}" if f.linked_outcome in outcomes else None

    return linked


def _no_linked_filing(spec: Any, where: str) -> Predicate:
    if spec is not True:
        raise ConfigError(f"{where}: only 'true' is meaningful")

    def unlinked(f: FilingFacts) -> str | None:
        return "no pre-loading filing received" if f.by_air and not f.has_link else None

    return unlinked


def _description_regex(spec: Any, where: str) -> Predicate:
    if not isinstance(spec, str) or not spec:
        raise ConfigError(f"{where}: expected a regular expression")
    try:
        pattern = re.compile(spec, re.IGNORECASE)
    except re.error as exc:
        raise ConfigError(f"{where}: invalid regular expression: {exc}") from exc

    def matches(f: FilingFacts) -> str | None:
        match = pattern.search(f.text)
        return f"description matches '{match.group(0)}'" if match else None

    return matches


def _band(attr: str, label: str) -> Callable[[Any, str], Predicate]:
    def build(spec: Any, where: str) -> Predicate:
        if not isinstance(spec, list) or len(spec) != 2:
            raise ConfigError(f"{where}: expected [min, max]")
        low, high = _number(spec[0], f"{where}[0]"), _number(spec[1], f"{where}[1]")
        if low > high:
            raise ConfigError(f"{where}: min {low:g} is above max {high:g}")

        def within(f: FilingFacts) -> str | None:
            v = getattr(f, attr)
            return (
                f"{label} {v:.2f} in [{low:g}, {high:g}]"
                if v is not None and (low <= v <= high)
                else None
            )

        return within

    return build


def _in_list(lists: dict[str, frozenset[str]]) -> Callable[[Any, str], Predicate]:
    fields = {
        "origin": "origins",
        "route": "route",
        "dispatch": "dispatch",
        "hs_code": "hs_codes",
        "carrier": "carrier_id",
        "platform": "platform",
    }

    def build(spec: Any, where: str) -> Predicate:
        if not isinstance(spec, dict) or set(spec) != {"field", "list"}:
            raise ConfigError(f"{where}: expected {{field: ..., list: ...}}")
        if spec["field"] not in fields:
            raise ConfigError(f"{where}.field: expected one of {sorted(fields)}")
        if spec["list"] not in lists:
            raise ConfigError(
                f"{where}.list: no list named {spec['list']!r}; known: {sorted(lists)}"
            )
        attr, members, name = fields[spec["field"]], lists[spec["list"]], spec["list"]

        def member(f: FilingFacts) -> str | None:
            value = getattr(f, attr)
            values = {value} if isinstance(value, str) else value
            hit = sorted(v for v in values if v in members)
            return f"{spec['field']} {', '.join(hit)} on list {name}" if hit else None

        return member

    return build


CONDITIONS: dict[str, Callable[[Any, str], Predicate]] = {
    "goods": _goods,
    "origin_in": _countries("origins", "origin"),
    "route_in": _countries("route", "via"),
    "quality_finding": _quality_finding,
    "quality_score_below": _quality_score_below,
    "value_per_kg_below": _value_per_kg_below,
    "linked_outcome_in": _linked_outcome_in,
    "no_linked_filing": _no_linked_filing,
    "dispatch_in": _countries("dispatch", "dispatched from"),
    "description_regex": _description_regex,
    "value_between": _band("total_value", "value"),
    "weight_between": _band("weight_kg", "weight kg"),
}
# Conditions on the other filing of the consignment: a rule with one is re-run when it changes.
LINK_CONDITIONS = frozenset({"linked_outcome_in", "no_linked_filing"})
# Conditions that only make sense for one stage restrict the rule to it.
STAGE_OF_CONDITION = {
    "value_per_kg_below": PRE_ARRIVAL,
    "value_between": PRE_ARRIVAL,
    "linked_outcome_in": PRE_ARRIVAL,
    "no_linked_filing": PRE_ARRIVAL,
}
RULE_KEYS = {
    "id",
    "description",
    "weight",
    "refer",
    "force",
    "when",
    "stages",
    "carrier_visible",
    "valid_from",
    "valid_until",
}


def _epoch_ms(value: Any, where: str) -> int:
    if isinstance(value, str):
        with contextlib.suppress(ValueError):  # not ISO: refused below with the field named
            value = datetime.fromisoformat(value)
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=UTC)
    elif isinstance(value, date):
        moment = datetime(value.year, value.month, value.day, tzinfo=UTC)
    else:
        raise ConfigError(f"{where}: expected a date (YYYY-MM-DD) or a timestamp, got {value!r}")
    return int(moment.timestamp() * 1000)


def _rule(
    spec: Any,
    where: str,
    lists: dict[str, frozenset[str]],
    profile: str,
    agencies: dict[str, str] | None = None,
) -> Rule:
    if not isinstance(spec, dict):
        raise ConfigError(f"{where}: expected a mapping")
    if "id" not in spec:
        raise ConfigError(f"{where}: missing 'id'")
    where = f"{where} ({spec['id']})"
    unknown = set(spec) - RULE_KEYS
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {sorted(unknown)}; known: {sorted(RULE_KEYS)}")
    for key in ("description", "when"):
        if key not in spec:
            raise ConfigError(f"{where}: missing '{key}'")
    if not {"weight", "force", "refer"} & set(spec):
        raise ConfigError(f"{where}: needs an effect: 'weight', 'force' and/or 'refer'")
    refer = tuple(_string_list(spec["refer"], f"{where}.refer")) if "refer" in spec else ()
    unknown_agencies = set(refer) - set(agencies or {})
    if unknown_agencies:
        raise ConfigError(
            f"{where}.refer: unknown agency {sorted(unknown_agencies)}; "
            f"known (agencies.yaml): {sorted(agencies or {})}"
        )
    force = spec.get("force")
    if force is not None and force not in FORCE_AT_STAGE:
        raise ConfigError(f"{where}.force: expected one of {sorted(FORCE_AT_STAGE)}")
    when = spec["when"]
    if not isinstance(when, dict) or not when:
        raise ConfigError(f"{where}.when: expected at least one condition")
    stages = set(_string_list(spec.get("stages", list(STAGES)), f"{where}.stages"))
    if not stages <= set(STAGES):
        raise ConfigError(f"{where}.stages: expected some of {STAGES}")
    conditions = dict(CONDITIONS, in_list=_in_list(lists))
    predicates = []
    for name, arg in when.items():
        if name not in conditions:
            raise ConfigError(
                f"{where}.when.{name}: unknown condition; known: {sorted(conditions)}"
            )
        predicates.append(conditions[name](arg, f"{where}.when.{name}"))
        if name in STAGE_OF_CONDITION:
            stages &= {STAGE_OF_CONDITION[name]}
    valid_from = (
        _epoch_ms(spec["valid_from"], f"{where}.valid_from") if ("valid_from" in spec) else None
    )
    valid_until = (
        _epoch_ms(spec["valid_until"], f"{where}.valid_until") if ("valid_until" in spec) else None
    )
    if valid_from is not None and valid_until is not None and valid_until <= valid_from:
        raise ConfigError(f"{where}: valid_until must be after valid_from")
    return Rule(
        code=str(spec["id"]),
        description=str(spec["description"]),
        weight=_number(spec.get("weight", 0), f"{where}.weight"),
        stages=frozenset(stages),
        carrier_visible=bool(spec.get("carrier_visible", True)),
        predicates=tuple(predicates),
        force=force,
        profile=profile,
        valid_from=valid_from,
        valid_until=valid_until,
        refer=refer,
        reads_link=bool(LINK_CONDITIONS & set(when)),
    )


def _together(value: Any, path: Path) -> tuple[frozenset[str], ...]:
    where = f"{path}: pre_arrival.inspect_together"
    if not isinstance(value, list) or not all(
        isinstance(codes, list) and len(codes) >= 2 and all(isinstance(c, str) for c in codes)
        for codes in value
    ):
        raise ConfigError(f"{where}: expected a list of reason-code lists, two codes or more each")
    return tuple(frozenset(codes) for codes in value)


def _thresholds(path: Path) -> Thresholds:
    th = read_yaml(path)
    try:
        thresholds = Thresholds(
            hold=_number(th["pre_arrival"]["hold"], f"{path}: pre_arrival.hold"),
            inspect=_number(th["pre_arrival"]["inspect"], f"{path}: pre_arrival.inspect"),
            **{
                k: _number(th["pre_loading"][k], f"{path}: pre_loading.{k}")
                for k in ("request_for_information", "high_risk_cargo_screening", "do_not_load")
            },
            inspect_together=_together(th["pre_arrival"].get("inspect_together", []), path),
        )
    except (KeyError, TypeError, AttributeError) as exc:
        raise ConfigError(f"{path}: missing {exc}") from exc
    if not thresholds.hold <= thresholds.inspect:
        raise ConfigError(f"{path}: pre_arrival: hold must not exceed inspect")
    if not (
        thresholds.request_for_information
        <= thresholds.high_risk_cargo_screening
        <= thresholds.do_not_load
    ):
        raise ConfigError(f"{path}: pre_loading thresholds must be increasing")
    return thresholds


def named_lists(folder: Path) -> dict[str, frozenset[str]]:
    """The lists rules refer to with ``in_list`` (``lists.yaml``; optional)."""
    path = folder / "lists.yaml"
    if not path.exists():
        return {}
    data = read_yaml(path) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of list name to values")
    return {
        name: frozenset(_string_list(values, f"{path}: {name}")) for name, values in data.items()
    }


def load_agencies(folder: Path | None = None) -> dict[str, str]:
    """Partner agency id -> name (``agencies.yaml``; optional)."""
    path = Path(folder or DEFAULT_FOLDER) / "agencies.yaml"
    if not path.exists():
        return {}
    data = read_yaml(path) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of agency id to {{name: ...}}")
    out = {}
    for agency, spec in data.items():
        if not re.fullmatch(r"[a-z][a-z0-9_]*", str(agency)):
            raise ConfigError(f"{path}: {agency}: ids are lower-case letters, digits and '_'")
        if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
            raise ConfigError(f"{path}: {agency}.name: expected a string")
        out[str(agency)] = spec["name"]
    return out


def profile_files(folder: Path) -> list[Path]:
    return sorted((folder / "profiles").glob("*.yaml"))


def raw_rules(folder: Path | None = None) -> list[tuple[str, dict]]:
    """(where, rule as written) for every rule of every profile: for tools that reason about
    the rules without running them (the carrier simulator aims its risky traffic with this)."""
    folder = Path(folder or DEFAULT_FOLDER)
    out = []
    for path in profile_files(folder):
        data = read_yaml(path) or {}
        for i, spec in enumerate(data.get("rules") or []):
            out.append((f"{path}: rules[{i}]", spec))
    return out


def load_targeting_rules(folder: Path | None = None) -> TargetingRules:
    """Load and validate the rule set; errors name the file, the rule and the field."""
    folder = Path(folder or DEFAULT_FOLDER)
    if not folder.is_dir():
        raise ConfigError(f"{folder}: targeting folder not found")
    thresholds = _thresholds(folder / "thresholds.yaml")
    lists = named_lists(folder)
    agencies = load_agencies(folder)
    digest = hashlib.blake2b(digest_size=4)
    rules: list[Rule] = []
    versions = []
    files = profile_files(folder)
    if not files:
        raise ConfigError(f"{folder / 'profiles'}: no profile (*.yaml) found")
    for path in files:
        digest.update(path.read_bytes())
        data = read_yaml(path)
        if not isinstance(data, dict) or not {"profile", "version", "rules"} <= set(data):
            raise ConfigError(f"{path}: expected 'profile', 'version' and 'rules'")
        if not isinstance(data["rules"], list):
            raise ConfigError(f"{path}: rules: expected a list")
        name = str(data["profile"])
        versions.append(f"{name}@{data['version']}")
        rules += [
            _rule(spec, f"{path}: rules[{i}]", lists, name, agencies)
            for i, spec in enumerate(data["rules"])
        ]
    for extra in ("thresholds.yaml", "lists.yaml"):
        if (folder / extra).exists():
            digest.update((folder / extra).read_bytes())
    codes = [r.code for r in rules]
    duplicated = {c for c in codes if codes.count(c) > 1}
    if duplicated:
        raise ConfigError(f"{folder}: rule id(s) used twice: {sorted(duplicated)}")
    version = ",".join(versions) + "#" + digest.hexdigest()
    return TargetingRules(version, thresholds, tuple(rules), str(folder), agencies)


def score_batch(
    facts: Sequence[FilingFacts], rules: TargetingRules
) -> list[tuple[float, list[dict], str | None]]:
    """Risk score, reasons (largest contribution first) and forced outcome for each filing."""
    out = []
    for f in facts:
        reasons = []
        forced = None
        for rule in rules.for_stage(f.stage):
            reason = rule.fire(f)
            if reason is not None:
                reasons.append(reason)
                if rule.force is not None:
                    outcome = FORCE_AT_STAGE[rule.force][f.stage]
                    if forced is None or SEVERITY[outcome] > SEVERITY[forced]:
                        forced = outcome
        if reasons:
            reasons.sort(key=_by_contribution)
            out.append((sum(r["contribution"] for r in reasons), reasons, forced))
        else:
            out.append((0.0, reasons, None))
    return out


def _by_contribution(reason: dict) -> float:
    return -reason["contribution"]


class RuleBook(Watched[TargetingRules]):
    """The rule set a running worker uses, reloaded when its files change (settings.watch):
    a set that does not validate is refused and the previous one stays in force, so a typo
    in a profile never stops targeting."""

    def __init__(
        self,
        folder: Path | None = None,
        check_seconds: float = 5.0,
        on_reload: Callable[[TargetingRules | None, Exception | None], None] | None = None,
    ) -> None:
        self.folder = Path(folder or DEFAULT_FOLDER)
        super().__init__(
            "targeting",
            lambda: [self.folder],
            lambda: load_targeting_rules(self.folder),
            check_seconds,
            (lambda _name, rules, error: on_reload(rules, error)) if on_reload else None,
        )
