"""The shipped dashboard and alert rules against a real Prometheus scraping a real worker under
traffic: every dashboard query returns data, and the lag and stalled-pipeline alerts fire when
the worker cannot read what carriers keep filing (a hung registry).

The Prometheus is Debian's (`make test` unpacks it and names it in GREENLANE_PROMETHEUS), on
127.0.0.1, scraping every second; the alert rules are the shipped ones with their ``for:``
shortened, their bounds the worker's own settings (lowered for the test).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml

from greenlane.models.features import default_spec
from greenlane.models.registry import Registry
from greenlane.models.train import train
from greenlane.streams.devtools import infra
from greenlane.streams.devtools.history import generate_history
from greenlane.streams.devtools.launcher import free_port
from tests.integration.conftest import Harness, open_harness, wait_until

pytestmark = pytest.mark.integration

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
RATE_WINDOW = "15s"  # what $__rate_interval is at a 1 s scrape


class Prometheus:
    """A Prometheus server of the test's own (started and stopped by pid)."""

    def __init__(self, binary: str, home: Path, target: str) -> None:
        self.binary, self.home, self.target = binary, home, target
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    def start(self) -> Prometheus:
        rules = (DEPLOY / "prometheus" / "alerts.yml").read_text()
        (self.home / "alerts.yml").write_text(re.sub(r"\bfor: \d+[smh]", "for: 3s", rules))
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": ["alerts.yml"],
            "scrape_configs": [
                {"job_name": "greenlane-worker", "static_configs": [{"targets": [self.target]}]}
            ],
        }
        (self.home / "prometheus.yml").write_text(yaml.safe_dump(config))
        log = (self.home / "prometheus.log").open("wb")
        self.process = subprocess.Popen(
            [
                self.binary,
                f"--config.file={self.home / 'prometheus.yml'}",
                f"--storage.tsdb.path={self.home / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--log.level=warn",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        wait_until(self.ready, "Prometheus to be ready", 60)
        return self

    def ready(self) -> bool:
        assert self.process is not None and self.process.poll() is None, self.log()
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def log(self) -> str:
        return (self.home / "prometheus.log").read_text(errors="replace")[-2000:]

    def api(self, path: str, **params: str) -> dict:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        with urllib.request.urlopen(f"{self.url}/api/v1/{path}{query}", timeout=10) as r:
            body = json.load(r)
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict]:
        return self.api("query", query=expr)["result"]

    def firing(self) -> dict[str, list[dict]]:
        found: dict[str, list[dict]] = {}
        for alert in self.api("alerts")["alerts"]:
            if alert["state"] == "firing":
                found.setdefault(alert["labels"]["alertname"], []).append(alert["labels"])
        return found

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
        self.process = None


@pytest.fixture(scope="module")
def prometheus_binary() -> str:
    found = os.environ.get("GREENLANE_PROMETHEUS")
    if not found or not Path(found).exists():
        pytest.skip("no Prometheus: `make test` unpacks Debian's (GREENLANE_PROMETHEUS)")
    return found


@pytest.fixture(scope="module")
def monitored(tmp_path_factory, prometheus_binary: str) -> Iterator[tuple[Harness, Prometheus]]:
    """A worker scoring with a model, under carrier traffic, scraped by Prometheus."""
    extra = "lag_alert_seconds = 5.0\nstall_seconds = 6.0\n"
    with open_harness(tmp_path_factory, extra, start=False) as h:
        registry = Registry(Path(h.env["GREENLANE_MODEL_REGISTRY"]))
        model = train(generate_history(8_000, seed=5), default_spec())
        registry.promote(registry.save(model, {"note": "monitoring test"}))
        h.start_worker()
        target = urllib.parse.urlsplit(h.metrics_url).netloc
        prom = Prometheus(prometheus_binary, tmp_path_factory.mktemp("prometheus"), target)
        truth = tmp_path_factory.mktemp("truth") / "truth.jsonl"
        traffic = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "greenlane"),
                "simulate",
                "--rate",
                "100",
                "--count",
                "100000",
                "--invalid-share",
                "0.05",
                "--truth",
                str(truth),
            ],
            env=h.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            prom.start()
            yield h, prom
        finally:
            traffic.terminate()
            traffic.wait(30)
            prom.stop()


def dashboard_queries() -> list[tuple[str, str]]:
    board = json.loads((DEPLOY / "grafana" / "dashboards" / "greenlane.json").read_text())
    return [
        (p["title"], t["expr"]) for p in board["panels"] if p["type"] != "row" for t in p["targets"]
    ]


def as_grafana_sends(expr: str) -> str:
    """The query with the dashboard's variables at "All" and the rate interval filled in."""
    return (
        expr.replace('"$job"', '".*"')
        .replace('"$instance"', '".*"')
        .replace("$__rate_interval", RATE_WINDOW)
    )


