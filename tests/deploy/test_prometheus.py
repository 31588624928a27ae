"""The shipped Prometheus files through promtool itself: the configuration and rules load, and
the alert rules' unit tests (deploy/prometheus/alerts_test.yml) pass. `make test` unpacks
promtool from Debian's prometheus package and names it in GREENLANE_PROMTOOL."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

PROMETHEUS = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"


@pytest.fixture(scope="module")
def promtool() -> str:
    found = os.environ.get("GREENLANE_PROMTOOL") or shutil.which("promtool")
    if not found or not Path(found).exists():
        pytest.skip("no promtool: `make test` unpacks it (GREENLANE_PROMTOOL)")
    return found


def run(promtool: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [promtool, *args], cwd=PROMETHEUS, capture_output=True, text=True, timeout=120
    )


def test_the_configuration_and_its_rules_load(promtool: str) -> None:
    out = run(promtool, "check", "config", "prometheus.yml")
    assert out.returncode == 0, out.stdout + out.stderr
    out = run(promtool, "check", "rules", "alerts.yml")
    assert out.returncode == 0, out.stdout + out.stderr


def test_the_alert_rules_pass_their_unit_tests(promtool: str) -> None:
    """One page per dead worker (down while others run, no workers once none does), stalled."""
    out = run(promtool, "test", "rules", "alerts_test.yml")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout


def alert_rules() -> list[dict]:
    groups = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())["groups"]
    return [r for g in groups for r in g["rules"] if "alert" in r]


def test_every_alert_has_a_summary_a_runbook_paragraph_and_a_firing_unit_test() -> None:
    runbook = (PROMETHEUS.parent / "README.md").read_text()
    runbook = runbook[runbook.index("## Alerts") :]
    tests = yaml.safe_load((PROMETHEUS / "alerts_test.yml").read_text())["tests"]
    fired = {
        case["alertname"]
        for t in tests
        for case in t.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    for rule in alert_rules():
        name = rule["alert"]
        assert rule["annotations"].get("summary") and rule["annotations"].get("description"), name
        assert rule["labels"]["severity"] in {"critical", "warning"}, name
        assert f"**{name}**" in runbook, f"deploy/README.md: no runbook paragraph for {name}"
        assert name in fired, f"alerts_test.yml: no test where {name} fires"
