"""The Prometheus Operator's CRDs (PodMonitor, PrometheusRule), for the suite's schema check of
the Operator overlay: taken from the operator's Go module on the Go module proxy (a package
registry, so it is reachable where GitHub is not), only the two files kept."""

from __future__ import annotations

import argparse
import io
import urllib.request
import zipfile
from pathlib import Path

PROXY = "https://proxy.golang.org"
MODULE = "github.com/prometheus-operator/prometheus-operator"
WANTED = ("monitoring.coreos.com_podmonitors.yaml", "monitoring.coreos.com_prometheusrules.yaml")


def fetch(version: str, into: Path, proxy: str = PROXY) -> list[Path]:
    """Write the CRDs of ``version`` (e.g. v0.85.0) into ``into``; returns their paths."""
    url = f"{proxy}/{MODULE}/@v/{version}.zip"
    with urllib.request.urlopen(url, timeout=120) as response:
        archive = zipfile.ZipFile(io.BytesIO(response.read()))
    folder = f"{MODULE}@{version}/example/prometheus-operator-crd/"
    into.mkdir(parents=True, exist_ok=True)
    written = []
    for name in WANTED:
        try:
            data = archive.read(folder + name)
        except KeyError:
            raise SystemExit(f"{url}: no {folder + name} in the module") from None
        (into / name).write_bytes(data)
        written.append(into / name)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m greenlane.streams.devtools.crds",
        description="Fetch the Prometheus Operator's PodMonitor and PrometheusRule CRDs from "
        "the Go module proxy (make test does, for tests/deploy/test_k8s_schema.py).",
    )
    parser.add_argument("--version", required=True, help="the operator's release, e.g. v0.85.0")
    parser.add_argument("--into", type=Path, required=True, help="folder to write them to")
    args = parser.parse_args(argv)
    for path in fetch(args.version, args.into):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
