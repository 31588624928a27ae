"""The local Kafka broker and schema registry that `greenlane infra up` starts by itself.

A fresh machine needs only Java 17 and Maven: the broker jars and the registry come from Maven
Central on first use and are cached under ``[local].home`` (outside git), next to their data,
logs and pid files. Both run as detached processes so that they outlive the command that started
them; ``down`` finds them again through their pid files. Services named by
KAFKA_BOOTSTRAP_SERVERS / SCHEMA_REGISTRY_URL are external: they are only checked, never started
or stopped. Readiness is always polled (a metadata request, an HTTP 200), never slept for.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import tarfile
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from string import Template
from typing import Any
from urllib.parse import urlsplit

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from greenlane.streams.settings import Settings, secrets

# A development tool: it runs from a checkout, whose deploy/local holds the POMs and configs.
DEPLOY_DIR = Path(__file__).resolve().parents[2] / "deploy" / "local"
KAFKA = "kafka"
REGISTRY = "registry"
SERVICES = (KAFKA, REGISTRY)  # start order; stopped in reverse
REGISTRY_ARTIFACT = "io.apicurio:apicurio-registry-app:{version}:tar.gz:all"
LOOPBACK = ("127.0.0.1", "localhost", "::1")
PROBE_SECONDS = 3.0  # how long one "does it answer?" request may take
POLL_SECONDS = 0.2
STOP_GRACE_SECONDS = 20.0
LOG_TAIL_LINES = 15

Progress = Callable[[str], None]
_QUIET = logging.getLogger(
    "greenlane.streams.devtools.infra.librdkafka"
)  # keeps librdkafka off stderr
CMDLINE_CHECKS = 10
CMDLINE_RECHECK_SECONDS = 0.05
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}  # started by this process: reaped, not zombies


class InfraError(RuntimeError):
    """A local service could not be fetched, started, reached or stopped.

    The message names what failed and, when there is one, the log to read, with its last lines.
    """

    def __init__(self, what: str, log: Path | None = None) -> None:
        self.log = log
        if log is not None:
            what += f"\n  log: {log}"
            tail = _tail(log)
            if tail:
                what += "\n  last lines:\n" + "\n".join(f"    {line}" for line in tail)
        super().__init__(what)


def _tail(path: Path, lines: int = LOG_TAIL_LINES) -> list[str]:
    try:
        return path.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return []


# --- where things live ------------------------------------------------------------------------


@dataclass(frozen=True)
class Layout:
    """Everything downloaded or generated for the local services, under ``[local].home``."""

    home: Path
    kafka_version: str
    registry_version: str

    @classmethod
    def of(cls, settings: Settings) -> Layout:
        local = settings.local
        return cls(local.home_path, local.kafka_version, local.registry_version)

    @property
    def kafka_dist(self) -> Path:
        return self.home / f"kafka-{self.kafka_version}"

    @property
    def kafka_lib(self) -> Path:
        return self.kafka_dist / "lib"

    @property
    def kafka_dir(self) -> Path:
        return self.home / "kafka"

    @property
    def kafka_data(self) -> Path:
        return self.kafka_dir / "data"

    @property
    def kafka_properties(self) -> Path:
        return self.kafka_dir / "server.properties"

    @property
    def tls_dir(self) -> Path:
        """The local CA (ca.pem: what clients trust) and the broker's keystore."""
        return self.home / "tls"

    @property
    def kafka_log4j(self) -> Path:
        return self.kafka_dir / "log4j2.yaml"

    @property
    def registry_dist(self) -> Path:
        return self.home / f"registry-{self.registry_version}"

    @property
    def registry_jar(self) -> Path:
        return self.registry_dist / f"apicurio-registry-app-{self.registry_version}-runner.jar"

    @property
    def registry_dir(self) -> Path:
        """The registry's working directory: Quarkus reads ``config/application.properties``."""
        return self.home / "registry"

    @property
    def registry_config(self) -> Path:
        return self.registry_dir / "config" / "application.properties"

    @property
    def registry_database(self) -> Path:
        return self.registry_dir / "data" / "registry"

    def log(self, name: str) -> Path:
        return self.home / "logs" / f"{name}.log"

    def pid_file(self, name: str) -> Path:
        return self.home / "run" / f"{name}.pid"

    def markers(self, name: str) -> tuple[str, ...]:
        """Texts the command line of *our* process of this service contains (pid reuse guard)."""
        main = "kafka.Kafka" if name == KAFKA else "apicurio-registry-app"
        return (str(self.home) + os.sep, main)


