"""The installed wheel: greenlane's own import names, schemas and settings as package data."""

from __future__ import annotations

import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _listed_packages() -> list[str]:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return data["tool"]["setuptools"]["packages"]


def test_every_sub_package_on_disk_is_listed_for_the_wheel():
    on_disk = {"greenlane.schemas"}
    for top in ("streams", "models"):
        for init in (ROOT / top).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT).parts
            on_disk.add(".".join(("greenlane", *rel)))
    assert set(_listed_packages()) == on_disk


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "-q",
            "-w",
            str(out),
            str(ROOT),
        ],
        check=True,
    )
    [built] = out.glob("greenlane-*.whl")
    return built


def test_the_wheel_claims_only_the_greenlane_import_name(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert tops == {"greenlane"}
    assert "greenlane/schemas/risk_decision.avsc" in names
    assert "greenlane/streams/settings/greenlane.toml" in names
    assert "greenlane/streams/reference/hs2022.csv" in names
    assert "greenlane/models/settings/scoring.yaml" in names


def test_an_installed_wheel_runs_outside_the_source_tree(wheel, tmp_path):
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "-q",
            "--target",
            str(target),
            str(wheel),
        ],
        check=True,
    )
    probe = (
        f"import sys; sys.path[:] = [p for p in sys.path if p not in ('', {str(ROOT)!r})];"
        f"sys.path.insert(0, {str(target)!r});"
        "from greenlane.streams.settings import load_settings, schema_path;"
        "import greenlane.streams.stages.quality as q;"
        "s = load_settings(env={}); p = schema_path('pre_arrival');"
        f"assert p.is_file() and {str(target)!r} in str(p), p;"
        "q.load_quality_rules();"
        "print('ok', s.topics.name('pre_arrival'))"
    )
    out = subprocess.run(
        [sys.executable, "-I", "-c", probe], cwd=tmp_path, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok greenlane.filing.pre-arrival"


def _requirements() -> list:
    from packaging.requirements import Requirement

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = project["dependencies"] + project["optional-dependencies"]["dev"]
    return [Requirement(r) for r in names]


def _locked() -> dict[str, str]:
    from packaging.utils import canonicalize_name

    pins = {}
    for line in (ROOT / "deploy" / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version, f"deploy/constraints.txt: {line!r} is not an exact pin (name==version)"
            pins[canonicalize_name(name)] = version.strip()
    return pins


def test_every_dependency_is_locked_at_a_version_inside_its_pyproject_range():
    from packaging.utils import canonicalize_name

    pins = _locked()
    for req in _requirements():
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} is not pinned in deploy/constraints.txt (run make lock)"
        assert req.specifier.contains(pins[name]), (
            f"{req.name}=={pins[name]} (constraints) is outside pyproject's {req.specifier}"
        )


def test_this_environment_runs_the_locked_versions():
    """The suite passing says something about the lock only if it ran on the lock."""
    from importlib.metadata import version

    from packaging.utils import canonicalize_name

    pins = _locked()
    for req in _requirements():
        assert version(req.name) == pins[canonicalize_name(req.name)], req.name
