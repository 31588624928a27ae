"""The self-starting local broker and registry: generated files, process bookkeeping, real runs."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient

from greenlane.streams.devtools import infra
from greenlane.streams.devtools.launcher import free_port
from greenlane.streams.settings import Settings, load_settings


def local_settings(
    home: Path,
    kafka_port: int,
    controller_port: int,
    registry_port: int,
    tls_port: int | None = None,
    **env: str,
) -> Settings:
    """Settings for a private broker and registry under ``home`` on the given ports."""
    base = load_settings(env=env)
    local = replace(
        base.local,
        home=str(home),
        kafka_port=kafka_port,
        kafka_tls_port=tls_port or free_port(),
        kafka_controller_port=controller_port,
        registry_port=registry_port,
    )
    return replace(
        base,
        kafka=replace(base.kafka, ca_file=str(home / "tls" / "ca.pem")),
        local=local,
        bootstrap_servers=env.get("KAFKA_BOOTSTRAP_SERVERS", f"127.0.0.1:{kafka_port}"),
        registry_url=env.get(
            "SCHEMA_REGISTRY_URL", f"http://127.0.0.1:{registry_port}/apis/ccompat/v7"
        ),
    )


@pytest.fixture(autouse=True)
def own_secrets(tmp_path: Path, monkeypatch) -> None:
    """A private broker's principals have passwords of their own, never the shared file's."""
    monkeypatch.setenv("GREENLANE_SECRETS_FILE", str(tmp_path / "secrets.toml"))


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return local_settings(tmp_path / "home", free_port(), free_port(), free_port())


def parse_properties(text: str) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#"))
    return {key.strip(): value.strip() for key, value in pairs}


def quiet(_message: str) -> None:
    pass


# --- generated configuration and command lines ------------------------------------------------


def test_server_properties_follow_settings_and_bind_loopback_only(settings: Settings) -> None:
    local = settings.local
    passwords = {p: f"pw-{p}" for p in infra.local_principals(settings)}
    props = parse_properties(infra.kafka_server_properties(settings, passwords, "store-pw"))
    assert props["listeners"] == (
        f"SASL_PLAINTEXT://127.0.0.1:{local.kafka_port},"
        f"SASL_SSL://127.0.0.1:{local.kafka_tls_port},"
        f"CONTROLLER://127.0.0.1:{local.kafka_controller_port}"
    )
    assert props["advertised.listeners"] == (
        f"SASL_PLAINTEXT://127.0.0.1:{local.kafka_port},SASL_SSL://127.0.0.1:{local.kafka_tls_port}"
    )
    # deny by default; the administrator and the node itself are the only super users
    assert props["allow.everyone.if.no.acl.found"] == "false"
    assert props["super.users"] == (
        f"User:{settings.kafka.admin_username};User:{infra.CONTROLLER_PRINCIPAL}"
    )
    assert "PLAINTEXT:PLAINTEXT" not in props["listener.security.protocol.map"]
    assert props["sasl.enabled.mechanisms"] == "SCRAM-SHA-512"
    admin_password = passwords[settings.kafka.admin_username]
    assert (
        f'password="{admin_password}"'
        in props["listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config"]
    )
    # --standalone formatting conflicts with a static voter set
    assert (
        props["controller.quorum.bootstrap.servers"] == f"127.0.0.1:{local.kafka_controller_port}"
    )
    assert "controller.quorum.voters" not in props
    assert Path(props["log.dirs"]) == local.home_path / "kafka" / "data"
    assert int(props["num.partitions"]) == settings.topics.partitions
    assert props["offsets.topic.replication.factor"] == "1"
    assert props.get("auto.create.topics.enable", "true") == "true"
    assert not any("$" in value or "0.0.0.0" in value for value in props.values())


def test_registry_keeps_schemas_in_a_file_database_under_home(settings: Settings) -> None:
    props = parse_properties(infra.registry_properties(settings))
    url = props["apicurio.datasource.url"]
    assert url.startswith(f"jdbc:h2:file:{settings.local.home_path / 'registry' / 'data'}")
    assert ":mem:" not in url
    assert props["apicurio.storage.kind"] == "sql"


def test_kafka_command_line(settings: Settings) -> None:
    layout = infra.Layout.of(settings)
    command = infra.kafka_command(settings, "/opt/java/bin/java")
    assert command[0] == "/opt/java/bin/java"
    assert f"-Xmx{settings.local.kafka_heap}" in command
    classpath = command[command.index("-cp") + 1]
    assert classpath == f"{layout.home}/kafka-{settings.local.kafka_version}/lib/*"
    assert command[-2:] == ["kafka.Kafka", str(layout.home / "kafka" / "server.properties")]
    assert f"-Dlog4j2.configurationFile={layout.kafka_log4j}" in command
    # down() must recognise the process it started from its command line
    assert all(marker in " ".join(command) for marker in layout.markers(infra.KAFKA))


def test_registry_command_line(settings: Settings) -> None:
    layout = infra.Layout.of(settings)
    command = infra.registry_command(settings, "java")
    assert "-Dquarkus.http.host=127.0.0.1" in command
    assert f"-Dquarkus.http.port={settings.local.registry_port}" in command
    assert f"-Xmx{settings.local.registry_heap}" in command
    jar = Path(command[command.index("-jar") + 1])
    assert jar.parent == layout.home / f"registry-{settings.local.registry_version}"
    assert all(marker in " ".join(command) for marker in layout.markers(infra.REGISTRY))
    # another home's registry is not ours
    other = infra.Layout(layout.home.with_name("other"), "x", "y")
    assert not all(marker in " ".join(command) for marker in other.markers(infra.REGISTRY))


def test_java_comes_from_java_home_when_set(tmp_path: Path, monkeypatch) -> None:
    java = tmp_path / "jdk" / "bin" / "java"
    java.parent.mkdir(parents=True)
    java.write_text("#!/bin/sh\n")
    java.chmod(0o755)
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "jdk"))
    assert infra.java_executable() == str(java)
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "nowhere"))
    with pytest.raises(infra.InfraError, match="JAVA_HOME"):
        infra.java_executable()


# --- settings that cannot work ----------------------------------------------------------------


def test_clients_pointed_away_from_the_local_broker_is_an_error(settings: Settings) -> None:
    wrong = replace(settings, bootstrap_servers=f"127.0.0.1:{settings.local.kafka_port + 1}")
    with pytest.raises(infra.InfraError, match=r"\[local\]\.kafka_port.*KAFKA_BOOTSTRAP_SERVERS"):
        infra.up(wrong, progress=quiet)


def test_external_service_that_does_not_answer_starts_nothing(tmp_path: Path) -> None:
    silent = f"127.0.0.1:{free_port()}"
    settings = local_settings(
        tmp_path / "home",
        free_port(),
        free_port(),
        free_port(),
        KAFKA_BOOTSTRAP_SERVERS=silent,
        GREENLANE_KAFKA_SECURITY_PROTOCOL="PLAINTEXT",
    )
    assert settings.external_kafka
    with pytest.raises(infra.InfraError, match=f"{silent}.*KAFKA_BOOTSTRAP_SERVERS"):
        infra.up(settings, progress=quiet)
    assert not list((tmp_path / "home").glob("run/*.pid"))
    assert infra.status(settings)["kafka"] == f"external at {silent}: does NOT answer"


def test_port_held_by_something_else_is_reported_not_reused(
    settings: Settings, monkeypatch
) -> None:
    monkeypatch.setattr(infra, "PROBE_SECONDS", 0.5)
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", settings.local.kafka_port))
        squatter.listen()
        with pytest.raises(infra.InfraError, match=f"port {settings.local.kafka_port} .*Kafka"):
            infra.up(settings, progress=quiet)
        assert "taken by something else" in infra.status(settings)["kafka"]
    assert not infra.Layout.of(settings).pid_file(infra.KAFKA).exists()


def test_infra_error_names_the_log_and_quotes_its_end(tmp_path: Path) -> None:
    log = tmp_path / "kafka.log"
    log.write_text("".join(f"line {i}\n" for i in range(100)))
    message = str(infra.InfraError("Kafka exited", log))
    assert message.startswith("Kafka exited")
    assert str(log) in message
    assert "line 99" in message and "line 80" not in message


# --- records and pid files --------------------------------------------------------------------


def test_record_file_lists_each_started_service_once(tmp_path: Path) -> None:
    record = tmp_path / "deep" / "started"
    assert infra.read_record(record) == []
    infra.append_record(record, [])
    assert record.exists() and infra.read_record(record) == []
    infra.append_record(record, ["registry"])
    infra.append_record(record, ["kafka", "registry"])
    assert infra.read_record(record) == ["kafka", "registry"]


@pytest.fixture
def fake_kafka(settings: Settings) -> Iterator[subprocess.Popen[bytes]]:
    """A harmless process whose command line looks like our broker's, with a pid file."""
    layout = infra.Layout.of(settings)
    process = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)", *layout.markers(infra.KAFKA)]
    )
    pid_file = layout.pid_file(infra.KAFKA)
    pid_file.parent.mkdir(parents=True)
    pid_file.write_text(f"{process.pid}\n")
    yield process
    process.kill()
    process.wait()


