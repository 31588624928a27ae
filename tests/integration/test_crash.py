"""Crashes: kill -9 in the middle of a backlog, and a worker of two killed.

Nothing is lost (every filing offset has a decision or a dead letter), a redelivered filing
gets the very decision it got before (same decision_id, same route), and links made before the
crash are still seen after it.
"""

from __future__ import annotations

import tempfile
import time
from collections import defaultdict

import pytest

from greenlane.streams.devtools.launcher import free_port
from greenlane.streams.devtools.progress import scrape, total
from greenlane.streams.devtools.simulator import CarrierSimulator, generate
from tests.integration.conftest import Harness, ReadTimeout, wait_until

pytestmark = pytest.mark.integration

DECISIONS = ["release", "hold", "inspect"]
BACKLOG = 50_000


@pytest.fixture(scope="module")
def harness_env_extra() -> str:
    return "batch_max = 1000\n"


def decided(harness: Harness, url: str | None = None) -> float:
    samples = scrape(url or harness.metrics_url)
    return total(samples, "greenlane_decisions_total") + total(
        samples, "greenlane_dead_letters_total"
    )


def preload(harness: Harness, count: int, seed: int) -> int:
    """Filings on the topics as carriers send them; returns how many offsets the filing
    topics hold in all (earlier tests' filings included)."""
    report = CarrierSimulator(harness.settings).send(
        generate(count, seed=seed, risky_share=0.05, invalid_share=0.01)
    )
    assert report.failed == 0 and report.delivered == report.total
    return harness.filing_offsets()


def outputs(harness: Harness, expected_offsets: int) -> tuple[list[dict], list[dict]]:
    """Every decision and dead letter, read until each filing offset has at least one."""
    copies = harness.refiled()

    def covered(records: list[dict]) -> bool:
        return len(answered(records, copies)) >= expected_offsets

    try:
        records = harness.read([*DECISIONS, "dead_letter"], covered, timeout=240)
    except ReadTimeout as exc:  # say what is missing, what was committed, what the worker says
        samples = scrape(harness.metrics_url) if harness.worker is not None else {}
        figures = {
            name: total(samples, name)
            for name in (
                "greenlane_consumer_lag",
                "greenlane_unconfirmed_batches",
                "greenlane_batch_retries_total",
                "greenlane_unpublishable_outputs_total",
                "greenlane_agent_failures_total",
                "greenlane_worker_live",
                "greenlane_publish_waits_total",
            )
        }
        missing = missing_offsets(harness, exc.records)
        committed = harness.committed()
        raise AssertionError(
            f"{exc}; missing {missing}; committed {committed}; worker reports {figures}"
        ) from exc
    decisions = [r for r in records if "route" in r]
    dead = [r for r in records if "error_code" in r]
    return decisions, dead


def missing_offsets(harness: Harness, records: list[dict]) -> dict[tuple[str, int], list]:
    """Per filing partition, the ranges of offsets that have neither decision nor dead letter."""
    done = answered(records, harness.refiled())
    missing: dict[tuple[str, int], list] = {}
    for (topic, partition), end in harness.filing_ends().items():
        ranges: list[list[int]] = []
        for offset in range(end):
            if (topic, partition, offset) in done:
                continue
            if ranges and ranges[-1][1] == offset - 1:
                ranges[-1][1] = offset
            else:
                ranges.append([offset, offset])
        if ranges:
            missing[(topic, partition)] = ranges
    return missing


def source(r: dict) -> tuple[str, int, int]:
    return r["source_topic"], r["source_partition"], r["source_offset"]


def answered(
    records: list[dict], copies: dict[tuple[str, int, int], tuple[str, int, int]]
) -> set[tuple[str, int, int]]:
    """The filing offsets the records answer: their sources, and every byte-for-byte copy of
    a source (Harness.refiled), which is answered by republishing the source's decision."""
    sources = {source(r) for r in records}
    return sources | {copy for copy, first in copies.items() if first in sources}


