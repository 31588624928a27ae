"""Enrichment: derive from a filing the facts the targeting rules reason about.

Kept apart from the rules so a fact (value per kg, origins) is defined once and every rule,
and later the model's features, see the same value.
"""

from __future__ import annotations

from collections.abc import Mapping

from greenlane.streams.domain.money import convert
from greenlane.streams.domain.vocabulary import PRE_ARRIVAL
from greenlane.streams.stages.targeting import FilingFacts


def totals(items: list[dict], rates: Mapping[str, float]) -> tuple[float | None, float]:
    """(declared value in the reference currency or None when a currency is unknown, net kg)."""
    total_value: float | None = 0.0
    total_kg = 0.0
    for item in items:
        total_kg += item["net_weight_kg"]
        value = convert(item["value"], item["currency"], rates)
        if value is None:
            total_value = None
        elif total_value is not None:
            total_value += value
    return total_value, total_kg


def filing_facts(
    record: dict,
    stage: str,
    finding_codes: frozenset[str],
    quality_score: float,
    linked_outcome: str | None,
    has_link: bool,
    rates: Mapping[str, float],
) -> FilingFacts:
    """The facts of one decoded filing (pre-loading or pre-arrival record dict)."""
    if stage == PRE_ARRIVAL:
        items = record["items"]
        hs_codes = tuple(i["hs_code"] for i in items)
        text = " ".join(i["description"] for i in items).lower()
        origins = {i["origin_country"] for i in items}
        origins.add(record["seller"]["country"])
        total, kg = totals(items, rates)
        return FilingFacts(
            stage=stage,
            hs_codes=hs_codes,
            text=text,
            origins=frozenset(origins),
            route=frozenset(),
            finding_codes=finding_codes,
            quality_score=quality_score,
            value_per_kg=total / kg if total is not None and kg > 0 else None,
            linked_outcome=linked_outcome,
            has_link=has_link,
            by_air=record["transport_mode"] == "AIR",
            dispatch=frozenset((record["seller"]["country"],)),
            total_value=total,
            weight_kg=kg,
            carrier_id=record["carrier_id"],
            platform=record["platform"] or "",
            filing_time=record["filing_time"],
        )
    origins = {record["shipper"]["country"]}
    if record["origin_country"]:
        origins.add(record["origin_country"])
    return FilingFacts(
        stage=stage,
        hs_codes=(record["hs_code"],) if record["hs_code"] else (),
        text=record["cargo_description"].lower(),
        origins=frozenset(origins),
        route=frozenset(record["route"]),
        finding_codes=finding_codes,
        quality_score=quality_score,
        value_per_kg=None,
        linked_outcome=None,
        has_link=has_link,
        by_air=True,
        dispatch=frozenset((record["shipper"]["country"],)),
        weight_kg=record["gross_weight_kg"],
        carrier_id=record["carrier_id"],
        filing_time=record["filing_time"],
    )
