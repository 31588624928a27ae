"""A running worker scores with the registry's model and swaps to a newly promoted one."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from greenlane.models.features import default_spec
from greenlane.models.registry import Registry
from greenlane.models.train import train
from greenlane.streams.devtools.history import generate_history
from tests.integration.conftest import Harness
from tests.integration.test_worker import DECISIONS, arrival, waybills

pytestmark = pytest.mark.integration


def decided(harness: Harness, waybill: str) -> dict:
    recs = harness.read(DECISIONS, lambda rs: any(r["house_waybill"] == waybill for r in rs))
    return next(r for r in recs if r["house_waybill"] == waybill)


def wait_for_model(harness: Harness, version: str, timeout: float = 60.0) -> dict:
    """Send a filing at a time until one is decided by ``version`` (the worker checks the
    registry every few seconds, between batches)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        [w] = waybills(1)
        harness.send("pre_arrival", [arrival(w)])
        d = decided(harness, w)
        if d["model_version"] == version:
            return d
        time.sleep(1.0)
    pytest.fail(f"no decision by model {version} within {timeout:g} s")


def test_rules_only_then_a_promoted_model_then_a_newer_one(harness):
    registry = Registry(Path(harness.env["GREENLANE_MODEL_REGISTRY"]))
    [w] = waybills(1)
    harness.send("pre_arrival", [arrival(w)])
    assert decided(harness, w)["model_version"] is None  # empty registry: rules only

    history = generate_history(8_000, seed=5)
    first = registry.save(train(history, default_spec()), {"note": "first"})
    registry.promote(first)
    d = wait_for_model(harness, first)
    assert 0.0 <= d["model_probability"] <= 1.0

    second = registry.save(train(history.head(6_000), default_spec()), {"note": "second"})
    registry.promote(second)
    d = wait_for_model(harness, second)
    assert d["model_version"] == second != first
