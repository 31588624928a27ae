"""Explained targeting rules (Standards 4 and 10): a filing's facts in, a score with reasons out.

Rules live in ``settings/targeting.yaml`` so targeting officers change what is risky without a
software release. Each rule is compiled once into a predicate over ``FilingFacts``; facts are
derived once per filing, so adding rules costs a predicate call, not another pass over fields.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from streams.config import SETTINGS_DIR, ConfigError

PRE_LOADING = "PRE_LOADING"
PRE_ARRIVAL = "PRE_ARRIVAL"
STAGES = (PRE_LOADING, PRE_ARRIVAL)
PLACI_OUTCOMES = (
    "ASSESSMENT_COMPLETE",
    "REQUEST_FOR_INFORMATION",
    "HIGH_RISK_CARGO_SCREENING",
    "DO_NOT_LOAD",
)


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

    def evaluate(self, facts: FilingFacts) -> dict | None:
        """The reason this rule gives for a filing, or None when it does not fire."""
        if facts.stage not in self.stages:
            return None
        return self.fire(facts)

    def fire(self, facts: FilingFacts) -> dict | None:
        """As ``evaluate``, for callers that already know the rule applies to the stage."""
        evidence = []
        for predicate in self.predicates:
            found = predicate(facts)
            if found is None:
                return None
            evidence.append(found)
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


@dataclass(frozen=True)
class TargetingRules:
    version: str
    thresholds: Thresholds
    rules: tuple[Rule, ...]
    source: str

    def __post_init__(self) -> None:
        # Per stage, the bound `fire` of each applicable rule: the hot loop does no stage tests.
        by_stage = {st: tuple(r.fire for r in self.rules if st in r.stages) for st in STAGES}
        object.__setattr__(self, "_firing", by_stage)

    def firing(self, stage: str) -> tuple[Callable[[FilingFacts], dict | None], ...]:
        return self._firing[stage]  # type: ignore[attr-defined]


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


CONDITIONS: dict[str, Callable[[Any, str], Predicate]] = {
    "goods": _goods,
    "origin_in": _countries("origins", "origin"),
    "route_in": _countries("route", "via"),
    "quality_finding": _quality_finding,
    "quality_score_below": _quality_score_below,
    "value_per_kg_below": _value_per_kg_below,
    "linked_outcome_in": _linked_outcome_in,
    "no_linked_filing": _no_linked_filing,
}
# Conditions that only make sense for one stage restrict the rule to it.
STAGE_OF_CONDITION = {
    "value_per_kg_below": PRE_ARRIVAL,
    "linked_outcome_in": PRE_ARRIVAL,
    "no_linked_filing": PRE_ARRIVAL,
}
RULE_KEYS = {"code", "description", "weight", "when", "stages", "carrier_visible"}


def _rule(spec: Any, where: str) -> Rule:
    if not isinstance(spec, dict):
        raise ConfigError(f"{where}: expected a mapping")
    unknown = set(spec) - RULE_KEYS
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {sorted(unknown)}")
    for key in ("code", "description", "weight", "when"):
        if key not in spec:
            raise ConfigError(f"{where}: missing '{key}'")
    where = f"{where} ({spec['code']})"
    when = spec["when"]
    if not isinstance(when, dict) or not when:
        raise ConfigError(f"{where}.when: expected at least one condition")
    stages = set(_string_list(spec.get("stages", list(STAGES)), f"{where}.stages"))
    if not stages <= set(STAGES):
        raise ConfigError(f"{where}.stages: expected some of {STAGES}")
    predicates = []
    for name, arg in when.items():
        if name not in CONDITIONS:
            raise ConfigError(
                f"{where}.when.{name}: unknown condition; known: {sorted(CONDITIONS)}"
            )
        predicates.append(CONDITIONS[name](arg, f"{where}.when.{name}"))
        if name in STAGE_OF_CONDITION:
            stages &= {STAGE_OF_CONDITION[name]}
    return Rule(
        code=str(spec["code"]),
        description=str(spec["description"]),
        weight=_number(spec["weight"], f"{where}.weight"),
        stages=frozenset(stages),
        carrier_visible=bool(spec.get("carrier_visible", True)),
        predicates=tuple(predicates),
    )


def load_targeting_rules(path: Path | None = None) -> TargetingRules:
    """Load and validate the rule set; errors name the file, the rule and the field."""
    path = path or SETTINGS_DIR / "targeting.yaml"
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: targeting rules not found") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict) or not {"version", "thresholds", "rules"} <= set(data):
        raise ConfigError(f"{path}: expected 'version', 'thresholds' and 'rules'")
    th = data["thresholds"]
    try:
        thresholds = Thresholds(
            hold=_number(th["pre_arrival"]["hold"], f"{path}: thresholds.pre_arrival.hold"),
            inspect=_number(
                th["pre_arrival"]["inspect"], f"{path}: thresholds.pre_arrival.inspect"
            ),
            **{
                k: _number(th["pre_loading"][k], f"{path}: thresholds.pre_loading.{k}")
                for k in ("request_for_information", "high_risk_cargo_screening", "do_not_load")
            },
        )
    except (KeyError, TypeError) as exc:
        raise ConfigError(f"{path}: thresholds: missing {exc}") from exc
    if not thresholds.hold <= thresholds.inspect:
        raise ConfigError(f"{path}: thresholds.pre_arrival: hold must not exceed inspect")
    if not (
        thresholds.request_for_information
        <= thresholds.high_risk_cargo_screening
        <= thresholds.do_not_load
    ):
        raise ConfigError(f"{path}: thresholds.pre_loading must be increasing")
    if not isinstance(data["rules"], list):
        raise ConfigError(f"{path}: rules: expected a list")
    rules = tuple(_rule(spec, f"{path}: rules[{i}]") for i, spec in enumerate(data["rules"]))
    codes = [r.code for r in rules]
    duplicated = {c for c in codes if codes.count(c) > 1}
    if duplicated:
        raise ConfigError(f"{path}: duplicate rule code(s) {sorted(duplicated)}")
    return TargetingRules(str(data["version"]), thresholds, rules, str(path))


def score_batch(
    facts: Sequence[FilingFacts], rules: TargetingRules
) -> list[tuple[float, list[dict]]]:
    """Risk score and reasons (largest contribution first) for each filing."""
    out = []
    for f in facts:
        reasons = []
        for fire in rules.firing(f.stage):
            reason = fire(f)
            if reason is not None:
                reasons.append(reason)
        if reasons:
            reasons.sort(key=_by_contribution)
            out.append((sum(r["contribution"] for r in reasons), reasons))
        else:
            out.append((0.0, reasons))
    return out


def _by_contribution(reason: dict) -> float:
    return -reason["contribution"]