def test_down_only_recorded_stops_only_what_the_record_names(
    settings: Settings, fake_kafka: subprocess.Popen[bytes], tmp_path: Path
) -> None:
    record = tmp_path / "started"
    infra.append_record(record, ["registry"])
    assert infra.down(settings, only_recorded=record, progress=quiet) == []
    assert not record.exists()
    assert fake_kafka.poll() is None  # not recorded: left running

    assert infra.down(settings, only_recorded=record, progress=quiet) == []  # no record: no-op
    assert fake_kafka.poll() is None

    messages: list[str] = []
    assert infra.down(settings, progress=messages.append) == ["kafka"], messages
    assert fake_kafka.wait(timeout=5) == -15  # SIGTERM, not SIGKILL
    assert not infra.Layout.of(settings).pid_file(infra.KAFKA).exists()
    assert any(f"stopping Kafka (pid {fake_kafka.pid})" in m for m in messages)


def test_a_recycled_pid_of_an_exited_child_is_judged_afresh(
    fake_kafka: subprocess.Popen[bytes], monkeypatch
) -> None:
    """pid_max wraps (32768 here): an old child's pid can later belong to a live process."""
    exited = subprocess.Popen([sys.executable, "-c", "pass"])
    exited.wait()
    monkeypatch.setitem(infra._CHILDREN, fake_kafka.pid, exited)
    assert infra._alive(fake_kafka.pid)
    assert fake_kafka.pid not in infra._CHILDREN