# --- generated configuration and command lines ------------------------------------------------


def _render(template: str, **values: object) -> str:
    return Template((DEPLOY_DIR / template).read_text()).substitute(values)


CONTROLLER_PRINCIPAL = "greenlane-controller"  # the node itself, on its controller listener


def local_principals(settings: Settings) -> tuple[str, ...]:
    """The principals the local broker has, each with a password in the secrets file: the
    administrator, the worker and the node's own controller login."""
    k = settings.kafka
    return (k.admin_username, k.username, CONTROLLER_PRINCIPAL)


def kafka_server_properties(
    settings: Settings, passwords: Mapping[str, str], store_password: str
) -> str:
    """The broker's server.properties, from deploy/local/kafka/server.properties (it holds
    passwords: written mode 600)."""
    local = settings.local
    layout = Layout.of(settings)
    admin = settings.kafka.admin_username
    return _render(
        "kafka/server.properties",
        kafka_port=local.kafka_port,
        tls_port=local.kafka_tls_port,
        controller_port=local.kafka_controller_port,
        log_dirs=layout.kafka_data,
        partitions=settings.topics.partitions,
        admin_user=admin,
        admin_password=passwords[admin],
        controller_user=CONTROLLER_PRINCIPAL,
        controller_password=passwords[CONTROLLER_PRINCIPAL],
        keystore=layout.tls_dir / "broker.p12",
        store_password=store_password,
    )


def registry_properties(settings: Settings) -> str:
    """The registry's application.properties, from deploy/local/registry/application.properties."""
    return _render(
        "registry/application.properties", database=Layout.of(settings).registry_database
    )


def java_executable() -> str:
    """JAVA_HOME's java when JAVA_HOME is set, else the first java on PATH."""
    java_home = os.environ.get("JAVA_HOME")
    if java_home:
        java = Path(java_home) / "bin" / "java"
        if os.access(java, os.X_OK):
            return str(java)
        raise InfraError(f"JAVA_HOME is {java_home} but {java} is not an executable")
    java = shutil.which("java")
    if java is None:
        raise InfraError("java not found on PATH (Java 17+ is needed for Kafka and the registry)")
    return java


def _kafka_java(settings: Settings, java: str) -> list[str]:
    layout = Layout.of(settings)
    return [
        java,
        f"-Dlog4j2.configurationFile={layout.kafka_log4j}",
        "-cp",
        f"{layout.kafka_lib}{os.sep}*",
    ]


def kafka_command(settings: Settings, java: str) -> list[str]:
    """The broker's command line: a fixed heap, logging to stdout (sent to logs/kafka.log)."""
    heap = settings.local.kafka_heap
    base = _kafka_java(settings, java)
    return [
        base[0],
        f"-Xmx{heap}",
        f"-Xms{heap}",
        "-XX:+ExitOnOutOfMemoryError",
        "-Djava.awt.headless=true",
        *base[1:],
        "kafka.Kafka",
        str(Layout.of(settings).kafka_properties),
    ]


def registry_command(settings: Settings, java: str) -> list[str]:
    """The registry's command line; host and port as system properties, which nothing overrides."""
    return [
        java,
        f"-Xmx{settings.local.registry_heap}",
        "-XX:+ExitOnOutOfMemoryError",
        "-Dquarkus.http.host=127.0.0.1",
        f"-Dquarkus.http.port={settings.local.registry_port}",
        "-jar",
        str(Layout.of(settings).registry_jar),
    ]


# --- the record of what `make test` started ---------------------------------------------------


def read_record(path: Path) -> list[str]:
    """Service names listed in a record file, each once, in start order; [] when it is absent."""
    try:
        names = {line.strip() for line in path.read_text().splitlines()}
    except FileNotFoundError:
        return []
    return [name for name in SERVICES if name in names]


