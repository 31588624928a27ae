"""The shared vocabulary, and the direction of dependencies it anchors."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from greenlane.streams.domain.vocabulary import PLACI_OUTCOMES, PLACI_ROUTE, SEVERITY, STAGES

STREAMS = Path(__file__).resolve().parents[3] / "streams"


def test_every_placi_outcome_has_a_lane_of_the_same_severity_or_the_strictest():
    assert set(PLACI_ROUTE) == set(PLACI_OUTCOMES)
    for outcome, route in PLACI_ROUTE.items():
        assert SEVERITY[route] == min(SEVERITY[outcome], 2)
    assert STAGES == ("PRE_LOADING", "PRE_ARRIVAL")


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("package", ["domain", "stages", "core"])
def test_pure_packages_import_no_kafka_faust_or_development_tools(package):
    forbidden = (
        "faust",
        "confluent_kafka",
        "aiokafka",
        "greenlane.streams.devtools",
        "greenlane.streams.runtime",
        "greenlane.streams.cli",
    )
    for path in (STREAMS / package).rglob("*.py"):
        bad = {m for m in _imports(path) if m.startswith(forbidden)}
        assert not bad, f"{path.name} imports {sorted(bad)}"


def test_dependencies_point_one_way_domain_stages_core_runtime():
    """domain <- stages <- core <- runtime: nothing imports a layer above its own."""
    above = {
        "domain": ("greenlane.streams.stages", "greenlane.streams.core", "greenlane.models"),
        "stages": ("greenlane.streams.core",),
    }
    for package, forbidden in above.items():
        for path in (STREAMS / package).rglob("*.py"):
            bad = {m for m in _imports(path) if m.startswith(forbidden)}
            assert not bad, f"{package}/{path.name} imports {sorted(bad)}"


def test_the_product_never_imports_the_development_tools():
    for path in STREAMS.rglob("*.py"):
        if "devtools" in path.parts or path.name == "cli.py":
            continue
        bad = {m for m in _imports(path) if m.startswith("greenlane.streams.devtools")}
        assert not bad, f"{path} imports {sorted(bad)}"
