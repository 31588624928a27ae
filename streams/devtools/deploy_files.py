"""The files in deploy/ that are written, not edited (`make deploy-files`; a test checks they
are current):

- grafana/dashboards/greenlane.json, from its panel definitions (devtools.dashboard);
- k8s-operator/prometheusrule.yaml, the Prometheus Operator's copy of prometheus/alerts.yml
  (the rules' text under ``spec:``, comments and all), labelled like the overlay's PodMonitor
  so both meet the same Prometheus selectors.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from greenlane.streams.devtools import dashboard

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
OPERATOR = DEPLOY / "k8s-operator"
PROMETHEUS_RULE = OPERATOR / "prometheusrule.yaml"


def prometheus_rule() -> str:
    """alerts.yml as a PrometheusRule."""
    monitor = yaml.safe_load((OPERATOR / "podmonitor.yaml").read_text())
    labels = {"app.kubernetes.io/name": "greenlane-worker"}
    if "release" in monitor["metadata"].get("labels", {}):
        labels["release"] = monitor["metadata"]["labels"]["release"]
    head = (
        "# Written by `make deploy-files` from deploy/prometheus/alerts.yml: edit that file.\n"
        "apiVersion: monitoring.coreos.com/v1\n"
        "kind: PrometheusRule\n"
        "metadata:\n"
        "  name: greenlane\n"
        "  labels:\n" + "".join(f"    {k}: {v}\n" for k, v in labels.items()) + "spec:\n"
    )
    lines = ALERTS.read_text().splitlines(True)
    body = "".join(f"  {line}" if line.strip() else line for line in lines)
    return head + body


def written() -> dict[Path, str]:
    """Every written file and what it should hold."""
    return {dashboard.DASHBOARD: dashboard.render(), PROMETHEUS_RULE: prometheus_rule()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m greenlane.streams.devtools.deploy_files",
        description="Write the deploy/ files made from others: the Grafana dashboard and the "
        "Prometheus Operator's PrometheusRule (make deploy-files).",
    )
    parser.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 naming the files out of date"
    )
    args = parser.parse_args(argv)
    stale = [p for p, text in written().items() if not p.is_file() or p.read_text() != text]
    if args.check:
        for path in stale:
            print(f"{path}: out of date; run `make deploy-files`", file=sys.stderr)
        return 1 if stale else 0
    for path in stale:
        path.write_text(written()[path])
        print(f"wrote {path}")
    if not stale:
        print("deploy files are current")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