def append_record(path: Path, names: list[str]) -> None:
    """Add started services to a record file (created, even empty, so `down` finds it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        fh.writelines(f"{name}\n" for name in names)


# --- endpoints and probes ---------------------------------------------------------------------


def _split_host_port(address: str) -> tuple[str, int]:
    address = address.strip().split("://")[-1]
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


def _bootstrap_addresses(bootstrap: str) -> list[tuple[str, int]]:
    return [_split_host_port(a) for a in bootstrap.split(",") if a.strip()]


def _port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def kafka_answers(conf: Mapping[str, Any], timeout: float = PROBE_SECONDS) -> bool:
    """True when the broker of client settings ``conf`` answers metadata and group requests in
    ``timeout`` (authenticated as their principal)."""
    addresses = _bootstrap_addresses(conf["bootstrap.servers"])
    if not any(_port_open(h, p, min(timeout, 0.5)) for h, p in addresses):
        return False  # fail fast: librdkafka would retry a refused connection until the timeout
    admin = AdminClient({**conf, "logger": _QUIET})
    try:
        admin.list_topics(timeout=timeout)
        # Ready means a worker can join its group: the group coordinator has loaded its
        # partitions (a broker with many groups answers metadata long before that).
        groups = admin.list_consumer_groups(request_timeout=timeout).result(timeout=timeout)
    except (KafkaException, TimeoutError):
        return False
    return not groups.errors


def registry_answers(url: str, timeout: float = PROBE_SECONDS) -> bool:
    """True when ``url`` answers like a Confluent-compatible registry (GET /subjects: a list)."""
    host = urlsplit(url).hostname or ""
    handlers = [urllib.request.ProxyHandler({})] if host in LOOPBACK else []
    opener = urllib.request.build_opener(*handlers)
    try:
        with opener.open(f"{url}/subjects", timeout=timeout) as response:
            return response.status == 200 and isinstance(json.load(response), list)
    except (OSError, ValueError):
        return False


@dataclass(frozen=True)
class _Service:
    name: str
    title: str
    version: str
    endpoint: str  # what clients use: bootstrap servers or registry URL
    env: str  # the variable that makes it external
    external: bool
    ports: tuple[tuple[int, str], ...]  # local ports it binds when we run it, with their key
    answers: Callable[[float], bool]


def _services(settings: Settings) -> dict[str, _Service]:
    local = settings.local
    services = {
        KAFKA: _Service(
            KAFKA,
            "Kafka",
            local.kafka_version,
            settings.bootstrap_servers,
            "KAFKA_BOOTSTRAP_SERVERS",
            settings.external_kafka,
            (
                (local.kafka_port, "kafka_port"),
                (local.kafka_tls_port, "kafka_tls_port"),
                (local.kafka_controller_port, "kafka_controller_port"),
            ),
            lambda timeout: kafka_answers(settings.as_admin(), timeout),
        ),
        REGISTRY: _Service(
            REGISTRY,
            "Schema registry",
            local.registry_version,
            settings.registry_url,
            "SCHEMA_REGISTRY_URL",
            settings.external_registry,
            ((local.registry_port, "registry_port"),),
            lambda timeout: registry_answers(settings.registry_url, timeout),
        ),
    }
    split = urlsplit(settings.registry_url)
    pointed = {
        KAFKA: _bootstrap_addresses(settings.bootstrap_servers)[0],
        REGISTRY: (split.hostname or "", split.port or (443 if split.scheme == "https" else 80)),
    }
    for name, svc in services.items():
        host, port = pointed[name]
        local_port, key = svc.ports[0]
        if not svc.external and (host not in LOOPBACK or port != local_port):
            raise InfraError(
                f"{svc.title}: the settings point clients at {svc.endpoint}, but the local one "
                f"listens on 127.0.0.1:{local_port} ([local].{key}); make the two agree, or set "
                f"{svc.env} to use an external one"
            )
    return services


# --- processes --------------------------------------------------------------------------------


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _alive(pid: int) -> bool:
    child = _CHILDREN.get(pid)
    if child is not None:
        if child.poll() is None:
            return True
        del _CHILDREN[pid]  # reaped: from now on the pid may be someone else's
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie still has a pid but is gone
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _is_ours(pid: int, markers: tuple[str, ...]) -> bool:
    """Alive and started from this home (a recycled pid belongs to someone else).

    A process caught in the middle of exec shows an empty or its parent's command line for a
    moment, so a mismatch is looked at again for a little while before the pid is disowned.
    """
    for attempt in range(CMDLINE_CHECKS):
        if not _alive(pid):
            return False
        try:
            raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return True  # no /proc (macOS): trust the pid file
        if all(marker in raw.replace(b"\0", b" ").decode(errors="replace") for marker in markers):
            return True
        if attempt + 1 < CMDLINE_CHECKS:
            time.sleep(CMDLINE_RECHECK_SECONDS)
    return False


def _our_pid(name: str, layout: Layout, progress: Progress | None = None) -> int | None:
    """The pid of our running process of ``name``; a stale pid file is removed."""
    path = layout.pid_file(name)
    pid = _read_pid(path)
    if pid is not None and _is_ours(pid, layout.markers(name)):
        return pid
    if path.exists():
        path.unlink()
        if progress is not None:
            progress(f"removed stale pid file {path}")
    return None


def local_pid(settings: Settings, name: str) -> int | None:
    """The pid of the local ``name`` service (KAFKA, REGISTRY) this project started, if it
    runs; None for an external one (the bench reads the broker's CPU from it)."""
    service = _services(settings)[name]
    if service.external:
        return None
    return _our_pid(name, Layout.of(settings))


def _wait_exit(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while _alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(POLL_SECONDS)
    return True


def _terminate(pid: int) -> str:
    """SIGTERM, up to STOP_GRACE_SECONDS for a clean shutdown, then SIGKILL. Says how it went."""
    started = time.monotonic()
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return "already gone"
    if _wait_exit(pid, STOP_GRACE_SECONDS):
        how = f"in {time.monotonic() - started:.1f} s"
    else:
        with_kill = f"killed after {STOP_GRACE_SECONDS:.0f} s without exiting on SIGTERM"
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        if not _wait_exit(pid, 5.0):
            raise InfraError(f"process {pid} survived SIGKILL")
        how = with_kill
    _CHILDREN.pop(pid, None)
    return how


def _run_logged(
    command: list[str],
    log: Path,
    what: str,
    cwd: Path | None = None,
    hide: tuple[str, ...] = (),
) -> None:
    """Run a set-up step to completion, its output to ``log``; InfraError if it fails.
    ``hide``: passwords on the command line, written to the log as ***."""
    log.parent.mkdir(parents=True, exist_ok=True)
    shown = " ".join(command)
    for secret in hide:
        shown = shown.replace(secret, "***")
    with log.open("w") as out:
        out.write("$ " + shown + "\n")
        out.flush()
        try:
            result = subprocess.run(
                command, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT
            )
        except OSError as exc:
            raise InfraError(f"{what} failed: cannot run {command[0]}: {exc}") from exc
    if result.returncode != 0:
        raise InfraError(f"{what} failed (exit code {result.returncode})", log)


def _maven(
    layout: Layout,
    what: str,
    log_name: str,
    progress: Progress,
    arguments: list[str],
    cwd: Path | None = None,
) -> None:
    """One-off download through Maven, which reaches Maven Central and caches in ~/.m2."""
    mvn = shutil.which("mvn")
    if mvn is None:
        raise InfraError(f"mvn not found on PATH (Maven fetches {what} once)")
    log = layout.log(log_name)
    progress(f"downloading {what} with mvn (first run only; log: {log})...")
    command = [mvn, "-q", "-B", "-Dstyle.color=never", *arguments]
    _run_logged(command, log, f"downloading {what} with mvn", cwd=cwd)


# --- preparing each service -------------------------------------------------------------------


def _write_if_changed(path: Path, text: str, mode: int = 0o644) -> None:
    """``text`` into ``path`` unless it holds it already; created with ``mode`` (600 for a
    file with passwords: never readable by others, not even for a moment)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        path.chmod(mode)  # before new text goes in
    if not path.exists() or path.read_text() != text:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "w") as fh:
            fh.write(text)


def _prepare_kafka(settings: Settings, java: str, progress: Progress) -> tuple[list[str], Path]:
    """Jars, configuration and formatted storage; returns the command line and its directory."""
    layout = Layout.of(settings)
    complete = layout.kafka_dist / ".complete"
    if not complete.exists():
        shutil.rmtree(layout.kafka_lib, ignore_errors=True)
        _maven(
            layout,
            f"Kafka {layout.kafka_version} jars",
            "download-kafka",
            progress,
            [
                *("-f", str(DEPLOY_DIR / "kafka" / "pom.xml")),
                f"-Dkafka.version={layout.kafka_version}",
                "dependency:copy-dependencies",
                "-DincludeScope=runtime",
                f"-DoutputDirectory={layout.kafka_lib}",
            ],
        )
        complete.write_text("jars complete\n")
    passwords = secrets.local_kafka_passwords(local_principals(settings))
    store_password = _ensure_tls(layout, java, progress)
    _write_if_changed(
        layout.kafka_properties,
        kafka_server_properties(settings, passwords, store_password),
        mode=0o600,
    )
    _write_if_changed(layout.kafka_log4j, (DEPLOY_DIR / "kafka" / "log4j2.yaml").read_text())
    secured = layout.kafka_data / SECURED_MARK
    if (layout.kafka_data / "meta.properties").exists() and not secured.exists():
        aside = layout.kafka_dir / f"data-plaintext-{time.strftime('%Y%m%d-%H%M%S')}"
        progress(
            f"Kafka storage in {layout.kafka_data} has no principals (made before SASL): "
            f"kept as {aside}, formatting a new one"
        )
        layout.kafka_data.rename(aside)
        tables = Path(os.path.expanduser(settings.worker.data_dir))
        if tables.exists():  # their changelog offsets name the old broker's topics
            tables.rename(tables.with_name(f"{tables.name}-{aside.name}"))
    if not (layout.kafka_data / "meta.properties").exists():
        log = layout.log("kafka-format")
        progress(f"formatting Kafka storage in {layout.kafka_data} (log: {log})...")
        tool = [*_kafka_java(settings, java), "kafka.tools.StorageTool"]
        try:
            cluster_id = subprocess.run(
                [*tool, "random-uuid"], capture_output=True, text=True, check=True
            ).stdout.split()[-1]
        except (OSError, subprocess.CalledProcessError, IndexError) as exc:
            raise InfraError(f"generating a Kafka cluster id failed: {exc}") from exc
        format_command = [*tool, "format", "-t", cluster_id, "-c", str(layout.kafka_properties)]
        # the administrator's SCRAM credential is in the metadata from the start: it is the
        # broker's own login and creates the other principals (KRaft has no other way in)
        admin = settings.kafka.admin_username
        scram = f"SCRAM-SHA-512=[name={admin},password={passwords[admin]}]"
        _run_logged(
            [*format_command, "--standalone", "--add-scram", scram],
            log,
            "formatting Kafka storage",
            hide=(passwords[admin],),
        )
        secured.write_text("formatted with the administrator's SCRAM credential\n")
    return kafka_command(settings, java), layout.kafka_dir


SECURED_MARK = ".greenlane-sasl"
TLS_DAYS = 825  # the longest validity clients accept for a server certificate


def _keytool(java: str) -> str:
    keytool = Path(java).with_name("keytool")
    if keytool.exists():
        return str(keytool)
    found = shutil.which("keytool")
    if found is None:
        raise InfraError(f"keytool not found next to {java} nor on PATH (it makes the local CA)")
    return found


def _ensure_tls(layout: Layout, java: str, progress: Progress) -> str:
    """A local CA (``ca.pem``, what clients trust) and the broker's PKCS12 keystore, signed
    by it for 127.0.0.1 and localhost, made once with the JDK's keytool; returns the store
    password (a file of its own, mode 600)."""
    tls = layout.tls_dir
    password_file = tls / "store-password"
    if (tls / "broker.p12").exists() and (tls / "ca.pem").exists() and password_file.exists():
        return password_file.read_text().strip()
    shutil.rmtree(tls, ignore_errors=True)
    tls.mkdir(parents=True, mode=0o700)
    password = secrets.new_password()
    fd = os.open(password_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(password + "\n")
    keytool = _keytool(java)
    store = ["-storetype", "PKCS12", "-storepass", password, "-keypass", password]
    san = "SAN=ip:127.0.0.1,dns:localhost"
    days = ["-validity", str(TLS_DAYS)]
    ca, broker = str(tls / "ca.p12"), str(tls / "broker.p12")
    steps = [
        ["-genkeypair", "-alias", "ca", "-keyalg", "RSA", "-keysize", "2048", "-ext", "bc:c",
         "-dname", "CN=greenlane local CA", "-keystore", ca, *store, *days],
        ["-exportcert", "-rfc", "-alias", "ca", "-keystore", ca, *store,
         "-file", str(tls / "ca.pem")],
        ["-genkeypair", "-alias", "broker", "-keyalg", "RSA", "-keysize", "2048",
         "-dname", "CN=localhost", "-ext", san, "-keystore", broker, *store, *days],
        ["-certreq", "-alias", "broker", "-keystore", broker, *store,
         "-file", str(tls / "broker.csr")],
        ["-gencert", "-alias", "ca", "-keystore", ca, *store, "-rfc", "-ext", san,
         "-ext", "EKU=serverAuth", "-infile", str(tls / "broker.csr"),
         "-outfile", str(tls / "broker.pem"), *days],
        ["-importcert", "-noprompt", "-alias", "ca", "-file", str(tls / "ca.pem"),
         "-keystore", broker, *store],
        ["-importcert", "-alias", "broker", "-file", str(tls / "broker.pem"),
         "-keystore", broker, *store],
    ]  # fmt: skip
    progress(f"making a local CA and the broker's certificate in {tls} (keytool)...")
    log = layout.log("tls")
    for step in steps:
        _run_logged([keytool, *step], log, f"keytool {step[0]}", hide=(password,))
    return password


def _prepare_registry(settings: Settings, java: str, progress: Progress) -> tuple[list[str], Path]:
    """Unpacked application and its configuration; returns the command line and its directory."""
    layout = Layout.of(settings)
    complete = layout.registry_dist / ".complete"
    if not complete.exists():
        version = layout.registry_version
        log = layout.log("download-registry")
        downloads = layout.home / "downloads"
        downloads.mkdir(parents=True, exist_ok=True)
        _maven(
            layout,
            f"Apicurio Registry {version}",
            "download-registry",
            progress,
            [
                "dependency:copy",
                f"-Dartifact={REGISTRY_ARTIFACT.format(version=version)}",
                f"-DoutputDirectory={downloads}",
            ],
            cwd=downloads,  # outside any project: no stray pom.xml gets involved
        )
        tarball = downloads / f"apicurio-registry-app-{version}-all.tar.gz"
        shutil.rmtree(layout.registry_dist, ignore_errors=True)
        try:
            with tarfile.open(tarball) as archive:
                archive.extractall(layout.registry_dist, filter="data")
        except (OSError, tarfile.TarError) as exc:
            raise InfraError(f"unpacking {tarball} failed: {exc}", log) from exc
        if not layout.registry_jar.exists():
            raise InfraError(f"{tarball} holds no {layout.registry_jar.name}", log)
        tarball.unlink()  # Maven's own cache (~/.m2) keeps a copy
        complete.write_text("unpacked\n")
    _write_if_changed(layout.registry_config, registry_properties(settings))
    layout.registry_database.parent.mkdir(parents=True, exist_ok=True)
    return registry_command(settings, java), layout.registry_dir


_PREPARE = {KAFKA: _prepare_kafka, REGISTRY: _prepare_registry}


@dataclass
class _Starting:
    """A local process we wait for; ``ours`` when this call launched it."""

    service: _Service
    pid: int
    since: float
    ours: bool


def _launch(
    svc: _Service, layout: Layout, command: list[str], cwd: Path, progress: Progress
) -> _Starting:
    """Start a prepared service as a detached process that logs to logs/<name>.log."""
    log = layout.log(svc.name)
    if log.exists() and log.stat().st_size:
        log.replace(log.with_name(log.name + ".1"))  # keep the previous run's log for comparison
    with log.open("w") as out:
        try:
            child = subprocess.Popen(
                command,
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # detached: survives the end of `greenlane infra up`
            )
        except OSError as exc:
            raise InfraError(f"starting {svc.title} failed: {exc}", log) from exc
    _CHILDREN[child.pid] = child
    pid_file = layout.pid_file(svc.name)
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    pid_file.write_text(f"{child.pid}\n")
    progress(f"starting {svc.title} {svc.version} at {svc.endpoint} (pid {child.pid}, log: {log})")
    return _Starting(svc, child.pid, time.monotonic(), ours=True)


def _ready_now(svc: _Service, timeout: float) -> bool:
    port = svc.ports[0][0]
    return _port_open("127.0.0.1", port) and svc.answers(timeout)


def _await(
    starting: _Starting, layout: Layout, deadline: float, timeout: int, progress: Progress
) -> None:
    """Poll until the service answers; fail at once if its process dies, or at the deadline."""
    svc = starting.service
    log = layout.log(svc.name)
    while True:
        remaining = deadline - time.monotonic()
        if _ready_now(svc, max(0.5, min(PROBE_SECONDS, remaining))):
            elapsed = time.monotonic() - starting.since
            progress(f"{svc.title} ready at {svc.endpoint} ({elapsed:.1f} s; log: {log})")
            return
        child = _CHILDREN.get(starting.pid)  # our child: its exit code, not just "gone"
        if child.poll() is not None if child is not None else not _alive(starting.pid):
            _CHILDREN.pop(starting.pid, None)
            code = f" with code {child.returncode}" if child is not None else ""
            raise InfraError(f"{svc.title} exited{code} before answering at {svc.endpoint}", log)
        if remaining <= 0:
            raise InfraError(
                f"{svc.title} (pid {starting.pid}) did not answer at {svc.endpoint} within "
                f"{timeout} s ([local].start_timeout_seconds)"
                + ("; stopped it" if starting.ours else ""),
                log,
            )
        time.sleep(POLL_SECONDS)


def _check_running(svc: _Service, layout: Layout, progress: Progress) -> tuple[bool, int | None]:
    """(answers already, pid of our live process). Neither means: start it.

    Raises when one of its ports is held by something that does not answer as the service.
    """
    pid = _our_pid(svc.name, layout, progress)
    if _ready_now(svc, PROBE_SECONDS):
        whose = f"pid {pid}" if pid is not None else "not started by greenlane"
        progress(f"{svc.title} already running at {svc.endpoint} ({whose})")
        return True, pid
    if pid is not None:
        return False, pid
    for port, key in svc.ports:
        if _port_open("127.0.0.1", port):
            raise InfraError(
                f"port {port} ([local].{key}) is in use by something that does not answer as "
                f"{svc.title}; stop it or choose another port"
            )
    return False, None


def _survey(
    services: dict[str, _Service], layout: Layout, progress: Progress
) -> tuple[list[_Starting], list[_Service]]:
    """Which local services are still starting (ours, to wait for) and which are absent."""
    waiting: list[_Starting] = []
    absent: list[_Service] = []
    for svc in services.values():
        if svc.external:
            if not svc.answers(PROBE_SECONDS):
                raise InfraError(
                    f"{svc.title} at {svc.endpoint} (from {svc.env}) does not answer; "
                    "nothing is started for an external service"
                )
            progress(f"{svc.title} is external at {svc.endpoint}: answers")
            continue
        answers, pid = _check_running(svc, layout, progress)
        if answers:
            continue
        if pid is not None:
            progress(f"{svc.title} (pid {pid}) is still starting; waiting for it")
            waiting.append(_Starting(svc, pid, time.monotonic(), ours=False))
        else:
            absent.append(svc)
    return waiting, absent


@contextlib.contextmanager
def _locked(layout: Layout) -> Iterator[None]:
    """One `up` or `down` at a time per home: two racing `up`s would start two brokers."""
    path = layout.home / "run" / "infra.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


# --- public API -------------------------------------------------------------------------------


def provision(settings: Settings, progress: Progress = print) -> None:
    """The local broker's other principals (SCRAM credentials, as the administrator) with
    the passwords of the secrets file; idempotent. The worker's ACLs come with its topics
    (``greenlane topics create``)."""
    from confluent_kafka.admin import (
        ScramCredentialInfo,
        ScramMechanism,
        UserScramCredentialUpsertion,
    )

    admin_user = settings.kafka.admin_username
    users = [p for p in local_principals(settings) if p not in (admin_user, CONTROLLER_PRINCIPAL)]
    passwords = secrets.local_kafka_passwords(users)
    info = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 8192)
    upserts = [UserScramCredentialUpsertion(u, info, passwords[u].encode()) for u in users]
    client = AdminClient(settings.as_admin())
    for user, future in client.alter_user_scram_credentials(upserts).items():
        try:
            future.result(timeout=30)
        except KafkaException as exc:
            raise InfraError(f"creating the Kafka principal {user!r} failed: {exc}") from exc
    progress(f"Kafka principals ready: {', '.join([admin_user, *users])} (SCRAM-SHA-512)")


def up(settings: Settings, record: Path | None = None, progress: Progress = print) -> list[str]:
    """Start whichever local services are not running yet and wait until they answer.

    Returns the names of the services this call started; with ``record``, also appends them to
    that file, so that `make test` can later stop only what it started.
    """
    layout = Layout.of(settings)
    services = _services(settings)
    # a development machine's own secrets and local principals' passwords, never committed
    written = secrets.init_local(
        principals=() if settings.external_kafka else local_principals(settings)
    )
    if written:
        progress(f"secrets: wrote {', '.join(written)} to {secrets.secrets_file()}")
    if record is not None:
        append_record(record, [])
    with _locked(layout):
        waiting, absent = _survey(services, layout, progress)
        started: list[str] = []
        try:
            if absent:
                java = java_executable()
                # Fetch and configure everything first, then start both JVMs together.
                prepared = [(svc, _PREPARE[svc.name](settings, java, progress)) for svc in absent]
                for svc, (command, cwd) in prepared:
                    waiting.append(_launch(svc, layout, command, cwd, progress))
            timeout = settings.local.start_timeout_seconds
            deadline = time.monotonic() + timeout
            for starting in waiting:
                _await(starting, layout, deadline, timeout, progress)
                if starting.ours:
                    started.append(starting.service.name)
                    if record is not None:
                        append_record(record, [starting.service.name])
                local_kafka = starting.service.name == KAFKA and not starting.service.external
                if local_kafka and settings.kafka.sasl:
                    provision(settings, progress)
        except BaseException:
            for starting in waiting:
                if starting.ours and starting.service.name not in started:
                    _terminate(starting.pid)
                    layout.pid_file(starting.service.name).unlink(missing_ok=True)
            raise
    return started


def down(
    settings: Settings, only_recorded: Path | None = None, progress: Progress = print
) -> list[str]:
    """Stop our local services (all, or those named in ``only_recorded``, then delete it).

    Returns the names of the services it stopped. Processes greenlane did not start, and
    external services, are left alone.
    """
    layout = Layout.of(settings)
    services = _services(settings)
    names = list(SERVICES) if only_recorded is None else read_record(only_recorded)
    if only_recorded is not None and not names:
        progress(f"nothing recorded as started in {only_recorded}; stopping nothing")
    with _locked(layout):
        stopped: list[str] = []
        for name in reversed(SERVICES):
            svc = services[name]
            if name not in names:
                continue
            if svc.external:
                progress(f"{svc.title} is external at {svc.endpoint}; not stopping it")
                continue
            pid = _our_pid(name, layout, progress)
            if pid is None:
                progress(f"{svc.title}: not running from {layout.home} (no live pid file)")
                continue
            progress(f"stopping {svc.title} (pid {pid})...")
            how = _terminate(pid)
            layout.pid_file(name).unlink(missing_ok=True)
            progress(f"stopped {svc.title} ({how})")
            stopped.append(name)
    if only_recorded is not None:
        only_recorded.unlink(missing_ok=True)
    return stopped


def kill(settings: Settings, name: str) -> int | None:
    """SIGKILL our local service ``name`` (``kafka``, ``registry``), as a crash or outage
    would: for the tests of outages. Returns its pid, or None when it is not ours to kill
    (not running from here, or external). ``up`` starts it again."""
    svc = _services(settings)[name]
    if svc.external:
        return None
    layout = Layout.of(settings)
    pid = _our_pid(name, layout)
    if pid is None:
        return None
    os.kill(pid, signal.SIGKILL)
    _wait_exit(pid, STOP_GRACE_SECONDS)
    layout.pid_file(name).unlink(missing_ok=True)
    return pid


def status(settings: Settings) -> dict[str, str]:
    """One line per service, e.g. {"kafka": "ready at 127.0.0.1:9092 (pid 4242)"}."""
    layout = Layout.of(settings)
    report: dict[str, str] = {}
    for name, svc in _services(settings).items():
        if svc.external:
            answers = svc.answers(PROBE_SECONDS)
            report[name] = f"external at {svc.endpoint}: " + (
                "answers" if answers else "does NOT answer"
            )
            continue
        pid = _our_pid(name, layout)
        if _ready_now(svc, PROBE_SECONDS):
            whose = f"pid {pid}" if pid is not None else "not started by greenlane"
            report[name] = f"ready at {svc.endpoint} ({whose})"
        elif pid is not None:
            report[name] = (
                f"pid {pid} is running but does not answer at {svc.endpoint} yet "
                f"(log: {layout.log(name)})"
            )
        elif busy := [port for port, _ in svc.ports if _port_open("127.0.0.1", port)]:
            report[name] = f"not running; port {busy[0]} is taken by something else"
        else:
            report[name] = "not running"
    return report
