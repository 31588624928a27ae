"""deploy/ cannot run here (no Docker engine, no cluster), so check that its files parse and
agree with each other and with the code they deploy: ports, endpoints, metric names, versions.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from prometheus_client import Counter, Gauge, Histogram, Info

from greenlane.streams.runtime import metrics
from greenlane.streams.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "compose" / "docker-compose.yml"
K8S = DEPLOY / "k8s"
OPERATOR = DEPLOY / "k8s-operator"
PROMETHEUS = DEPLOY / "prometheus"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "greenlane.json"
GREENLANE_SERVICES = ("topics", "worker", "simulate")
WORKER_JOB = "greenlane-worker"

METRIC_RE = re.compile(r"\b(greenlane_[a-z0-9_]+)\b")
GROUPING_RE = re.compile(r"\b(?:by|without|on|ignoring)\s*\(([^)]*)\)")
LEGEND_RE = re.compile(r"\{\{\s*([a-zA-Z_]\w*)\s*\}\}")


def load_yaml(path: Path) -> Any:
    with path.open() as fh:
        return yaml.safe_load(fh)


def load_yaml_all(path: Path) -> list[dict[str, Any]]:
    with path.open() as fh:
        return [doc for doc in yaml.safe_load_all(fh) if doc]


@pytest.fixture(scope="module")
def settings() -> Settings:
    return load_settings(env={})


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_yaml(COMPOSE)


@pytest.fixture(scope="module")
def kustomization() -> dict[str, Any]:
    return load_yaml(K8S / "kustomization.yaml")


@pytest.fixture(scope="module")
def k8s_objects(kustomization: dict[str, Any]) -> list[dict[str, Any]]:
    return [doc for res in kustomization["resources"] for doc in load_yaml_all(K8S / res)]


def find(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    matches = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind}/{name}, found {len(matches)}"
    return matches[0]


def exported_series() -> dict[str, frozenset[str]]:
    """Every series name the worker exposes (counters with _total, histogram parts) -> labels."""
    series: dict[str, frozenset[str]] = {}
    for obj in vars(metrics).values():
        if isinstance(obj, Info):  # one series whose labels are the info's keys
            series[f"{obj._name}_info"] = frozenset({"version"})
            continue
        if not isinstance(obj, Counter | Histogram | Gauge):
            continue
        labels = frozenset(obj._labelnames)
        if isinstance(obj, Gauge):
            series[obj._name] = labels
        elif isinstance(obj, Counter):
            series[f"{obj._name}_total"] = labels
        else:
            series[f"{obj._name}_bucket"] = labels | {"le"}
            series[f"{obj._name}_sum"] = labels
            series[f"{obj._name}_count"] = labels
    return series


TARGET_LABELS = frozenset({"job", "instance", "pod", "namespace"})


def family(series: str) -> str:
    return re.sub(r"_(bucket|sum|count)$", "", series) if not series.endswith("_total") else series


def promql_problems(expr: str, series: dict[str, frozenset[str]]) -> list[str]:
    """Names not exported, grouping labels the referenced metrics do not carry, bad brackets."""
    problems = []
    depth = 0
    for char in expr:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth < 0:
            break
    if depth != 0:
        problems.append("unbalanced parentheses")
    names = set(METRIC_RE.findall(expr))
    problems += [f"{name} is not exported by streams/metrics.py" for name in names - set(series)]
    # plus the target labels Prometheus gives every series it scrapes
    known = set().union(*(series.get(n, frozenset()) for n in names)) | TARGET_LABELS
    for group in GROUPING_RE.findall(expr):
        for label in filter(None, (part.strip() for part in group.split(","))):
            if label not in known:
                problems.append(f"label {label!r} is not on {sorted(names)}")
    return problems


def host_port(url_or_address: str) -> tuple[str, int]:
    parts = urlsplit(url_or_address if "://" in url_or_address else f"//{url_or_address}")
    assert parts.hostname and parts.port, f"{url_or_address!r} needs a host and a port"
    return parts.hostname, parts.port


def env_list(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container.get("env", [])}


# --- every file parses ---------------------------------------------------------------------


def deploy_files(*suffixes: str) -> list[Path]:
    return sorted(
        p for p in DEPLOY.rglob("*") if p.suffix in suffixes and DEPLOY / "local" not in p.parents
    )


@pytest.mark.parametrize("path", deploy_files(".yml", ".yaml"), ids=lambda p: p.name)
def test_every_yaml_file_parses(path: Path) -> None:
    docs = load_yaml_all(path)
    assert docs and all(isinstance(d, dict) for d in docs), f"{path}: no YAML mapping"


@pytest.mark.parametrize("path", deploy_files(".json"), ids=lambda p: p.name)
def test_every_json_file_parses(path: Path) -> None:
    assert isinstance(json.loads(path.read_text()), dict)


# --- metrics: dashboard and alert rules against what the worker exports --------------------


def dashboard_panels() -> list[dict[str, Any]]:
    """The dashboard's panels with queries (not its row headers)."""
    board = json.loads(DASHBOARD.read_text())
    return [p for p in board["panels"] if p["type"] != "row"]


