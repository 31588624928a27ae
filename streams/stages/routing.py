"""Routing: turn a risk score into where the consignment goes and what the carrier is told.

Pre-arrival filings get a lane (release / hold / inspect). Pre-loading filings get a PLACI
outcome, which also maps to a lane so targeting centres see both stages on the same topics.
"""

from __future__ import annotations

from greenlane.streams.domain.vocabulary import (
    HOLD,
    INSPECT,
    PLACI_ROUTE,
    PRE_LOADING,
    RELEASE,
    SEVERITY,
)
from greenlane.streams.stages.targeting import Thresholds

ROUTE_TOPIC_ROLE = {RELEASE: "release", HOLD: "hold", INSPECT: "inspect"}
RELEASED = {RELEASE, "ASSESSMENT_COMPLETE"}


def forced_by_reasons(
    stage: str, codes: set[str] | frozenset[str], t: Thresholds, forced: str | None
) -> str | None:
    """The forced outcome once reasons are known: before arrival, reason codes holding one of
    ``t.inspect_together`` (a counterfeit from a watchlisted seller, say) force INSPECT."""
    stricter = forced is None or SEVERITY[INSPECT] > SEVERITY[forced]
    if stage != PRE_LOADING and stricter and any(c <= codes for c in t.inspect_together):
        return INSPECT
    return forced


def route_for(
    stage: str, score: float, t: Thresholds, forced: str | None = None
) -> tuple[str, str | None]:
    """(route, PLACI outcome or None) for a score at a stage; a forced outcome wins if stricter."""
    route, placi = _by_score(stage, score, t)
    if forced is not None and SEVERITY[forced] > SEVERITY[placi or route]:
        return (PLACI_ROUTE[forced], forced) if stage == PRE_LOADING else (forced, None)
    return route, placi


def _by_score(stage: str, score: float, t: Thresholds) -> tuple[str, str | None]:
    if stage == PRE_LOADING:
        if score >= t.do_not_load:
            outcome = "DO_NOT_LOAD"
        elif score >= t.high_risk_cargo_screening:
            outcome = "HIGH_RISK_CARGO_SCREENING"
        elif score >= t.request_for_information:
            outcome = "REQUEST_FOR_INFORMATION"
        else:
            outcome = "ASSESSMENT_COMPLETE"
        return PLACI_ROUTE[outcome], outcome
    if score >= t.inspect:
        return INSPECT, None
    if score >= t.hold:
        return HOLD, None
    return RELEASE, None


# Told to the carrier of a held or inspected consignment whose visible codes do not explain
# it (a watchlist hit, a random pick, an intelligence rule): that there is a control, not why.
CUSTOMS_CONTROL = {
    "code": "G_CUSTOMS_CONTROL",
    "message": "Selected for a customs control; no action is needed unless the customs office "
    "contacts you",
}


def carrier_codes(decision: dict) -> list[dict]:
    """The codes a carrier may act on: every quality finding and the visible reasons, and
    for a consignment that is not released on reasons it may not see, that it is controlled
    (never only a harmless visible code, such as a missing pre-loading filing)."""
    codes = [
        {"code": f["code"], "message": f"{f['field']}: {f['message']}"}
        for f in decision["quality_findings"]
    ]
    hidden = False
    for r in decision["reasons"]:
        if r["carrier_visible"]:
            codes.append({"code": r["code"], "message": r["description"]})
        elif r["contribution"] > 0 or decision["random_pick"] or decision["forced_outcome"]:
            hidden = True
    if hidden and (decision["placi_outcome"] or decision["route"]) not in RELEASED:
        codes.append(dict(CUSTOMS_CONTROL))
    return codes


def shown_codes(decision: dict) -> list[str]:
    """What the carrier was told, in a form to compare: a re-assessment that changes it is
    published as a new revision."""
    return sorted({c["code"] for c in carrier_codes(decision)})


def carrier_response(decision: dict, responded_at: int) -> dict:
    """What the carrier sees of a decision: the outcome and the codes it may act on."""
    codes = carrier_codes(decision)
    return {
        "response_id": decision["decision_id"],
        "carrier_id": decision["carrier_id"],
        "message_id": decision["message_id"],
        "house_waybill": decision["house_waybill"],
        "stage": decision["stage"],
        "status": "ACCEPTED",
        "outcome": decision["placi_outcome"] or decision["route"],
        "codes": codes,
        "responded_at": responded_at,
    }


def rejection_response(dead_letter: dict, stage: str, house_waybill: str | None) -> dict:
    """What the carrier is told when its message could not be assessed at all."""
    return {
        "response_id": dead_letter["dead_letter_id"],
        "carrier_id": dead_letter["carrier_id"],
        "message_id": dead_letter["message_id"],
        "house_waybill": house_waybill,
        "stage": stage,
        "status": "REJECTED",
        "outcome": "REJECTED",
        "codes": [
            {
                "code": f"DL_{dead_letter['error_code']}",
                "message": dead_letter["error_message"] + "; correct the message and file again",
            }
        ],
        "responded_at": dead_letter["dead_lettered_at"],
    }
