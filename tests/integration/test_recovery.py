"""A restarted worker still knows its links and its inspection quotas: from its disk, or
else from the changelog."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from greenlane.streams.stages.lanes import load_lane_settings
from tests.factories import item, pre_loading
from tests.integration.test_worker import DECISIONS, arrival, risky_pre_loading, waybills

pytestmark = pytest.mark.integration


def test_a_restarted_worker_still_links_filings_decided_before_the_restart(harness):
    risky, plain = waybills(2)
    harness.send("pre_loading", [risky_pre_loading(risky), pre_loading(plain)])
    harness.read(DECISIONS, lambda rs: {r["house_waybill"] for r in rs} >= {risky, plain})

    harness.stop_worker()
    harness.start_worker()  # its tables are on disk; only what is newer comes from the changelog

    harness.send("pre_arrival", [arrival(risky), arrival(plain)])
    recs = harness.read(
        DECISIONS,
        lambda rs: (
            sum(r["stage"] == "PRE_ARRIVAL" and r["house_waybill"] in (risky, plain) for r in rs)
            >= 2
        ),
    )
    arrivals = {r["house_waybill"]: r for r in recs if r["stage"] == "PRE_ARRIVAL"}
    assert arrivals[risky]["linked_placi_outcome"] == "HIGH_RISK_CARGO_SCREENING"
    assert arrivals[risky]["route"] == "INSPECT"
    assert arrivals[plain]["linked_placi_outcome"] == "ASSESSMENT_COMPLETE"
    assert arrivals[plain]["route"] == "RELEASE"
    # filings decided before the restart are not decided again
    pre_loadings = [
        r for r in recs if r["stage"] == "PRE_LOADING" and r["house_waybill"] in (risky, plain)
    ]
    assert len(pre_loadings) == 2


def test_a_worker_on_a_fresh_disk_rebuilds_its_tables_from_the_changelog(harness):
    """RocksDB keeps the tables across restarts; losing the disk (a new pod, a new machine)
    costs a recovery from the changelog, not the links."""
    [risky] = waybills(1)
    harness.send("pre_loading", [risky_pre_loading(risky)])
    harness.read(DECISIONS, lambda rs: any(r["house_waybill"] == risky for r in rs))

    harness.stop_worker()
    data = Path(harness.settings.worker.data_dir)
    assert list(data.glob("**/*.db")), "the worker's tables should be on disk (RocksDB)"
    shutil.rmtree(data)
    harness.start_worker()

    harness.send("pre_arrival", [arrival(risky)])
    recs = harness.read(
        DECISIONS,
        lambda rs: any(r["stage"] == "PRE_ARRIVAL" and r["house_waybill"] == risky for r in rs),
    )
    [decided] = [r for r in recs if r["stage"] == "PRE_ARRIVAL" and r["house_waybill"] == risky]
    assert decided["linked_placi_outcome"] == "HIGH_RISK_CARGO_SCREENING"


def test_inspection_quotas_survive_a_restart(harness):
    """The ceiling counts are a table: a restarted worker does not hand out the inspections
    its partitions already used."""
    lanes = load_lane_settings().for_destination("DE")
    per_partition = -(-lanes.warm_up_consignments // harness.settings.topics.partitions)
    allowance = int(lanes.inspect_ceiling * per_partition)  # per partition while warming up
    knives = [item(description="hunting knife", hs_code="821191")]
    first = waybills(3 * allowance * harness.settings.topics.partitions)
    harness.send("pre_arrival", [arrival(w, items=knives) for w in first])

    def lanes_of(wbs):
        mine = set(wbs)
        recs = harness.read(
            DECISIONS, lambda rs: sum(r["house_waybill"] in mine for r in rs) >= len(mine)
        )
        return {r["house_waybill"]: r["route"] for r in recs if r["house_waybill"] in mine}

    before = lanes_of(first)
    kept = sum(route == "INSPECT" for route in before.values())
    assert 0 < kept <= allowance * harness.settings.topics.partitions
    assert set(before.values()) == {"INSPECT", "HOLD"}  # the rest downgraded to a check

    harness.stop_worker()
    harness.start_worker()
    later = waybills(20)
    harness.send("pre_arrival", [arrival(w, items=knives) for w in later])
    after = lanes_of(later)
    # every partition used its allowance before the restart: nothing new is inspected
    assert set(after.values()) == {"HOLD"}