@contextmanager
def registry_not_answering(h: Harness) -> Iterator[None]:
    """The registry process stopped (SIGSTOP: it accepts connections and answers nothing, as a
    hung registry does), continued afterwards whatever happens."""
    pid = infra.local_pid(h.settings, infra.REGISTRY)
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


def diagnosis(prom: Prometheus) -> str:
    """What the worker reports, for a failure message."""
    figures = {
        name: [(s["metric"], s["value"][1]) for s in prom.query(expr)]
        for name, expr in {
            "firing or pending": "ALERTS",
            "lag seconds": "max by (topic) (greenlane_consumer_lag_seconds)",
            "lag": "sum by (topic) (greenlane_consumer_lag)",
            "since progress": "time() - greenlane_agent_last_progress_timestamp_seconds",
            "ready": "greenlane_worker_ready",
            "live": "greenlane_worker_live",
            "decisions/s": "sum(rate(greenlane_decisions_total[15s]))",
        }.items()
    }
    return json.dumps(figures, indent=1)


def test_every_dashboard_query_returns_data(monitored) -> None:
    h, prom = monitored
    queries = dashboard_queries()
    empty: list[str] = []

    def all_answer() -> bool:
        empty[:] = [
            f"{title}: {expr}" for title, expr in queries if not prom.query(as_grafana_sends(expr))
        ]
        return not empty

    deadline = time.monotonic() + 180
    while not all_answer():
        if time.monotonic() > deadline:
            pytest.fail("queries without data:\n" + "\n".join(empty))
        time.sleep(2)
    # the figures are the worker's own: lag on every filing partition, a heartbeat per agent
    lag = prom.query('greenlane_consumer_lag{job="greenlane-worker"}')
    filing_topics = {h.settings.topics.name(r) for r in ("pre_loading", "pre_arrival")}
    partitions = {(s["metric"]["topic"], s["metric"]["partition"]) for s in lag}
    expected = {(t, str(p)) for t in filing_topics for p in range(h.settings.topics.partitions)}
    assert expected <= partitions
    beats = prom.query("greenlane_agent_last_progress_timestamp_seconds")
    assert {b["metric"]["topic"] for b in beats} >= filing_topics
    assert prom.query("greenlane_worker_ready == 1") and prom.query("greenlane_worker_live == 1")


def test_lag_and_stall_alerts_fire_when_decisions_stop_and_clear_when_they_resume(
    monitored,
) -> None:
    """A pre-arrival declaration with a schema id the worker has never seen, while the registry
    hangs: the worker cannot read it, nor anything after it on that agent, and keeps trying;
    carriers keep filing. Once the registry answers, the declaration is dead-lettered (no such
    schema) and the backlog drains."""
    h, prom = monitored
    if h.settings.external_registry:
        pytest.skip("the registry is external: not ours to stop")
    wait_until(lambda: prom.query("sum(rate(greenlane_decisions_total[15s])) > 0"), "decisions")
    unknown_schema = b"\x00" + (987_654).to_bytes(4, "big") + b"\x02"
    with registry_not_answering(h):
        h.send_raw("pre_arrival", b"H-UNKNOWN-SCHEMA", unknown_schema)
        wanted = {"GreenlaneConsumerLagHigh", "GreenlaneWorkerStalled"}
        stuck = h.settings.topics.name("pre_arrival")

        def fired(firing: dict) -> bool:
            """Both alerts, the lag one for the stuck topic (each topic's fires on its own)."""
            lagging = {a["topic"] for a in firing.get("GreenlaneConsumerLagHigh", [])}
            return wanted <= set(firing) and stuck in lagging

        deadline = time.monotonic() + 180
        while not fired(firing := prom.firing()):
            if time.monotonic() > deadline:
                pytest.fail(f"{sorted(wanted)} did not fire for {stuck}; {diagnosis(prom)}")
            time.sleep(1)
        [stalled] = firing["GreenlaneWorkerStalled"]  # one page for the one worker
        assert stalled["instance"] == urllib.parse.urlsplit(h.metrics_url).netloc
        assert "GreenlaneWorkerDown" not in firing and "GreenlaneNoWorkers" not in firing
    # the registry answers again: the backlog drains and the lag falls back under its bound
    wait_until(
        lambda: prom.query('max(greenlane_consumer_lag_seconds{job="greenlane-worker"}) < 5'),
        "the lag to fall back under its bound",
        180,
    )
    wait_until(lambda: "GreenlaneWorkerStalled" not in prom.firing(), "the stall to clear", 120)
    assert prom.query(
        'greenlane_dead_letters_total{job="greenlane-worker", error_code="UNKNOWN_SCHEMA_ID"} > 0'
    )