def test_the_written_deploy_files_are_current() -> None:
    """The dashboard and the Operator's PrometheusRule are written (devtools.deploy_files)."""
    from greenlane.streams.devtools import deploy_files

    assert deploy_files.main(["--check"]) == 0, "run `make deploy-files`"
    rule = load_yaml(OPERATOR / "prometheusrule.yaml")
    assert rule["spec"] == load_yaml(PROMETHEUS / "alerts.yml")
    monitor = load_yaml(OPERATOR / "podmonitor.yaml")
    assert rule["metadata"]["labels"]["release"] == monitor["metadata"]["labels"]["release"]


def test_dashboard_queries_only_exported_metrics_and_labels() -> None:
    series = exported_series()
    problems = []
    for panel in dashboard_panels():
        for target in panel["targets"]:
            expr = target["expr"]
            problems += [f"{panel['title']}: {p}" for p in promql_problems(expr, series)]
            grouped = {lbl.strip() for g in GROUPING_RE.findall(expr) for lbl in g.split(",")}
            for label in LEGEND_RE.findall(target.get("legendFormat", "")):
                if label not in grouped - {"le"}:
                    problems.append(f"{panel['title']}: legend {{{{{label}}}}} is aggregated away")
    assert not problems, "\n".join(problems)


def test_every_dashboard_query_follows_the_job_and_instance_variables() -> None:
    selector = re.compile(r"\b((?:greenlane|process)_[a-z0-9_]+)(\{[^}]*\})?")
    for panel in dashboard_panels():
        for target in panel["targets"]:
            for name, matchers in selector.findall(target["expr"]):
                assert 'job=~"$job", instance=~"$instance"' in matchers, (panel["title"], name)


def test_dashboard_shows_every_metric_the_worker_exports() -> None:
    exprs = " ".join(t["expr"] for p in dashboard_panels() for t in p["targets"])
    shown = {family(name) for name in METRIC_RE.findall(exprs)}
    assert shown == {family(name) for name in exported_series()}


@pytest.mark.parametrize(
    "histogram", ["greenlane_batch_processing_seconds", "greenlane_decision_latency_seconds"]
)
def test_dashboard_has_p50_p95_p99_of_the_timing_histograms(histogram: str) -> None:
    exprs = [t["expr"] for p in dashboard_panels() for t in p["targets"]]
    found = {
        float(m.group(1))
        for e in exprs
        if (m := re.match(rf"histogram_quantile\(([\d.]+),.*{histogram}_bucket", e))
    }
    assert found == {0.5, 0.95, 0.99}


