"""Broker outages longer than the group's session timeout (and than any producer timeout)
while filings flow: the worker pauses, keeps its state, resumes when the broker is back, loses
nothing, never restarts, and stops cleanly on SIGTERM, also while the broker is away."""

from __future__ import annotations

import threading
import time

import pytest
from confluent_kafka import Producer

from greenlane.streams.devtools import infra
from greenlane.streams.devtools.progress import scrape, total
from greenlane.streams.runtime import admin
from greenlane.streams.runtime.serde import WireEncoder, load_schema
from greenlane.streams.settings import schema_path
from tests.factories import pre_loading
from tests.integration.conftest import Harness, wait_until
from tests.integration.test_crash import assert_duplicates_agree, assert_every_offset_answered
from tests.integration.test_worker import arrival, waybills

pytestmark = pytest.mark.integration

OUTAGE_SECONDS = 65  # > session_timeout_seconds (10 s) and the 60 s a flush once waited
STOP_TIMEOUT = 15.0


@pytest.fixture(scope="module")
def harness_env_extra() -> str:
    return f"stop_timeout_seconds = {STOP_TIMEOUT}\n"


@pytest.fixture(autouse=True)
def ours_to_kill(harness: Harness):
    if harness.settings.external_kafka:
        pytest.skip("the broker is external: not ours to kill")
    yield
    infra.up(harness.settings, progress=lambda m: None)  # whatever happened, it is back


class Carrier(threading.Thread):
    """Files steadily, also while the broker is away (its producer keeps what it cannot send)."""

    def __init__(self, harness: Harness, rate: float = 40.0) -> None:
        super().__init__(daemon=True)
        s = harness.settings
        ids = admin.register_schemas(s).ids
        self.enc = {
            r: WireEncoder(load_schema(schema_path(r)), ids[r])
            for r in ids
            if r in ("pre_loading", "pre_arrival")
        }
        self.topics = {r: s.topics.name(r) for r in self.enc}
        self.producer = Producer({**s.as_admin(), "linger.ms": 5, "message.timeout.ms": 0})
        self.rate = rate
        self.stop = threading.Event()
        self.sent = 0

    def run(self) -> None:
        for w in waybills(5000):
            if self.stop.is_set():
                break
            for role, record in (("pre_loading", pre_loading(w)), ("pre_arrival", arrival(w))):
                self.producer.produce(self.topics[role], self.enc[role].encode(record), w.encode())
                self.sent += 1
            self.producer.poll(0)
            time.sleep(2 / self.rate)

    def finish(self) -> None:
        self.stop.set()
        self.join(30)
        assert self.producer.flush(120) == 0


def decided(harness: Harness) -> float:
    return total(scrape(harness.metrics_url), "greenlane_decisions_total")


def test_a_long_broker_outage_while_filings_flow_loses_nothing_and_restarts_nothing(harness):
    worker = harness.worker.process
    carrier = Carrier(harness)
    carrier.start()
    wait_until(lambda: decided(harness) >= 200, "decisions before the outage")
    assert infra.kill(harness.settings, "kafka") is not None
    time.sleep(OUTAGE_SECONDS)
    assert worker.poll() is None, "the worker rides the outage out"
    infra.up(harness.settings, progress=lambda m: None)
    time.sleep(10)  # filings after the outage too
    carrier.finish()

    assert harness.filing_offsets() >= carrier.sent > 0
    decisions, dead = assert_every_offset_answered(harness)
    assert not dead, "valid filings only"
    assert_duplicates_agree(decisions)

    assert worker.poll() is None, "never restarted"
    samples = scrape(harness.metrics_url)
    assert total(samples, "greenlane_agent_failures_total") == 0
    assert total(samples, "greenlane_publish_waits_total") > 0, "it said it was waiting"
    log = harness.log.read_text()
    assert "waiting for the broker" in log
    assert "Crashed reason" not in log

    harness.worker.stop(timeout=STOP_TIMEOUT + 30)
    assert worker.returncode == 0, "a clean stop"
    harness.start_worker()


def test_sigterm_while_the_broker_is_away_stops_in_bounded_time_and_loses_nothing(harness):
    carrier = Carrier(harness)
    carrier.start()
    wait_until(lambda: decided(harness) >= 100, "decisions before the outage")
    infra.kill(harness.settings, "kafka")
    time.sleep(15)  # past the session timeout, with batches waiting for the broker
    worker = harness.worker.process
    harness.worker.stop(timeout=STOP_TIMEOUT + 30)
    assert worker.returncode == 0, "stopped by its bound, not killed"
    infra.up(harness.settings, progress=lambda m: None)
    carrier.finish()
    harness.start_worker()  # what was not confirmed is read again

    decisions, _ = assert_every_offset_answered(harness)
    assert_duplicates_agree(decisions)
