"""What the carrier is told of a decision (stages.routing)."""

from greenlane.streams.stages.routing import carrier_response, shown_codes


def reason(code, contribution, visible):
    return {
        "code": code,
        "description": code.lower(),
        "contribution": contribution,
        "evidence": None,
        "carrier_visible": visible,
    }


def decision(route, reasons, placi=None, random_pick=False, forced=None):
    return {
        "decision_id": "D1",
        "carrier_id": "C1",
        "message_id": "M1",
        "house_waybill": "H1",
        "stage": "PRE_LOADING" if placi else "PRE_ARRIVAL",
        "route": route,
        "placi_outcome": placi,
        "quality_findings": [],
        "reasons": reasons,
        "random_pick": random_pick,
        "forced_outcome": forced,
    }


def test_a_hold_on_hidden_reasons_is_never_explained_only_by_a_missing_filing():
    held = decision(
        "HOLD",
        [
            reason("W_PARTY_WATCHLIST", 40, False),
            reason("W_IPR_BRAND", 35, False),
            reason("R_NO_PRE_LOADING_FILING", 10, True),
        ],
    )
    codes = [c["code"] for c in carrier_response(held, 0)["codes"]]
    assert codes == ["R_NO_PRE_LOADING_FILING", "G_CUSTOMS_CONTROL"]
    assert "W_PARTY_WATCHLIST" not in shown_codes(held)  # never tipped off


def test_a_random_pick_is_a_control_too_and_a_release_says_nothing_more():
    picked = decision("INSPECT", [reason("L_RANDOM_SELECTION", 0, False)], random_pick=True)
    assert shown_codes(picked) == ["G_CUSTOMS_CONTROL"]
    released = decision("RELEASE", [reason("W_PARTY_WATCHLIST", 5, False)])
    assert shown_codes(released) == []
    explained = decision("INSPECT", [reason("R_WEAPON_OR_KNIFE", 60, True)])
    assert shown_codes(explained) == ["R_WEAPON_OR_KNIFE"]
    screened = decision("INSPECT", [reason("W_X", 50, False)], placi="HIGH_RISK_CARGO_SCREENING")
    assert shown_codes(screened) == ["G_CUSTOMS_CONTROL"]