def test_pid_file_of_someone_elses_process_is_stale(settings: Settings) -> None:
    """A recycled pid must never be signalled: only our command line counts."""
    stranger = subprocess.Popen(["sleep", "60"])
    try:
        pid_file = infra.Layout.of(settings).pid_file(infra.REGISTRY)
        pid_file.parent.mkdir(parents=True)
        pid_file.write_text(f"{stranger.pid}\n")
        assert infra.status(settings)["registry"] == "not running"
        assert not pid_file.exists()
        pid_file.write_text(f"{stranger.pid}\n")
        assert infra.down(settings, progress=quiet) == []
        assert not pid_file.exists()
        assert stranger.poll() is None
    finally:
        stranger.kill()
        stranger.wait()


# --- the real thing ---------------------------------------------------------------------------


@pytest.fixture
def private_infra(tmp_path: Path) -> Iterator[Settings]:
    """A broker and registry of our own: temporary home, ports apart from the shared ones."""
    if shutil.which("java") is None or shutil.which("mvn") is None:
        pytest.skip("needs java and mvn")
    settings = local_settings(tmp_path / "home", 29092, 29093, 28081, 29094)
    yield settings
    infra.down(settings, progress=quiet)  # whatever happened above


def produce_and_register(settings: Settings, topic: str) -> int:
    admin = AdminClient({**settings.as_admin()})
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(timeout=30)
    producer = Producer({**settings.as_admin()})
    producer.produce(topic, b"consignment", b"HWB-1", partition=0)
    assert producer.flush(30) == 0
    schema = Schema('{"type": "record", "name": "Probe", "fields": []}', "AVRO")
    return SchemaRegistryClient({"url": settings.registry_url}).register_schema(
        f"{topic}-value", schema
    )


