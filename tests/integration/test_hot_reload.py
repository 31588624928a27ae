"""A running worker picks up a changed targeting profile without a restart."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest
import yaml

from greenlane.streams.devtools.progress import scrape
from greenlane.streams.settings import SETTINGS_DIR
from greenlane.streams.stages.targeting import DEFAULT_FOLDER
from tests.integration.conftest import Harness
from tests.integration.test_worker import arrival, waybills

pytestmark = pytest.mark.integration

DECISIONS = ["release", "hold", "inspect"]


@pytest.fixture(scope="module")
def profiles(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("profiles") / "targeting"
    shutil.copytree(DEFAULT_FOLDER, folder)
    return folder


@pytest.fixture(scope="module")
def own_settings(tmp_path_factory) -> Path:
    """The deployment's settings folder: its own lanes file, the shipped rest."""
    folder = tmp_path_factory.mktemp("settings")
    shutil.copy(SETTINGS_DIR / "lanes.yaml", folder / "lanes.yaml")
    return folder


@pytest.fixture(scope="module")
def harness_env_extra(profiles: Path, own_settings: Path) -> str:
    return (
        f'targeting_dir = "{profiles}"\nsettings_dir = "{own_settings}"\n'
        "profile_check_seconds = 0.5\n"
    )


def decision_for(harness: Harness, waybill: str) -> dict:
    [d] = [
        r
        for r in harness.read(DECISIONS, lambda rs: any(r["house_waybill"] == waybill for r in rs))
        if r["house_waybill"] == waybill
    ]
    return d


def wait_for_reload(
    harness: Harness, result: str, settings: str = "targeting", timeout: float = 30.0
) -> None:
    """Until the worker reports a reload of ``settings`` with this result (loaded or
    refused); no traffic is sent, so an idle worker must reload too."""
    deadline = time.monotonic() + timeout
    want = {("result", result), ("settings", settings)}
    while time.monotonic() < deadline:
        reloads = scrape(harness.metrics_url).get("greenlane_settings_reloads_total", {})
        if sum(v for k, v in reloads.items() if want <= set(k)):
            return
        time.sleep(0.5)
    pytest.fail(f"no {settings} reload with result {result!r} within {timeout:g} s")


def test_a_new_profile_changes_decisions_and_their_recorded_version(harness, profiles):
    first, second = waybills(2)
    harness.send("pre_arrival", [arrival(first)])
    before = decision_for(harness, first)
    assert before["route"] == "RELEASE"

    (profiles / "profiles" / "t-shirt-watch.yaml").write_text(
        yaml.safe_dump(
            {
                "profile": "t-shirt-watch",
                "version": 1,
                "rules": [
                    {
                        "id": "R_TSHIRT_WATCH",
                        "description": "cotton t-shirts under watch",
                        "force": "INSPECT",
                        "when": {"goods": {"keywords": ["t-shirt"]}},
                    }
                ],
            }
        )
    )
    wait_for_reload(harness, "loaded")
    harness.send("pre_arrival", [arrival(second)])
    after = decision_for(harness, second)
    assert after["route"] == "INSPECT" and after["forced_outcome"] == "INSPECT"
    assert "R_TSHIRT_WATCH" in [r["code"] for r in after["reasons"]]
    assert "t-shirt-watch@1" in after["ruleset_version"]
    assert after["ruleset_version"] != before["ruleset_version"]


def test_a_broken_profile_is_refused_and_the_last_good_set_stays(harness, profiles):
    (profiles / "profiles" / "broken.yaml").write_text(
        "profile: broken\nversion: 1\nrules: [{id: X}]"
    )
    wait_for_reload(harness, "refused")
    [wb] = waybills(1)
    harness.send("pre_arrival", [arrival(wb)])
    assert decision_for(harness, wb)["forced_outcome"] == "INSPECT"  # t-shirt watch still on
    os.remove(profiles / "profiles" / "broken.yaml")


def test_an_idle_worker_reloads_its_lanes_and_records_the_new_version(harness, own_settings):
    [first, second] = waybills(2)
    harness.send("pre_arrival", [arrival(first)])
    assert decision_for(harness, first)["settings_versions"]["lanes"] == "2026.12.1"
    lanes = own_settings / "lanes.yaml"
    lanes.write_text(lanes.read_text().replace('version: "2026.12.1"', 'version: "2027.1-it"'))
    wait_for_reload(harness, "loaded", "lanes")
    harness.send("pre_arrival", [arrival(second)])
    assert decision_for(harness, second)["settings_versions"]["lanes"] == "2027.1-it"
