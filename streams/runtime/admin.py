"""Topics and schemas: what must exist on the broker and in the registry before traffic flows.

Both steps are idempotent so `make run` can call them on every start.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError

from greenlane.streams.domain.batch import ServiceUnavailable
from greenlane.streams.runtime import acls
from greenlane.streams.runtime.serde import SchemaFetcher
from greenlane.streams.settings import TOPIC_SCHEMAS, ConfigError, Settings, schema_path
from greenlane.streams.stages.targeting import load_agencies


def subject_for(topic: str) -> str:
    """Topic-name subject strategy: values of topic T are registered under 'T-value'."""
    return f"{topic}-value"


def registry_client(settings: Settings, retries: int | None = None) -> SchemaRegistryClient:
    """A client whose requests end after [registry] timeout_seconds: the Confluent client has no
    timeout of its own. ``retries``: its own retries of a failed request (default 3, each
    waited for); the worker passes 0, since it looks schemas up on its event loop and tries a
    batch again by itself, beating in between."""
    conf: dict = {"url": settings.registry_url, "timeout": settings.registry_timeout_seconds}
    if retries is not None:
        conf["max.retries"] = retries
    return SchemaRegistryClient(conf)


def broker_credentials(settings: Settings, principal: str | None = None) -> Any:
    """What a Faust app authenticates with (``faust.App(broker_credentials=...)``): the same
    principal, password and CA as ``settings.kafka_config(principal)``; None on PLAINTEXT."""
    import faust

    conf = settings.kafka_config(principal)
    context = None
    if settings.kafka.tls:
        context = ssl.create_default_context(cafile=conf.get("ssl.ca.location"))
    if settings.kafka.sasl:
        return faust.SASLCredentials(
            username=conf["sasl.username"],
            password=conf["sasl.password"],
            mechanism=settings.kafka.sasl_mechanism,
            ssl_context=context,
        )
    return faust.SSLCredentials(context) if context is not None else None


def admin_client(settings: Settings) -> AdminClient:
    return AdminClient(settings.as_admin())


def lag_consumer(settings: Settings) -> Consumer:
    """A consumer of the worker's group that never subscribes (so never joins it): it reads
    the group's committed offsets and the watermarks for the worker's lag (runtime.lag)."""
    return Consumer(
        {
            **settings.kafka_config(),
            "group.id": settings.worker.app_id,
            "client.id": f"{settings.worker.app_id}-lag",
            "enable.auto.commit": False,
        }
    )


def delete_run(settings: Settings, app_id: str) -> list[str]:
    """Delete a finished run's topics (its prefix and the app's changelogs) and its consumer
    group, waiting for the broker: a test or bench run leaves nothing behind to slow the next
    broker start. Returns what could not be deleted, one line each. Without a topic prefix
    every topic would match: refused."""
    if not settings.topics.prefix:
        raise ValueError("delete_run needs a topic prefix (GREENLANE_TOPIC_PREFIX): none is set")
    client = admin_client(settings)
    names = [
        t
        for t in client.list_topics(timeout=30).topics
        if t.startswith((settings.topics.prefix, app_id))
    ]
    failed = []
    if settings.kafka.sasl:
        try:
            acls.remove(
                client,
                acls.worker_acls(replace(settings, worker=replace(settings.worker, app_id=app_id))),
            )
        except KafkaException as exc:
            failed.append(f"ACLs of {app_id}: {exc}")
    futures = dict(client.delete_topics(names, operation_timeout=30)) if names else {}
    futures.update(client.delete_consumer_groups([app_id], request_timeout=30))
    for name, future in futures.items():
        try:
            future.result()
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.GROUP_ID_NOT_FOUND:
                failed.append(f"{name}: {exc.args[0].str()}")
    return failed


def referral_topics(settings: Settings) -> list[str]:
    """One topic per partner agency of the configured targeting folder."""
    agencies = load_agencies(settings.worker.targeting_path)
    return [settings.topics.referral(agency) for agency in agencies]


def create_topics(settings: Settings, partitions: int | None = None) -> list[str]:
    """Create every greenlane topic that does not exist yet, with its retention from the
    settings; returns those created. Existing topics keep their configuration."""
    admin = admin_client(settings)
    existing = set(admin.list_topics(timeout=30).topics)
    topics = settings.topics
    roles = {name: role for role, name in topics.all().items()}
    roles.update({name: "referral" for name in referral_topics(settings)})
    wanted = [
        NewTopic(
            name,
            num_partitions=partitions or topics.partitions,
            replication_factor=topics.replication_factor,
            config=topics.config(role),  # [topics.retention_days]
        )
        for name, role in roles.items()
        if name not in existing
    ]
    if not wanted:
        return []
    created = []
    for name, future in admin.create_topics(wanted, operation_timeout=30).items():
        try:
            future.result()
            created.append(name)
        except Exception as exc:
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise RuntimeError(f"could not create topic {name}: {exc}") from exc
    return created


def require_topics(settings: Settings) -> None:
    """ConfigError naming the worker's topics its principal cannot see (absent, or no ACL):
    the administrator creates them (``greenlane topics create``), never the worker."""
    seen = set(AdminClient(settings.kafka_config()).list_topics(timeout=30).topics)
    wanted = [*settings.topics.all().values(), *referral_topics(settings)]
    missing = [t for t in wanted if t not in seen]
    if missing:
        named = ", ".join(missing[:3]) + (", ..." if len(missing) > 3 else "")
        raise ConfigError(
            f"{settings.bootstrap_servers}: {len(missing)} topics absent or not readable by "
            f"{settings.kafka.username} ({named}): run `greenlane topics create` as the "
            "administrator first"
        )


def grant_worker(settings: Settings) -> str:
    """The worker principal's ACLs (runtime.acls) on a secured broker; says what it did. An
    unauthenticated broker, or one without an authorizer (SECURITY_DISABLED), lets every
    client do everything: nothing to grant."""
    if not settings.kafka.sasl:
        return "none needed (the broker does not authenticate)"
    bindings = acls.worker_acls(settings)
    try:
        acls.apply(admin_client(settings), bindings)
    except RuntimeError as exc:
        if "SECURITY_DISABLED" in str(exc):
            return "none needed (the broker has no authorizer)"
        raise
    return f"{len(bindings)} granted"


@dataclass(frozen=True)
class RegisteredSchemas:
    """Schema id per topic role, as the registry assigned them."""

    ids: dict[str, int]


def register_schemas(
    settings: Settings, client: SchemaRegistryClient | None = None
) -> RegisteredSchemas:
    """Register each topic's value schema (topic-name strategy) with the configured compatibility.

    A schema that breaks compatibility with what is registered is refused by the registry: the
    error says which subject and why, and nothing is half-registered for that subject.
    """
    client = client or registry_client(settings)
    ids: dict[str, int] = {}
    subjects = [(role, settings.topics.name(role)) for role in TOPIC_SCHEMAS]
    subjects += [("release", topic) for topic in referral_topics(settings)]  # decision copies
    for role, topic in subjects:
        subject = subject_for(topic)
        text = json.dumps(json.loads(schema_path(role).read_text()))
        try:
            ids.setdefault(role, client.register_schema(subject, Schema(text, "AVRO")))
        except SchemaRegistryError as exc:
            raise RuntimeError(
                f"schema registry refused {schema_path(role).name} for subject {subject}: "
                f"{exc.error_message} (HTTP {exc.http_status_code})"
            ) from exc
        client.set_compatibility(subject, settings.compatibility)
    return RegisteredSchemas(ids)


def schema_fetcher(client: SchemaRegistryClient) -> SchemaFetcher:
    """Looks a writer schema up by id; None when the registry does not know the id."""

    def fetch(schema_id: int) -> str | None:
        try:
            return client.get_schema(schema_id).schema_str
        except SchemaRegistryError as exc:
            if exc.http_status_code == 404:
                return None
            if exc.http_status_code >= 500 or exc.http_status_code < 0:
                raise ServiceUnavailable(f"schema registry: {exc}") from exc
            raise
        except Exception as exc:  # no answer at all: refused, reset, timed out
            raise ServiceUnavailable(
                f"schema registry unreachable: {type(exc).__name__}: {exc}"
            ) from exc

    return fetch


def prepare(
    settings: Settings, progress: Callable[[str], None] = print, partitions: int | None = None
) -> RegisteredSchemas:
    """Create topics (``partitions``: another count than the settings', for a bench), grant
    the worker's ACLs and register schemas: everything a worker or carrier needs to exist."""
    created = create_topics(settings, partitions)
    if created:
        progress(f"created {len(created)} topics ({settings.topics.partitions} partitions each)")
    progress(f"ACLs of {settings.kafka.username}: {grant_worker(settings)}")
    registered = register_schemas(settings)
    progress(
        f"schemas registered ({settings.compatibility}): "
        + ", ".join(f"{role}={sid}" for role, sid in registered.ids.items())
    )
    return registered
