"""All of greenlane's settings in one place: topic names, endpoints, batch bounds, local infra.

Settings are data (``greenlane.toml`` and the other files in this folder), validated when
loaded so that a typo fails at start with the file and key named, not deep inside a running worker.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, fields, replace
from functools import cache
from importlib.resources import files
from pathlib import Path
from typing import Any

SETTINGS_DIR = Path(__file__).parent
SCHEMAS_DIR = Path(str(files("greenlane.schemas")))


class ConfigError(ValueError):
    """A settings file is missing, malformed or holds a value of the wrong kind."""


@dataclass(frozen=True)
class Topics:
    prefix: str
    partitions: int
    replication_factor: int
    pre_loading: str
    pre_arrival: str
    release: str
    hold: str
    inspect: str
    carrier_response: str
    dead_letter: str
    inspection_outcome: str
    pattern_observation: str
    pattern_finding: str
    referral_prefix: str
    # (role, or "referral" for every agency's topic; days the broker keeps its records)
    retention_days: tuple[tuple[str, float], ...] = ()

    def name(self, role: str) -> str:
        """Full topic name (with prefix) of a role such as ``pre_arrival``."""
        if role not in TOPIC_SCHEMAS:
            raise KeyError(f"unknown topic role {role!r}; known: {sorted(TOPIC_SCHEMAS)}")
        return self.prefix + getattr(self, role)

    def referral(self, agency: str) -> str:
        """The topic on which a partner agency receives its referrals."""
        return self.prefix + self.referral_prefix + agency.replace("_", "-")

    def all(self) -> dict[str, str]:
        """Role -> full topic name, for every topic greenlane owns."""
        return {role: self.name(role) for role in TOPIC_SCHEMAS}

    def config(self, role: str) -> dict[str, str]:
        """The topic configuration greenlane creates a role's topic with ("referral": an
        agency's topic)."""
        days = dict(self.retention_days).get(role)
        return {"retention.ms": str(round(days * 86_400_000))} if days is not None else {}


# Which Avro schema (file in schemas/) each topic's values carry.
TOPIC_SCHEMAS: dict[str, str] = {
    "pre_loading": "pre_loading_filing.avsc",
    "pre_arrival": "pre_arrival_declaration.avsc",
    "release": "risk_decision.avsc",
    "hold": "risk_decision.avsc",
    "inspect": "risk_decision.avsc",
    "carrier_response": "carrier_response.avsc",
    "dead_letter": "dead_letter.avsc",
    "inspection_outcome": "inspection_outcome.avsc",
    # internal: declarations re-keyed by seller, and what the seller's partition found
    "pattern_observation": "pattern_observation.avsc",
    "pattern_finding": "pattern_finding.avsc",
}


@dataclass(frozen=True)
class Worker:
    app_id: str
    batch_max: int
    batch_within_seconds: float
    metrics_host: str
    metrics_port: int
    session_timeout_seconds: float
    standby_replicas: int
    targeting_dir: str
    profile_check_seconds: float
    link_retention_days: float
    summary_retention_days: float
    replay_log_minutes: float
    data_dir: str
    table_store: str
    rocksdb_block_cache_mb: int
    rocksdb_write_buffer_mb: int
    max_output_bytes: int
    dead_letter_keep_bytes: int
    publish_retry_max_seconds: float
    stop_timeout_seconds: float
    stall_seconds: float
    lag_alert_seconds: float
    batches_in_flight: int
    retrain_cron: str
    retrain_timeout_minutes: float

    settings_dir: str = ""

    @property
    def targeting_path(self) -> Path | None:
        return Path(os.path.expanduser(self.targeting_dir)) if self.targeting_dir else None

    def settings_file(self, name: str) -> Path:
        """A settings file or folder (``lanes.yaml``, ``lists``): the deployment's own in
        ``settings_dir`` when it has one, else the one shipped in streams/settings."""
        if self.settings_dir:
            own = Path(os.path.expanduser(self.settings_dir)) / name
            if own.exists():
                return own
        return SETTINGS_DIR / name


SECURITY_PROTOCOLS = ("SASL_PLAINTEXT", "SASL_SSL", "SSL", "PLAINTEXT")
SASL_MECHANISMS = ("SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN")


@dataclass(frozen=True)
class Kafka:
    """How this process reaches and authenticates to the broker (its password is a secret)."""

    security_protocol: str
    sasl_mechanism: str
    username: str
    admin_username: str
    ca_file: str

    @property
    def sasl(self) -> bool:
        return self.security_protocol.startswith("SASL_")

    @property
    def tls(self) -> bool:
        return self.security_protocol in ("SASL_SSL", "SSL")


@dataclass(frozen=True)
class Local:
    home: str
    kafka_version: str
    kafka_port: int
    kafka_tls_port: int
    kafka_controller_port: int
    kafka_heap: str
    registry_version: str
    registry_port: int
    registry_heap: str
    start_timeout_seconds: int

    @property
    def home_path(self) -> Path:
        return Path(os.path.expanduser(self.home))