def assert_every_offset_answered(harness: Harness) -> tuple[list[dict], list[dict]]:
    """Every filing offset has a decision or a dead letter; returns both."""
    sent = harness.filing_offsets()
    decisions, dead = outputs(harness, sent)
    assert len(answered(decisions + dead, harness.refiled())) == sent
    return decisions, dead


def assert_duplicates_agree(decisions: list[dict]) -> int:
    """Every copy of a decision_id is the same decision; returns how many ids came twice."""
    by_id: dict[str, list[dict]] = defaultdict(list)
    for d in decisions:
        by_id[d["decision_id"]].append(d)
    twice = 0
    for copies in by_id.values():
        if len(copies) > 1:
            twice += 1
            first = {k: v for k, v in copies[0].items() if not k.startswith("_")}
            for other in copies[1:]:
                assert {k: v for k, v in other.items() if not k.startswith("_")} == first
    return twice


def test_kill_9_mid_backlog_loses_nothing_and_repeats_decisions_exactly(harness: Harness):
    harness.stop_worker()
    sent = preload(harness, BACKLOG, seed=31)
    harness.start_worker()
    wait_until(lambda: decided(harness) >= sent // 3, "a third of the backlog decided")
    harness.worker.kill9()
    killed_at_ms = time.time() * 1000
    harness.start_worker()

    decisions, dead = outputs(harness, sent)
    sources = {source(r) for r in decisions + dead}
    assert len(sources) == sent  # every filing offset answered: nothing lost
    twice = assert_duplicates_agree(decisions)
    assert twice > 0, "the kill should have left some batch delivered but not committed"

    # links made before the crash are seen after it, whichever filing of a consignment the
    # worker had decided first (the two stages' agents run at their own pace)
    before = [d for d in decisions if d["_timestamp_ms"] < killed_at_ms]
    after = [d for d in decisions if d["_timestamp_ms"] > killed_at_ms]
    pre_loading_before = {d["house_waybill"]: d["decision_id"] for d in before if is_pl(d)}
    arrival_ids: dict[str, set[str]] = defaultdict(set)  # waybill -> its declaration's ids
    for d in decisions:
        if not is_pl(d):
            arrival_ids[d["house_waybill"]].add(d["decision_id"])
    arrival_before = {d["house_waybill"] for d in before if not is_pl(d)}
    # the pre-loading filing decided before the kill, its declaration after it
    declared_after = [
        d
        for d in after
        if not is_pl(d) and d["revision"] == 0 and d["house_waybill"] in pre_loading_before
    ]
    for d in declared_after:
        assert d["linked_decision_id"] == pre_loading_before[d["house_waybill"]]
    # the declaration decided before the kill, its pre-loading filing after it
    loaded_after = [
        d
        for d in after
        if is_pl(d)
        and d["house_waybill"] in arrival_before
        and d["house_waybill"] not in pre_loading_before
    ]
    for d in loaded_after:
        assert d["linked_decision_id"] in arrival_ids[d["house_waybill"]]
    assert declared_after or loaded_after, "the backlog should hold consignments split by it"


def is_pl(decision: dict) -> bool:
    return decision["stage"] == "PRE_LOADING"


def test_of_two_workers_one_killed_the_other_takes_over_and_nothing_is_lost(harness: Harness):
    harness.stop_worker()
    sent = preload(harness, 20_000, seed=37)
    harness.start_worker()
    port = free_port()
    second_url = f"http://127.0.0.1:{port}/metrics"
    second = harness.spawn(
        "--data-dir",
        tempfile.mkdtemp(prefix="greenlane-it-w2-"),
        "--metrics-port",
        str(port),
        metrics_url=second_url,
    )
    try:
        # both in the group with a share of the partitions, then one dies mid-backlog
        wait_until(lambda: decided(harness, second_url) >= 500, "the second worker's share")
        second.kill9()
        decisions, dead = outputs(harness, sent)
    finally:
        second.kill9()
    assert len({source(r) for r in decisions + dead}) == sent
    assert_duplicates_agree(decisions)
    # and the survivor commits to the end: nothing skipped holds a partition back for good
    ends = harness.filing_ends()
    wait_until(lambda: harness.committed() == ends, "the group's commits to reach the ends")