def test_dashboard_layout_rows_units_and_datasource() -> None:
    board = json.loads(DASHBOARD.read_text())
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    cells = set()
    for p in board["panels"]:
        g = p["gridPos"]
        own = {
            (x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])
        }
        assert g["x"] + g["w"] <= 24 and not cells & own, (
            f"panel {p['title']!r} overlaps or overflows"
        )
        cells |= own
    rows = [p["title"].split(":")[0] for p in board["panels"] if p["type"] == "row"]
    assert rows == ["Flow", "Decisions", "Model", "Process"]
    first = dashboard_panels()[0]
    assert "greenlane_consumer_lag" in first["targets"][0]["expr"]  # lag comes first
    # import asks for the datasource; the panels follow the datasource variable
    assert [i["pluginId"] for i in board["__inputs"]] == ["prometheus"]
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["query"] == "prometheus"
    assert variables["datasource"]["current"]["value"] == "${DS_PROMETHEUS}"
    assert {"job", "instance"} <= set(variables)
    for p in dashboard_panels():
        assert p["datasource"]["uid"] == "${datasource}"
        assert all(t["datasource"]["uid"] == "${datasource}" for t in p["targets"])
        unit = p["fieldConfig"]["defaults"]["unit"]
        exprs = " ".join(t["expr"] for t in p["targets"])
        if "rate(" in exprs and " / " not in exprs and "histogram_quantile" not in exprs:
            assert unit in {"recps", "cps", "short"}, p["title"]  # per second or cores
        if "_seconds" in exprs and "histogram_quantile" in exprs:
            assert unit == "s", p["title"]
        if "psi" in exprs:
            assert unit == "none", p["title"]
        if "increase(" in exprs:
            assert unit == "short", p["title"]


def test_alert_rules_use_exported_metrics_and_cover_the_brief() -> None:
    series = exported_series()
    rules = [r for g in load_yaml(PROMETHEUS / "alerts.yml")["groups"] for r in g["rules"]]
    problems = []
    for rule in rules:
        name = rule.get("alert") or rule["record"]
        problems += [f"{name}: {p}" for p in promql_problems(rule["expr"], series)]
        if "record" in rule:
            assert re.fullmatch(r"greenlane:[a-z_]+:[a-z_0-9]+", name), name
            continue
        assert rule["labels"]["severity"] in {"critical", "warning"}, name
        assert rule["annotations"]["summary"], name
        assert re.fullmatch(r"\d+[smh]", rule["for"]), name
    assert not problems, "\n".join(problems)
    exprs = " ".join(" ".join(r["expr"].split()) for r in rules)
    for needed in (
        f'up{{job="{WORKER_JOB}"}} == 0',
        "greenlane_dead_letters_total",
        "greenlane_consumer_lag_seconds",
        "greenlane_agent_last_progress_timestamp_seconds",
        "greenlane_model_feature_psi",
        "greenlane_reload_refused",
        'greenlane_decision_latency_seconds_bucket{job="greenlane-worker", le="1.0"}',
    ):
        assert needed in exprs, needed
    # The job the rules watch is the job both scrape configs define.
    jobs = set(re.findall(r'job="([^"]+)"', exprs))
    assert jobs == {WORKER_JOB}


def test_the_slo_bucket_is_one_the_latency_histogram_has() -> None:
    from greenlane.streams.runtime import metrics

    assert 1.0 in metrics.DECISION_LATENCY._upper_bounds


# --- Prometheus scrape configs --------------------------------------------------------------


def test_compose_prometheus_scrapes_every_worker_on_the_metrics_port(
    settings: Settings, compose: dict[str, Any]
) -> None:
    config = load_yaml(PROMETHEUS / "prometheus.yml")
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == WORKER_JOB]
    (sd,) = job["dns_sd_configs"]
    assert sd["port"] == settings.worker.metrics_port
    assert sd["names"] == ["worker"] and "worker" in compose["services"]
    for rule_file in config["rule_files"]:
        assert (PROMETHEUS / rule_file).is_file(), rule_file
    mounts = dict(
        v.rsplit(":", 2)[:2]
        for v in compose["services"]["prometheus"]["volumes"]
        if v.startswith("../")
    )
    assert mounts["../prometheus/prometheus.yml"] == "/etc/prometheus/prometheus.yml"
    for rule_file in config["rule_files"]:
        assert mounts[f"../prometheus/{rule_file}"] == f"/etc/prometheus/{rule_file}"


