"""The local broker as a hostile network needs it: SCRAM on every listener, TLS on one, and
nothing allowed that an ACL does not allow."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import replace

import pytest
from confluent_kafka import Consumer, KafkaException, Producer
from confluent_kafka.admin import (
    AclBinding,
    AclOperation,
    AclPermissionType,
    AdminClient,
    NewTopic,
    ResourcePatternType,
    ResourceType,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialUpsertion,
)

from greenlane.streams.runtime import acls
from greenlane.streams.settings import Settings, load_settings
from tests.integration.conftest import open_harness

pytestmark = pytest.mark.integration

PROBE = 8.0  # seconds a refused client is given to get anywhere


@pytest.fixture(scope="module")
def settings() -> Settings:
    s = load_settings()
    if s.external_kafka or not s.kafka.sasl:
        pytest.skip("the local secured broker only")
    return s


def tls_address(s: Settings) -> str:
    return f"127.0.0.1:{s.local.kafka_tls_port}"


def refused(conf: dict) -> str | None:
    """None when a client of ``conf`` gets the broker's metadata within PROBE seconds, else
    the first error librdkafka reports (a refusal is reported at once)."""
    errors: list = []
    client = AdminClient({**conf, "error_cb": errors.append, "logger": _Quiet()})
    deadline = time.monotonic() + PROBE
    while time.monotonic() < deadline and not errors:
        try:
            client.list_topics(timeout=0.5)
            return None
        except KafkaException:
            client.poll(0)  # serves error_cb
    return errors[0].name() if errors else "NO_ANSWER"


# the broker closes a connection that does not speak its listener's protocol
CLOSED = {"_ALL_BROKERS_DOWN", "_TRANSPORT"}


class _Quiet:
    def log(self, *args, **kwargs) -> None:  # librdkafka's refusal lines are expected here
        pass


def test_tls_listener_takes_scram_over_tls_and_refuses_the_rest(settings):
    tls = replace(
        settings,
        bootstrap_servers=tls_address(settings),
        kafka=replace(settings.kafka, security_protocol="SASL_SSL"),
    )
    over_tls = tls.as_admin()
    assert over_tls["ssl.ca.location"].endswith("ca.pem")
    assert refused(over_tls) is None
    # plaintext to the TLS listener: refused, with or without credentials
    assert refused({"bootstrap.servers": tls_address(settings)}) in CLOSED
    assert refused({**settings.as_admin(), "bootstrap.servers": tls_address(settings)}) in CLOSED
    # without the local CA the broker's certificate is not trusted: refused
    assert refused({k: v for k, v in over_tls.items() if k != "ssl.ca.location"}) == "_SSL"


def test_the_sasl_listener_refuses_anonymous_clients_and_wrong_passwords(settings):
    assert refused(settings.as_admin()) is None
    assert refused({"bootstrap.servers": settings.bootstrap_servers}) in CLOSED
    wrong = {**settings.as_admin(), "sasl.password": "not-the-password-0000"}
    assert refused(wrong) == "_AUTHENTICATION"


@pytest.fixture
def stranger(settings) -> Iterator[tuple[str, dict]]:
    """A principal that authenticates but has no ACL, and a topic of the test's own. The
    principal is kept (a new password each run): Kafka 4.1.1 loses every SCRAM credential on
    its next restart once one has been deleted."""
    admin = AdminClient(settings.as_admin())
    name, password = "it-stranger", uuid.uuid4().hex
    info = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 8192)
    upsert = UserScramCredentialUpsertion(name, info, password.encode())
    admin.alter_user_scram_credentials([upsert])[name].result(timeout=30)
    topic = f"it-sec-{uuid.uuid4().hex[:8]}"
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(timeout=30)
    conf = {**settings.as_admin(), "sasl.username": name, "sasl.password": password}
    try:
        yield topic, conf
    finally:
        admin.delete_topics([topic])[topic].result(timeout=30)


def produced(conf: dict, topic: str) -> str | None:
    """None when the broker took a record from ``conf``'s principal, else the error's name."""
    errors: list = []
    producer = Producer({**conf, "message.timeout.ms": int(PROBE * 1000), "logger": _Quiet()})
    producer.produce(topic, b"v", b"k", on_delivery=lambda err, _m: errors.append(err))
    producer.flush(PROBE + 5)
    return errors[0].name() if errors and errors[0] is not None else None


DENIED = {"TOPIC_AUTHORIZATION_FAILED", "GROUP_AUTHORIZATION_FAILED"}


def consumed(conf: dict, topic: str, group: str | None = None) -> str | None:
    """None when ``conf``'s principal may read ``topic`` in ``group`` (default: one of its
    own), else the error's name."""
    group = group or f"it-sec-{uuid.uuid4().hex[:8]}"
    c = Consumer({**conf, "group.id": group, "logger": _Quiet()})
    c.subscribe([topic])
    try:
        for _ in range(int(PROBE * 2)):
            m = c.poll(0.5)
            if m is not None and m.error():
                return m.error().name()
            if c.assignment():
                return None
        return "NO_ASSIGNMENT"
    finally:
        c.close()


def test_deny_by_default_until_an_acl_allows(settings, stranger):
    topic, conf = stranger
    assert refused(conf) is None  # authenticated...
    assert produced(conf, topic) == "TOPIC_AUTHORIZATION_FAILED"  # ...but allowed nothing
    assert consumed(conf, topic) in DENIED
    admin = AdminClient(settings.as_admin())
    who = f"User:{conf['sasl.username']}"
    grants = [
        AclBinding(ResourceType.TOPIC, topic, ResourcePatternType.LITERAL, who, "*", op, allow)
        for op, allow in ((AclOperation.WRITE, AclPermissionType.ALLOW),)
    ]
    acls.apply(admin, grants)
    try:
        assert produced(conf, topic) is None
        assert consumed(conf, topic) in DENIED  # WRITE is not READ
    finally:
        acls.remove(admin, grants)


def test_the_worker_writes_decisions_but_cannot_read_them_nor_file(tmp_path_factory):
    """The worker principal's own ACLs, as `greenlane topics create` grants them (on a test
    run's own topics, deleted afterwards)."""
    with open_harness(tmp_path_factory, start=False) as h:
        worker, group = h.settings.kafka_config(), h.settings.worker.app_id
        release = h.settings.topics.name("release")
        assert produced(worker, release) is None
        assert consumed(worker, release, group) == "TOPIC_AUTHORIZATION_FAILED"
        filing = h.settings.topics.name("pre_arrival")
        assert produced(worker, filing) == "TOPIC_AUTHORIZATION_FAILED"
        assert consumed(worker, filing, group) is None
        assert consumed(worker, filing) == "GROUP_AUTHORIZATION_FAILED"  # only its own group