def read_back(settings: Settings, topic: str) -> bytes | None:
    consumer = Consumer({**settings.as_admin(), "group.id": topic})
    consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is not None and not message.error():
                return message.value()
        return None
    finally:
        consumer.close()


def test_set_up_logs_never_show_a_password(tmp_path: Path) -> None:
    log = tmp_path / "format.log"
    infra._run_logged(
        ["true", "--add-scram", "name=a,password=s3cret-pw"], log, "x", hide=("s3cret-pw",)
    )
    assert "s3cret-pw" not in log.read_text() and "password=***" in log.read_text()


@pytest.mark.integration
def test_up_is_idempotent_and_data_survives_down_and_up(
    private_infra: Settings, tmp_path: Path
) -> None:
    settings = private_infra
    layout = infra.Layout.of(settings)
    record = tmp_path / "started-by-test"
    messages: list[str] = []

    assert infra.up(settings, record=record, progress=messages.append) == ["kafka", "registry"]
    assert infra.read_record(record) == ["kafka", "registry"]
    # the broker's configuration holds passwords: its owner's alone; its set-up logs hide them
    assert layout.kafka_properties.stat().st_mode & 0o077 == 0
    admin_password = settings.as_admin()["sasl.password"]
    assert admin_password not in layout.log("kafka-format").read_text()
    assert admin_password in layout.kafka_properties.read_text()
    assert any(m.startswith("Kafka ready at 127.0.0.1:29092 (") for m in messages)
    assert any(m.startswith(f"Schema registry ready at {settings.registry_url}") for m in messages)
    report = infra.status(settings)
    assert report["kafka"].startswith("ready at 127.0.0.1:29092 (pid ")
    assert report["registry"].startswith(f"ready at {settings.registry_url} (pid ")
    topic = f"infra-{uuid.uuid4().hex[:8]}"
    schema_id = produce_and_register(settings, topic)

    messages.clear()
    assert infra.up(settings, record=record, progress=messages.append) == []  # starts nothing
    assert not any("downloading" in m or "starting" in m for m in messages)
    assert infra.read_record(record) == ["kafka", "registry"]

    assert infra.down(settings, only_recorded=record, progress=quiet) == ["registry", "kafka"]
    assert not record.exists()
    assert infra.status(settings) == {"kafka": "not running", "registry": "not running"}
    assert not layout.pid_file("kafka").exists() and not layout.pid_file("registry").exists()

    # A clean stop lets the broker start again; records and schema ids are still there.
    messages.clear()
    assert infra.up(settings, progress=messages.append) == ["kafka", "registry"]
    assert not any("downloading" in m or "formatting" in m for m in messages)
    fresh_client = SchemaRegistryClient({"url": settings.registry_url})
    assert "Probe" in fresh_client.get_schema(schema_id).schema_str
    assert read_back(settings, topic) == b"consignment"
    assert infra.down(settings, progress=quiet) == ["registry", "kafka"]

    # A broker that dies while starting fails the call at once, and takes the registry it was
    # started with down again.
    broken = replace(settings, local=replace(settings.local, kafka_heap="1k"))
    with pytest.raises(infra.InfraError, match="Kafka exited with code 1") as failure:
        infra.up(broken, progress=quiet)
    assert str(layout.log("kafka")) in str(failure.value)
    assert infra.status(settings) == {"kafka": "not running", "registry": "not running"}


def test_local_pid_names_only_our_running_broker(settings: Settings) -> None:
    """The bench reads the broker's CPU through it: never a stranger's process, never an
    external broker's."""
    assert infra.local_pid(settings, infra.KAFKA) is None  # nothing started
    stranger = subprocess.Popen(["sleep", "60"])
    try:
        pid_file = infra.Layout.of(settings).pid_file(infra.KAFKA)
        pid_file.parent.mkdir(parents=True)
        pid_file.write_text(f"{stranger.pid}\n")
        assert infra.local_pid(settings, infra.KAFKA) is None
    finally:
        stranger.kill()
    external = replace(settings, external_kafka=True, bootstrap_servers="kafka.example:9092")
    assert infra.local_pid(external, infra.KAFKA) is None