@dataclass(frozen=True)
class Settings:
    bootstrap_servers: str
    registry_url: str
    compatibility: str
    topics: Topics
    worker: Worker
    local: Local
    # True when KAFKA_BOOTSTRAP_SERVERS / SCHEMA_REGISTRY_URL name external services.
    external_kafka: bool
    external_registry: bool
    # One request to the registry may take this long (the worker waits on it between batches).
    registry_timeout_seconds: float
    kafka: Kafka

    def kafka_config(self, principal: str | None = None) -> dict[str, Any]:
        """librdkafka settings of a client: the bootstrap servers and, on a secured cluster,
        the credentials of ``principal`` (default: ``[kafka] username``; the set-up and the
        development tools pass ``kafka.admin_username``). Every confluent-kafka client of
        greenlane is configured here."""
        k = self.kafka
        conf: dict[str, Any] = {
            "bootstrap.servers": self.bootstrap_servers,
            "security.protocol": k.security_protocol,
        }
        if k.sasl:
            from greenlane.streams.settings.secrets import kafka_password

            user = principal or k.username
            variable = {k.username: PASSWORD_ENV, k.admin_username: ADMIN_PASSWORD_ENV}.get(user)
            conf |= {
                "sasl.mechanism": k.sasl_mechanism,
                "sasl.username": user,
                "sasl.password": kafka_password(user, variable),
            }
        if k.tls and k.ca_file:
            conf["ssl.ca.location"] = os.path.expanduser(k.ca_file)
        return conf

    def as_admin(self) -> dict[str, Any]:
        """``kafka_config`` of the administrator (topics, ACLs, the tests' own reads)."""
        return self.kafka_config(self.kafka.admin_username)


PASSWORD_ENV = "GREENLANE_KAFKA_PASSWORD"  # the password of [kafka] username
ADMIN_PASSWORD_ENV = "GREENLANE_KAFKA_ADMIN_PASSWORD"  # of [kafka] admin_username
# [kafka] key -> the environment variable that overrides it (a deployment's own principal)
KAFKA_ENV = {
    "security_protocol": "GREENLANE_KAFKA_SECURITY_PROTOCOL",
    "sasl_mechanism": "GREENLANE_KAFKA_SASL_MECHANISM",
    "username": "GREENLANE_KAFKA_USERNAME",
    "ca_file": "GREENLANE_KAFKA_CA_FILE",
}


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def read_toml(path: Path) -> dict[str, Any]:
    """Parse a TOML file, naming the file in the error."""
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: settings file not found") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc


def read_yaml(path: Path, what: str = "settings") -> Any:
    """Parse a YAML file, naming the file (and what it holds) in the error."""
    import yaml  # only the YAML-configured stages need it

    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: {what} not found") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc


def build_section(cls: type, data: dict[str, Any], where: str) -> Any:
    """Build a dataclass from a TOML table, checking names and types of every key."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a table")
    known = {f.name: f for f in fields(cls)}
    unknown = set(data) - set(known)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {sorted(unknown)}; known: {sorted(known)}")
    missing = set(known) - set(data)
    if missing:
        raise ConfigError(f"{where}: missing key(s) {sorted(missing)}")
    values = {}
    for name, f in known.items():
        value = data[name]
        expected = {"int": int, "float": (int, float), "str": str, "bool": bool}.get(str(f.type))
        if expected is not None and (
            not isinstance(value, expected) or (expected is int and isinstance(value, bool))
        ):
            raise ConfigError(f"{where}.{name}: expected {f.type}, got {value!r}")
        values[name] = float(value) if f.type == "float" else value
    return cls(**values)


def load_settings(extra: Path | None = None, env: dict[str, str] | None = None) -> Settings:
    """Defaults, then the GREENLANE_SETTINGS file (or ``extra``), then environment endpoints."""
    env = dict(os.environ) if env is None else env
    source = SETTINGS_DIR / "greenlane.toml"
    data = read_toml(source)
    override_path = extra or (
        Path(env["GREENLANE_SETTINGS"]) if env.get("GREENLANE_SETTINGS") else None
    )
    if override_path is not None:
        data = _merge(data, read_toml(override_path))
        source = override_path
    where = str(source)
    try:
        topics_data = dict(data["topics"])
        if "GREENLANE_TOPIC_PREFIX" in env:
            topics_data["prefix"] = env["GREENLANE_TOPIC_PREFIX"]
        topics = build_section(Topics, topics_data, f"{where}: [topics]")
        worker_data = dict(data["worker"])
        if "GREENLANE_METRICS_HOST" in env:  # containers serve metrics on 0.0.0.0
            worker_data["metrics_host"] = env["GREENLANE_METRICS_HOST"]
        worker = build_section(Worker, worker_data, f"{where}: [worker]")
        local = build_section(Local, data["local"], f"{where}: [local]")
        bootstrap = env.get("KAFKA_BOOTSTRAP_SERVERS") or data["kafka"]["bootstrap_servers"]
        kafka_data = {k: v for k, v in data["kafka"].items() if k != "bootstrap_servers"}
        for key, variable in KAFKA_ENV.items():
            if env.get(variable):
                kafka_data[key] = env[variable]
        kafka = build_section(Kafka, kafka_data, f"{where}: [kafka]")
        registry = env.get("SCHEMA_REGISTRY_URL") or data["registry"]["url"]
        compatibility = data["registry"]["compatibility"]
        registry_timeout = data["registry"]["timeout_seconds"]
    except KeyError as exc:
        raise ConfigError(f"{where}: missing section or key {exc}") from exc
    if not isinstance(registry_timeout, int | float) or not 0 < registry_timeout <= 120:
        raise ConfigError(f"{where}: [registry] timeout_seconds must be a number in (0, 120]")
    if not isinstance(topics.retention_days, dict):
        raise ConfigError(f"{where}: [topics.retention_days] must be a table of role = days")
    for role, days in topics.retention_days.items():
        if role not in TOPIC_SCHEMAS and role != "referral":
            raise ConfigError(
                f"{where}: [topics.retention_days] {role}: not a topic role; known: "
                f"{sorted([*TOPIC_SCHEMAS, 'referral'])}"
            )
        if isinstance(days, bool) or not isinstance(days, int | float) or days <= 0:
            raise ConfigError(
                f"{where}: [topics.retention_days] {role}: expected a number of days > 0, "
                f"got {days!r}"
            )
    topics = replace(
        topics, retention_days=tuple((r, float(d)) for r, d in topics.retention_days.items())
    )
    if kafka.security_protocol not in SECURITY_PROTOCOLS:
        raise ConfigError(
            f"{where}: [kafka] security_protocol {kafka.security_protocol!r}: expected one of "
            f"{', '.join(SECURITY_PROTOCOLS)}"
        )
    if kafka.sasl and kafka.sasl_mechanism not in SASL_MECHANISMS:
        raise ConfigError(
            f"{where}: [kafka] sasl_mechanism {kafka.sasl_mechanism!r}: expected one of "
            f"{', '.join(SASL_MECHANISMS)}"
        )
    if kafka.sasl and not (kafka.username and kafka.admin_username):
        raise ConfigError(f"{where}: [kafka] username and admin_username must not be empty")
    if topics.partitions < 1 or topics.replication_factor < 1:
        raise ConfigError(f"{where}: [topics] partitions and replication_factor must be >= 1")
    if worker.session_timeout_seconds < 6:  # Faust heartbeats every 3 s
        raise ConfigError(f"{where}: [worker] session_timeout_seconds must be >= 6")
    if worker.table_store not in ("rocksdb://", "memory://"):
        raise ConfigError(
            f'{where}: [worker] table_store must be "rocksdb://" or "memory://", '
            f"not {worker.table_store!r}"
        )
    if worker.rocksdb_block_cache_mb < 1 or worker.rocksdb_write_buffer_mb < 1:
        raise ConfigError(f"{where}: [worker] rocksdb_*_mb must be >= 1")
    if not 1024 <= worker.dead_letter_keep_bytes <= worker.max_output_bytes // 2:
        raise ConfigError(
            f"{where}: [worker] dead_letter_keep_bytes must be between 1024 and half of "
            f"max_output_bytes ({worker.max_output_bytes // 2})"
        )
    if worker.batches_in_flight < 1:
        raise ConfigError(f"{where}: [worker] batches_in_flight must be >= 1")
    if worker.standby_replicas < 0:
        raise ConfigError(f"{where}: [worker] standby_replicas must be >= 0")
    if worker.retrain_cron:
        from croniter import croniter

        if not croniter.is_valid(worker.retrain_cron):
            raise ConfigError(
                f"{where}: [worker] retrain_cron {worker.retrain_cron!r} is not a cron expression "
                '(minute hour day month weekday, e.g. "0 3 * * *"; "" for none)'
            )
    for key in (
        "publish_retry_max_seconds",
        "stop_timeout_seconds",
        "stall_seconds",
        "lag_alert_seconds",
        "retrain_timeout_minutes",
    ):
        if getattr(worker, key) <= 0:
            raise ConfigError(f"{where}: [worker] {key} must be > 0")
    if worker.batch_max < 1 or worker.batch_within_seconds <= 0:
        raise ConfigError(f"{where}: [worker] batch_max must be >= 1 and batch_within_seconds > 0")
    return Settings(
        bootstrap_servers=bootstrap,
        registry_url=registry.rstrip("/"),
        compatibility=compatibility,
        topics=topics,
        worker=worker,
        local=local,
        external_kafka=bool(env.get("KAFKA_BOOTSTRAP_SERVERS")),
        external_registry=bool(env.get("SCHEMA_REGISTRY_URL")),
        registry_timeout_seconds=float(registry_timeout),
        kafka=kafka,
    )


@cache
def settings() -> Settings:
    """The process-wide settings, loaded once."""
    return load_settings()


def schema_path(role: str) -> Path:
    """The .avsc file of a topic role."""
    return SCHEMAS_DIR / TOPIC_SCHEMAS[role]
