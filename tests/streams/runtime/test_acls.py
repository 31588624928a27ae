"""The worker's ACLs: exactly what it reads and writes, under the run's own names."""

from __future__ import annotations

from confluent_kafka.admin import AclOperation, ResourcePatternType, ResourceType

from greenlane.streams.runtime.acls import worker_acls
from greenlane.streams.settings import load_settings


def grants(env: dict[str, str]) -> set[tuple[str, str, str, str]]:
    s = load_settings(env=env)
    out = set()
    for b in worker_acls(s):
        assert b.principal == f"User:{s.kafka.username}" and b.host == "*"
        out.add((b.restype.name, b.name, b.resource_pattern_type.name, b.operation.name))
    return out


def test_the_worker_reads_filings_writes_decisions_and_owns_its_app_id():
    g = grants({"GREENLANE_TOPIC_PREFIX": "run-1."})
    topic, lit, pre = ResourceType.TOPIC.name, ResourcePatternType.LITERAL.name, "PREFIXED"
    read, write = AclOperation.READ.name, AclOperation.WRITE.name
    assert (topic, "run-1.greenlane.filing.pre-arrival", lit, read) in g
    assert (topic, "run-1.greenlane.decision.hold", lit, write) in g
    assert (topic, "run-1.greenlane.referral.", pre, write) in g
    assert (topic, "greenlane-worker-", pre, AclOperation.ALL.name) in g  # its changelogs
    assert ("GROUP", "greenlane-worker", lit, read) in g
    # never the other way round: it does not file, and does not read decisions or answers
    for name in ("filing.pre-arrival", "filing.pre-loading"):
        assert (topic, f"run-1.greenlane.{name}", lit, write) not in g
    for name in ("decision.hold", "decision.inspect", "decision.release", "carrier.response"):
        assert (topic, f"run-1.greenlane.{name}", lit, read) not in g
    assert not [x for x in g if x[2] == pre and x[1] in ("", "run-1.", "run-1.greenlane.")]