def test_kubernetes_scrape_job_selects_the_worker_pods_metrics_port(
    k8s_objects: list[dict[str, Any]],
) -> None:
    (job,) = load_yaml(PROMETHEUS / "scrape-kubernetes.yml")["scrape_configs"]
    assert job["job_name"] == WORKER_JOB
    keep = {
        r["source_labels"][0]: r["regex"]
        for r in job["relabel_configs"]
        if r.get("action") == "keep"
    }
    pod = find(k8s_objects, "Deployment", "greenlane-worker")["spec"]["template"]
    label = "__meta_kubernetes_pod_label_app_kubernetes_io_name"
    assert keep[label] == pod["metadata"]["labels"]["app.kubernetes.io/name"]
    port_names = {p["name"] for c in pod["spec"]["containers"] for p in c.get("ports", [])}
    assert keep["__meta_kubernetes_pod_container_port_name"] in port_names
    namespace = load_yaml(K8S / "kustomization.yaml")["namespace"]
    assert job["kubernetes_sd_configs"][0]["namespaces"]["names"] == [namespace]
    # finished pods keep their discovery entries: dropped, never scraped
    [drop] = [r for r in job["relabel_configs"] if r.get("action") == "drop"]
    assert drop["source_labels"] == ["__meta_kubernetes_pod_phase"]
    assert set(drop["regex"].split("|")) == {"Succeeded", "Failed"}


