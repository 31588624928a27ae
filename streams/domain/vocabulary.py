"""Filing stages, lanes (routes) and ICAO/WCO PLACI outcomes: defined once, used everywhere."""

from __future__ import annotations

PRE_LOADING = "PRE_LOADING"
PRE_ARRIVAL = "PRE_ARRIVAL"
STAGES = (PRE_LOADING, PRE_ARRIVAL)

RELEASE, HOLD, INSPECT = "RELEASE", "HOLD", "INSPECT"

PLACI_OUTCOMES = (
    "ASSESSMENT_COMPLETE",
    "REQUEST_FOR_INFORMATION",
    "HIGH_RISK_CARGO_SCREENING",
    "DO_NOT_LOAD",
)
# The lane a PLACI outcome puts a consignment in, so targeting centres see both stages alike.
PLACI_ROUTE = {
    "ASSESSMENT_COMPLETE": RELEASE,
    "REQUEST_FOR_INFORMATION": HOLD,
    "HIGH_RISK_CARGO_SCREENING": INSPECT,
    "DO_NOT_LOAD": INSPECT,
}
# How strict an outcome is: a forced outcome or an amendment never lowers it.
SEVERITY = {
    RELEASE: 0,
    "ASSESSMENT_COMPLETE": 0,
    HOLD: 1,
    "REQUEST_FOR_INFORMATION": 1,
    INSPECT: 2,
    "HIGH_RISK_CARGO_SCREENING": 2,
    "DO_NOT_LOAD": 3,
}

# The topic role (settings [topics], schemas) that carries each filing stage.
STAGE_TOPIC_ROLE = {PRE_LOADING: "pre_loading", PRE_ARRIVAL: "pre_arrival"}
