"""Who may do what on the broker: the ACLs greenlane's principals need, and nothing more.

The local broker denies by default (StandardAuthorizer, ``allow.everyone.if.no.acl.found``
false): a principal can only do what an ACL here allows. ``worker_acls`` is a pure function of
the settings (its topics and its app id), so a test run's prefixed topics get the same rules
as a deployment's; ``apply`` creates them (idempotent: the broker keeps one copy of each).
"""

from __future__ import annotations

import time

from confluent_kafka import KafkaException
from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
)

from greenlane.streams.settings import Settings

# what the worker reads: the carriers' filings, the officers' outcomes, its own internal topics
WORKER_READS = (
    "pre_loading",
    "pre_arrival",
    "inspection_outcome",
    "pattern_observation",
    "pattern_finding",
)
# what it writes: decisions, answers, dead letters, its internal topics
WORKER_WRITES = (
    "release",
    "hold",
    "inspect",
    "carrier_response",
    "dead_letter",
    "pattern_observation",
    "pattern_finding",
)


def _allow(
    principal: str,
    kind: ResourceType,
    name: str,
    operation: AclOperation,
    pattern: ResourcePatternType = ResourcePatternType.LITERAL,
) -> AclBinding:
    return AclBinding(
        kind, name, pattern, f"User:{principal}", "*", operation, AclPermissionType.ALLOW
    )


def worker_acls(settings: Settings) -> list[AclBinding]:
    """The worker's: read filings and outcomes, write decisions, answers, dead letters and the
    agencies' referral topics; its consumer group; and everything under its app id (the
    changelog topics and Faust's leader topic, which Faust creates itself)."""
    who = settings.kafka.username
    topics = settings.topics
    topic, group = ResourceType.TOPIC, ResourceType.GROUP
    prefixed = ResourcePatternType.PREFIXED
    app_id = settings.worker.app_id
    out = [_allow(who, topic, topics.name(r), AclOperation.READ) for r in WORKER_READS]
    out += [_allow(who, topic, topics.name(r), AclOperation.WRITE) for r in WORKER_WRITES]
    referrals = topics.prefix + topics.referral_prefix
    out.append(_allow(who, topic, referrals, AclOperation.WRITE, prefixed))
    out.append(_allow(who, topic, f"{app_id}-", AclOperation.ALL, prefixed))
    out.append(_allow(who, group, app_id, AclOperation.READ))
    out.append(_allow(who, group, app_id, AclOperation.DESCRIBE))
    return out


def apply(admin: AdminClient, bindings: list[AclBinding], wait_seconds: float = 30.0) -> None:
    """Create ``bindings`` on the broker (``admin``: an AdminClient of the administrator) and
    wait until the broker enforces them: the controller commits an ACL before the broker's
    authorizer has read it from the metadata log, and a client allowed by it would be refused
    in between."""
    if not bindings:
        return
    for binding, future in admin.create_acls(bindings, request_timeout=30).items():
        try:
            future.result()
        except KafkaException as exc:
            raise RuntimeError(f"the broker refused the ACL {binding}: {exc}") from exc
    wanted = {_identity(b) for b in bindings}
    everything = AclBindingFilter(
        ResourceType.ANY, None, ResourcePatternType.ANY, None, None,
        AclOperation.ANY, AclPermissionType.ANY,
    )  # fmt: skip
    deadline = time.monotonic() + wait_seconds
    while True:
        seen = {_identity(b) for b in admin.describe_acls(everything, request_timeout=30).result()}
        if wanted <= seen:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"the broker does not enforce {len(wanted - seen)} new ACLs yet")
        time.sleep(0.1)


def _identity(b: AclBinding) -> tuple:
    return (b.restype, b.name, b.resource_pattern_type, b.principal, b.host, b.operation)


def remove(admin: AdminClient, bindings: list[AclBinding]) -> None:
    """Delete exactly ``bindings`` (a finished test or bench run's), ignoring absent ones."""
    filters = [
        AclBindingFilter(
            b.restype, b.name, b.resource_pattern_type, b.principal, b.host, b.operation,
            b.permission_type,
        )
        for b in bindings
    ]  # fmt: skip
    if filters:
        for future in admin.delete_acls(filters, request_timeout=30).values():
            future.result()
