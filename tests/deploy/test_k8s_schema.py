"""The Kubernetes manifests against the API's own schemas, strictly: every object of deploy/k8s
(the base) and deploy/k8s-operator (the Operator overlay) is validated with kubernetes-validate
(the OpenAPI schemas of each Kubernetes release, bundled; unknown fields are errors), the
PodMonitor and PrometheusRule against the schemas in the Prometheus Operator's CRDs (`make test`
fetches them from the Go module proxy: GREENLANE_CRDS), and every pod meets the "restricted" Pod
Security Standard the namespace enforces."""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
FOLDERS = (DEPLOY / "k8s", DEPLOY / "k8s-operator")  # the base and the Operator overlay
# the oldest Kubernetes release still supported upstream, and the newest the validator knows
VERSIONS = ("1.32.0", "1.37.0")
CRD_GROUP = "monitoring.coreos.com"


def manifests() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for path in sorted(p for folder in FOLDERS for p in folder.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                found.append(
                    (f"{path.relative_to(DEPLOY)}: {doc['kind']} {doc['metadata']['name']}", doc)
                )
    return found


CORE = [(name, doc) for name, doc in manifests() if not doc["apiVersion"].startswith(CRD_GROUP)]
CUSTOM = [(name, doc) for name, doc in manifests() if doc["apiVersion"].startswith(CRD_GROUP)]


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("doc", [d for _, d in CORE], ids=[n for n, _ in CORE])
def test_every_object_passes_the_kubernetes_schema_strictly(doc: dict, version: str) -> None:
    try:
        kubernetes_validate.validate(doc, version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        pytest.fail(f"{doc['kind']} {doc['metadata']['name']} (Kubernetes {version}): {exc}")


def test_an_unknown_field_is_refused() -> None:
    """The check above can fail: a misspelt field is an error, not ignored."""
    doc = copy.deepcopy(next(d for _, d in CORE if d["kind"] == "Deployment"))
    doc["spec"]["template"]["spec"]["containers"][0]["livenessprobe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(doc, VERSIONS[-1], strict=True)


def strict(schema: Any) -> Any:
    """A CRD's structural schema with unknown fields refused where it lists the known ones (the
    API server would silently prune them)."""
    if isinstance(schema, dict):
        out = {k: strict(v) for k, v in schema.items()}
        if (
            "properties" in out
            and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")
        ):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [strict(v) for v in schema]
    return schema


@pytest.fixture(scope="module")
def crd_schemas() -> dict[tuple[str, str], dict]:
    """(apiVersion, kind) -> the CRD's schema, made strict."""
    folder = os.environ.get("GREENLANE_CRDS")
    if not folder or not Path(folder).is_dir():
        pytest.skip("no Prometheus Operator CRDs: `make test` fetches them (GREENLANE_CRDS)")
    schemas = {}
    for path in Path(folder).glob("*.yaml"):
        crd = yaml.safe_load(path.read_text())
        for v in crd["spec"]["versions"]:
            key = (f"{crd['spec']['group']}/{v['name']}", crd["spec"]["names"]["kind"])
            schemas[key] = strict(v["schema"]["openAPIV3Schema"])
    return schemas


@pytest.mark.parametrize("doc", [d for _, d in CUSTOM], ids=[n for n, _ in CUSTOM])
def test_the_operator_objects_pass_their_crd_schemas(doc: dict, crd_schemas: dict) -> None:
    schema = crd_schemas.get((doc["apiVersion"], doc["kind"]))
    assert schema is not None, f"no CRD for {doc['apiVersion']} {doc['kind']}"
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(doc), key=str)
    assert not errors, "\n".join(f"{'.'.join(map(str, e.path))}: {e.message}" for e in errors)


def test_an_unknown_operator_field_is_refused(crd_schemas: dict) -> None:
    doc = copy.deepcopy(next(d for _, d in CUSTOM if d["kind"] == "PodMonitor"))
    doc["spec"]["podMetricsEndpoints"][0]["intervall"] = "15s"
    schema = crd_schemas[(doc["apiVersion"], doc["kind"])]
    assert list(jsonschema.Draft7Validator(schema).iter_errors(doc))


def pod_specs() -> list[tuple[str, dict]]:
    return [
        (name, doc["spec"]["template"]["spec"])
        for name, doc in CORE
        if doc["kind"] in {"Deployment", "StatefulSet", "DaemonSet", "Job"}
    ]


@pytest.mark.parametrize("pod", [p for _, p in pod_specs()], ids=[n for n, _ in pod_specs()])
def test_every_pod_meets_the_restricted_pod_security_standard(pod: dict) -> None:
    security = pod.get("securityContext", {})
    assert security.get("seccompProfile", {}).get("type") == "RuntimeDefault"
    assert security.get("runAsNonRoot") is True and security.get("runAsUser", 1) != 0
    assert not pod.get("hostNetwork") and not pod.get("hostPID") and not pod.get("hostIPC")
    allowed = {"emptyDir", "persistentVolumeClaim", "configMap", "secret", "projected"}
    for volume in pod.get("volumes", []):
        assert set(volume) - {"name"} <= allowed, volume["name"]
    for container in pod["containers"] + pod.get("initContainers", []):
        own = container.get("securityContext", {})
        assert own.get("allowPrivilegeEscalation") is False, container["name"]
        assert own.get("capabilities", {}).get("drop") == ["ALL"], container["name"]
        assert not own.get("capabilities", {}).get("add"), container["name"]
        assert not own.get("privileged"), container["name"]
        assert own.get("runAsUser", 1) != 0, container["name"]


def test_the_namespace_enforces_the_restricted_level() -> None:
    [namespace] = [d for _, d in CORE if d["kind"] == "Namespace"]
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