# --- Docker image ---------------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = (DEPLOY / "Dockerfile").read_text()
    lines = [ln for ln in text.splitlines() if not ln.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    return [
        (ln.split(None, 1)[0].upper(), ln.split(None, 1)[1].strip())
        for ln in joined.splitlines()
        if ln.strip()
    ]


def test_dockerfile_builds_the_console_script_image(settings: Settings) -> None:
    steps = dockerfile_instructions()
    arg = {kind: value for kind, value in steps}
    env = {word for kind, value in steps if kind == "ENV" for word in value.split()}
    assert arg["FROM"] == "python:3.11-slim"
    assert "GREENLANE_METRICS_HOST=0.0.0.0" in env
    # the model registry and history live on the volume compose and Kubernetes mount
    assert {
        "GREENLANE_MODEL_REGISTRY=/var/lib/greenlane/models",
        "GREENLANE_HISTORY=/var/lib/greenlane/history",
    } <= env
    assert arg["VOLUME"] == "/var/lib/greenlane"
    assert int(arg["EXPOSE"]) == settings.worker.metrics_port
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert json.loads(arg["ENTRYPOINT"]) == ["greenlane"] and "greenlane" in scripts
    assert json.loads(arg["CMD"])[0] == "worker"
    copied = [src for kind, value in steps if kind == "COPY" for src in value.split()[:-1]]
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
    for src in copied:
        if not src.endswith("*"):  # a trailing * marks an optional file
            assert (ROOT / src).exists(), f"COPY {src}: not in the repository"
        assert f"!{src.rstrip('*').rstrip('/')}" in {ln.rstrip("/") for ln in ignore}, (
            f"COPY {src}: excluded from the build context by Dockerfile.dockerignore"
        )


def test_settings_loader_honours_the_containers_metrics_host() -> None:
    # The image sets GREENLANE_METRICS_HOST=0.0.0.0; without it the worker binds 127.0.0.1
    # inside the container and neither Prometheus nor the readiness probe can reach it.
    loaded = load_settings(env={"GREENLANE_METRICS_HOST": "0.0.0.0"})
    assert loaded.worker.metrics_host == "0.0.0.0"


# --- Docker Compose -------------------------------------------------------------------------


def test_compose_services_and_dependencies(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert {"kafka", "registry", *GREENLANE_SERVICES, "prometheus", "grafana"} <= set(services)
    for name, service in services.items():
        for dep in service.get("depends_on", []):
            assert dep in services, f"{name} depends on unknown service {dep}"
    worker = services["worker"]
    assert "container_name" not in worker and "ports" not in worker, "worker must stay scalable"
    assert worker["depends_on"]["topics"]["condition"] == "service_completed_successfully"
    assert services["topics"]["command"] == ["topics", "create"]


def test_compose_greenlane_services_reach_kafka_and_registry(compose: dict[str, Any]) -> None:
    services = compose["services"]
    kafka_env = services["kafka"]["environment"]
    advertised = {
        host_port(a.split("://", 1)[1]) for a in kafka_env["KAFKA_ADVERTISED_LISTENERS"].split(",")
    }
    registry_port = int(services["registry"]["ports"][0].rsplit(":", 1)[1])  # in the container
    for name in GREENLANE_SERVICES:
        env = services[name]["environment"]
        assert host_port(env["KAFKA_BOOTSTRAP_SERVERS"]) in advertised, name
        assert host_port(env["KAFKA_BOOTSTRAP_SERVERS"])[0] == "kafka", name
        url = urlsplit(env["SCHEMA_REGISTRY_URL"])
        assert (url.hostname, url.port, url.path) == (
            "registry",
            registry_port,
            "/apis/ccompat/v7",
        ), name
        assert services[name]["build"]["dockerfile"] == "deploy/Dockerfile"
        context = (COMPOSE.parent / services[name]["build"]["context"]).resolve()
        assert context == ROOT and (context / "deploy/Dockerfile").is_file()
    assert (
        services["registry"]["environment"]["APICURIO_KAFKASQL_BOOTSTRAP_SERVERS"]
        == (services["worker"]["environment"]["KAFKA_BOOTSTRAP_SERVERS"])
    )


def test_compose_images_match_the_local_infra_versions(
    settings: Settings, compose: dict[str, Any]
) -> None:
    services = compose["services"]
    assert services["kafka"]["image"] == f"apache/kafka:{settings.local.kafka_version}"
    assert services["registry"]["image"] == (
        f"apicurio/apicurio-registry:{settings.local.registry_version}"
    )


def test_compose_mounts_exist_and_grafana_finds_its_dashboards(compose: dict[str, Any]) -> None:
    mounts = {}
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source, target = volume.split(":")[:2]
            if source.startswith("."):
                assert (COMPOSE.parent / source).exists(), f"{name}: {source} does not exist"
                mounts[source] = target
            else:
                assert source in compose["volumes"], f"{name}: undeclared volume {source}"
    provisioning = DEPLOY / "grafana" / "provisioning"
    assert mounts["../grafana/provisioning"] == "/etc/grafana/provisioning"
    (provider,) = load_yaml(provisioning / "dashboards" / "greenlane.yml")["providers"]
    assert mounts["../grafana/dashboards"] == provider["options"]["path"]
    (source,) = load_yaml(provisioning / "datasources" / "prometheus.yml")["datasources"]
    assert source["type"] == "prometheus"
    assert urlsplit(source["url"]).hostname in compose["services"]


# --- Kubernetes -----------------------------------------------------------------------------


def test_k8s_objects_are_well_formed_and_services_select_pods(
    k8s_objects: list[dict[str, Any]],
) -> None:
    for obj in k8s_objects:
        assert obj.get("apiVersion") and obj.get("kind") and obj["metadata"].get("name"), obj
        spec = obj.get("spec", {})
        if "template" in spec:
            labels = spec["template"]["metadata"]["labels"]
            assert spec["selector"]["matchLabels"].items() <= labels.items(), obj["metadata"]
            assert spec["template"]["spec"]["enableServiceLinks"] is False, obj["metadata"]
    for svc in (o for o in k8s_objects if o["kind"] == "Service"):
        selected = [
            p
            for o in k8s_objects
            if "template" in o.get("spec", {})
            for p in [o["spec"]["template"]]
            if svc["spec"]["selector"].items() <= p["metadata"]["labels"].items()
        ]
        assert selected, f"Service {svc['metadata']['name']} selects no pods"
        ports = {p["name"] for t in selected for c in t["spec"]["containers"] for p in c["ports"]}
        for port in svc["spec"]["ports"]:
            assert port["targetPort"] in ports, svc["metadata"]["name"]


def test_k8s_worker_deployment(
    settings: Settings, k8s_objects: list[dict[str, Any]], kustomization: dict[str, Any]
) -> None:
    deployment = find(k8s_objects, "Deployment", "greenlane-worker")
    # Replicas beyond the partition count would join the group and get no partition.
    assert 1 <= deployment["spec"]["replicas"] <= settings.topics.partitions
    pod = deployment["spec"]["template"]["spec"]
    (worker,) = pod["containers"]
    assert worker["args"][0] == "worker"
    ports = {p["name"]: p["containerPort"] for p in worker["ports"]}
    assert ports["metrics"] == settings.worker.metrics_port
    probe = worker["readinessProbe"]["httpGet"]
    assert probe["path"] == "/ready" and ports[probe["port"]] == settings.worker.metrics_port
    # the RocksDB tables sit on a volume at [worker] data_dir (the image user's home)
    data_dir = settings.worker.data_dir.replace("~", "/home/greenlane", 1)
    [mount] = [m for m in worker["volumeMounts"] if m["mountPath"] == data_dir]
    assert mount["name"] in {v["name"] for v in pod["volumes"]}
    assert "memory" in worker["resources"]["limits"] and worker["resources"]["requests"]
    (init,) = pod["initContainers"]
    assert init["args"] == ["topics", "create"]
    images = {i["name"] for i in kustomization["images"]}
    generated = {g["name"] for g in kustomization["configMapGenerator"]}
    for container in (worker, init):
        assert container["image"] in images
        refs = {e["configMapRef"]["name"] for e in container["envFrom"] if "configMapRef" in e}
        assert refs and refs <= generated
    # the secrets come from a Secret the operator creates (never one in git), to the worker only
    secret_refs = [e["secretRef"]["name"] for e in worker["envFrom"] if "secretRef" in e]
    assert secret_refs == ["greenlane-secrets"]
    assert not any("secretRef" in e for e in init["envFrom"])
    assert "secretGenerator" not in kustomization
    live = worker["livenessProbe"]["httpGet"]
    assert live["path"] == "/live" and ports[live["port"]] == settings.worker.metrics_port


def test_k8s_models_and_history_outlive_the_pods(k8s_objects: list[dict[str, Any]]) -> None:
    """The image's GREENLANE_MODEL_REGISTRY and GREENLANE_HISTORY sit on a shared claim."""
    pod = find(k8s_objects, "Deployment", "greenlane-worker")["spec"]["template"]["spec"]
    (worker,) = pod["containers"]
    [mount] = [m for m in worker["volumeMounts"] if m["mountPath"] == "/var/lib/greenlane"]
    [volume] = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    claim = find(k8s_objects, "PersistentVolumeClaim", volume["persistentVolumeClaim"]["claimName"])
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]  # every worker, on any node


def test_k8s_worker_disruptions_take_one_worker_at_a_time(
    k8s_objects: list[dict[str, Any]],
) -> None:
    deployment = find(k8s_objects, "Deployment", "greenlane-worker")
    budget = find(k8s_objects, "PodDisruptionBudget", "greenlane-worker")
    assert budget["spec"]["maxUnavailable"] == 1
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert budget["spec"]["selector"]["matchLabels"].items() <= labels.items()


def test_kafka_keeps_its_log_dir_inside_its_volume(
    k8s_objects: list[dict[str, Any]], compose: dict[str, Any]
) -> None:
    """Never the volume's root: an ext4 volume's lost+found there makes Kafka exit."""
    kafka = find(k8s_objects, "StatefulSet", "kafka")["spec"]["template"]["spec"]
    (container,) = kafka["containers"]
    env = {e["name"]: e["value"] for e in container["env"]}
    mounts = [m["mountPath"].rstrip("/") for m in container["volumeMounts"]]
    log_dir = env["KAFKA_LOG_DIRS"].rstrip("/")
    assert any(log_dir.startswith(m + "/") for m in mounts), (log_dir, mounts)
    service = compose["services"]["kafka"]
    targets = [v.split(":")[1].rstrip("/") for v in service["volumes"]]
    compose_dir = service["environment"]["KAFKA_LOG_DIRS"].rstrip("/")
    assert any(compose_dir.startswith(t + "/") for t in targets)


def test_compose_keeps_models_and_history_on_a_volume(compose: dict[str, Any]) -> None:
    worker = compose["services"]["worker"]
    [volume] = [v for v in worker["volumes"] if v.split(":")[1] == "/var/lib/greenlane"]
    assert volume.split(":")[0] in compose["volumes"]


def test_the_operator_overlay_scrapes_the_job_the_alerts_watch() -> None:
    overlay = load_yaml(OPERATOR / "kustomization.yaml")
    assert "../k8s" in overlay["resources"]
    monitor = load_yaml(OPERATOR / "podmonitor.yaml")
    base = load_yaml_all(K8S / "worker.yaml")
    deployment = next(d for d in base if d["kind"] == "Deployment")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    # job = the value of the pods' label named by jobLabel: the job alerts.yml selects
    assert labels[monitor["spec"]["jobLabel"]] == WORKER_JOB
    assert monitor["spec"]["selector"]["matchLabels"].items() <= labels.items()
    [endpoint] = monitor["spec"]["podMetricsEndpoints"]
    ports = {p["name"] for p in deployment["spec"]["template"]["spec"]["containers"][0]["ports"]}
    assert endpoint["port"] in ports
    drop = [r for r in endpoint["relabelings"] if r["action"] == "drop"]
    assert drop and drop[0]["sourceLabels"] == ["__meta_kubernetes_pod_phase"]
    assert set(drop[0]["regex"].split("|")) == {"Succeeded", "Failed"}


def test_k8s_endpoints_name_the_bundled_services(
    k8s_objects: list[dict[str, Any]], kustomization: dict[str, Any]
) -> None:
    (generator,) = kustomization["configMapGenerator"]
    env = dict(lit.split("=", 1) for lit in generator["literals"])
    service_ports = {
        (o["metadata"]["name"], p["port"])
        for o in k8s_objects
        if o["kind"] == "Service"
        for p in o["spec"]["ports"]
    }
    assert host_port(env["KAFKA_BOOTSTRAP_SERVERS"]) in service_ports
    assert host_port(env["SCHEMA_REGISTRY_URL"]) in service_ports
    assert urlsplit(env["SCHEMA_REGISTRY_URL"]).path == "/apis/ccompat/v7"
    kafka = find(k8s_objects, "StatefulSet", "kafka")["spec"]["template"]["spec"]["containers"][0]
    advertised = {
        host_port(a.split("://", 1)[1])
        for a in env_list(kafka)["KAFKA_ADVERTISED_LISTENERS"].split(",")
    }
    assert host_port(env["KAFKA_BOOTSTRAP_SERVERS"]) in advertised
    registry = find(k8s_objects, "Deployment", "registry")["spec"]["template"]["spec"]
    assert (
        env_list(registry["containers"][0])["APICURIO_KAFKASQL_BOOTSTRAP_SERVERS"]
        == (env["KAFKA_BOOTSTRAP_SERVERS"])
    )


def test_k8s_and_compose_run_the_same_infra_images(
    k8s_objects: list[dict[str, Any]], compose: dict[str, Any]
) -> None:
    kafka = find(k8s_objects, "StatefulSet", "kafka")["spec"]["template"]["spec"]["containers"][0]
    registry = find(k8s_objects, "Deployment", "registry")["spec"]["template"]["spec"]
    assert kafka["image"] == compose["services"]["kafka"]["image"]
    assert registry["containers"][0]["image"] == compose["services"]["registry"]["image"]


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (kustomize) not installed")
def test_the_operator_overlay_renders_with_the_base() -> None:
    out = subprocess.run(
        ["kubectl", "kustomize", str(OPERATOR)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    kinds = {d["kind"] for d in yaml.safe_load_all(out) if d}
    assert {"PodMonitor", "PrometheusRule", "Deployment", "PodDisruptionBudget"} <= kinds


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (kustomize) not installed")
def test_kustomize_renders_with_generated_config_and_image(kustomization: dict[str, Any]) -> None:
    out = subprocess.run(
        ["kubectl", "kustomize", str(K8S)], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    objects = [d for d in yaml.safe_load_all(out) if d]
    namespaced = [o for o in objects if o["kind"] != "Namespace"]
    assert {o["metadata"]["namespace"] for o in namespaced} == {kustomization["namespace"]}
    config_maps = {o["metadata"]["name"] for o in objects if o["kind"] == "ConfigMap"}
    pod = find(objects, "Deployment", "greenlane-worker")["spec"]["template"]["spec"]
    (image,) = kustomization["images"]
    for container in pod["containers"] + pod["initContainers"]:
        assert container["image"] == f"{image['newName']}:{image['newTag']}"
        maps = {e["configMapRef"]["name"] for e in container["envFrom"] if "configMapRef" in e}
        assert maps <= config_maps
