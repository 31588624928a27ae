from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import yaml

from greenlane.streams.devtools.fraud import Truth
from greenlane.streams.devtools.history import load_history_settings
from greenlane.streams.devtools.officers import (
    DOCUMENTARY,
    PHYSICAL,
    Officers,
    examine_decisions,
    load_officer_settings,
)
from greenlane.streams.devtools.simulator import SIMULATION_FILE
from greenlane.streams.settings import ConfigError

NOW_MS = 1_795_000_000_000
SETTINGS = load_officer_settings()
EXACT = dataclasses.replace(  # inspections that never miss nor err
    load_history_settings(), label_noise={"missed_fraud": 0.0, "false_finding": 0.0}
)


def decision(waybill: str, route: str, revision: int = 0, stage: str = "PRE_ARRIVAL") -> dict:
    return {
        "decision_id": f"D-{waybill}-{revision}",
        "house_waybill": waybill,
        "stage": stage,
        "route": route,
        "revision": revision,
    }


def truth(mechanism: str | None, true: float = 100.0, declared: float = 40.0) -> Truth:
    return Truth(mechanism, False, true, declared)


def examine(decisions, truths, settings=SETTINGS, rates=None, seed=0):
    return examine_decisions(
        decisions,
        truths,
        rates or {},
        settings,
        EXACT,
        np.random.default_rng(seed),
        NOW_MS,
    )


def test_shipped_settings_load():
    assert SETTINGS.delay_seconds > 0 and 0 < SETTINGS.documentary_share < 1
    assert "counterfeit" not in SETTINGS.documentary_finds and SETTINGS.teams


@pytest.mark.parametrize(
    "change, message",
    [
        ({"delay_seconds": -1}, "officers.delay_seconds"),
        ({"documentary_share": 1.5}, "officers.documentary_share"),
        ({"documentary_finds": ["smuggling"]}, "officers.documentary_finds"),
        ({"teams": []}, "officers.teams"),
        ({"shifts": 3}, "unknown ['shifts']"),
    ],
)
def test_settings_mistakes_are_one_line_naming_the_field(tmp_path, change, message):
    data = yaml.safe_load(SIMULATION_FILE.read_text())
    data["officers"] |= change
    path = tmp_path / "simulation.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_officer_settings(path)


def test_an_inspection_finds_what_the_consignment_really_is():
    decisions = [
        decision("A", "INSPECT"),
        decision("B", "INSPECT"),
        decision("C", "INSPECT"),
        decision("D", "RELEASE"),
        decision("E", "INSPECT", stage="PRE_LOADING"),
    ]
    truths = {"A": truth("counterfeit"), "B": truth("undervaluation"), "C": truth(None)}
    out = examine(decisions, truths, rates={"B": 0.2})
    assert [o["house_waybill"] for o in out] == ["A", "B", "C"]  # released, pre-loading: not
    by = {o["house_waybill"]: o for o in out}
    assert by["A"]["result"] == "SEIZED" and by["C"]["result"] == "NO_FINDINGS"
    assert by["B"]["result"] == "DUTY_ADJUSTED"
    # tax on the undeclared 60 EUR at 20%, plus the penalty on the true value
    penalty = EXACT.penalty_share * 100.0
    assert by["B"]["recovered_revenue"] == pytest.approx(60 * 0.2 + penalty)
    assert by["C"]["recovered_revenue"] == 0.0
    assert all(o["notes"] == PHYSICAL and o["currency"] == "EUR" for o in out)
    assert all(o["inspected_at"] == NOW_MS and o["officer"] in SETTINGS.teams for o in out)
    assert by["A"]["decision_id"] == "D-A-0"


def test_a_documentary_check_sees_no_counterfeit_but_an_undervaluation():
    documents_only = dataclasses.replace(SETTINGS, documentary_share=1.0)
    decisions = [decision("A", "HOLD"), decision("B", "HOLD"), decision("C", "INSPECT")]
    truths = {w: truth("counterfeit" if w != "B" else "undervaluation") for w in "ABC"}
    by = {o["house_waybill"]: o for o in examine(decisions, truths, documents_only)}
    assert by["A"]["result"] == "NO_FINDINGS" and by["A"]["notes"] == DOCUMENTARY
    assert by["B"]["result"] == "DUTY_ADJUSTED" and by["B"]["notes"] == DOCUMENTARY
    assert by["C"]["result"] == "SEIZED" and by["C"]["notes"] == PHYSICAL  # an inspect


def test_the_share_of_holds_checked_on_documents_is_the_configured_one():
    holds = [decision(f"H{i}", "HOLD") for i in range(4000)]
    out = examine(holds, {})
    share = sum(o["notes"] == DOCUMENTARY for o in out) / len(out)
    assert share == pytest.approx(SETTINGS.documentary_share, abs=0.03)


def test_the_queue_files_once_per_consignment_after_the_delay_on_the_latest_revision():
    officers = Officers(dataclasses.replace(SETTINGS, delay_seconds=20), EXACT)
    truths = {"A": truth("prohibited"), "B": truth(None), "C": truth(None)}
    officers.receive(
        [decision("A", "HOLD"), decision("B", "INSPECT"), decision("C", "RELEASE")], now=100
    )
    officers.receive([decision("A", "INSPECT", revision=1)], now=105)  # amended before due
    officers.receive([decision("B", "RELEASE", revision=1)], now=110)  # released before due
    assert officers.due(119, truths, {}, NOW_MS) == [] and officers.waiting == 2
    [out] = officers.due(120, truths, {}, NOW_MS)
    assert out["decision_id"] == "D-A-1" and out["result"] == "SEIZED"
    assert officers.waiting == 0 and officers.filed == 1
    officers.receive([decision("A", "INSPECT", revision=2)], now=130)  # examined already
    assert officers.due(10_000, truths, {}, NOW_MS) == []


def test_an_older_revision_read_after_a_release_does_not_queue_the_consignment():
    officers = Officers(dataclasses.replace(SETTINGS, delay_seconds=0), EXACT)
    officers.receive([decision("A", "RELEASE", revision=2)], now=0)  # another topic, first
    officers.receive([decision("A", "INSPECT", revision=1)], now=0)
    assert officers.waiting == 0 and officers.due(1, {"A": truth(None)}, {}, NOW_MS) == []
