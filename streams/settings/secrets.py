"""Secrets: from the environment or a file outside the repository, never from settings in git.

Each secret has an environment variable; when it is not set, the secrets file is read
(``GREENLANE_SECRETS_FILE``, by default ``~/.cache/greenlane/secrets.toml``, which must be
readable by its owner only). A production deployment sets the variables (from its secret
store); ``greenlane secrets init`` writes random ones to the file for a development machine,
and ``greenlane infra up`` (``make run``, ``make test``) calls it. A secret that is missing is
a one-line error naming the variable and the file, never a default: a default key in the code
would be a key everybody knows.
"""

from __future__ import annotations

import os
import secrets as _random
import stat
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from greenlane.streams.domain.pseudonyms import Pseudonymiser
from greenlane.streams.settings import ConfigError

FILE_ENV = "GREENLANE_SECRETS_FILE"
DEFAULT_FILE = "~/.cache/greenlane/secrets.toml"
MIN_LENGTH = 16
KAFKA_PASSWORDS = "kafka_passwords"


@dataclass(frozen=True)
class SecretSpec:
    env: str
    what: str


SPECS: dict[str, SecretSpec] = {
    "lanes_key": SecretSpec(
        "GREENLANE_LANES_KEY",
        "the random-selection key (whoever knows it can tell which consignments escape "
        "random selection)",
    ),
    "pseudonymisation_key": SecretSpec(
        "GREENLANE_PSEUDONYMISATION_KEY",
        "the pseudonymisation key (keyed digests of consignees and sellers, and the seal on "
        "the worker's tables)",
    ),
}


def secrets_file(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    return Path(os.path.expanduser(env.get(FILE_ENV) or DEFAULT_FILE))


def _read(path: Path) -> dict:
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return {}
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(f"{path}: readable by others (mode {oct(mode & 0o777)}); chmod 600 it")
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the secrets file: {exc}") from exc


def _checked(value: object, where: str) -> str:
    if not isinstance(value, str) or len(value) < MIN_LENGTH:
        raise ConfigError(f"{where}: expected a string of at least {MIN_LENGTH} characters")
    return value


def secret(name: str, env: Mapping[str, str] | None = None) -> str:
    """The secret ``name`` (a key of SPECS): its environment variable, else the secrets file."""
    env = os.environ if env is None else env
    spec = SPECS[name]
    if env.get(spec.env):
        return _checked(env[spec.env], spec.env)
    path = secrets_file(env)
    data = _read(path)
    if name not in data:
        raise ConfigError(
            f"{spec.env} is not set, nor {name} in {path}: {spec.what}. Set it from your "
            "secret store (`greenlane secrets init` writes local ones on a development machine)"
        )
    return _checked(data[name], f"{path}: {name}")


def kafka_password(
    principal: str, variable: str | None = None, env: Mapping[str, str] | None = None
) -> str:
    """The broker password of ``principal``: ``variable`` (GREENLANE_KAFKA_PASSWORD for the
    process's own principal) when set, else the secrets file's ``[kafka_passwords]`` entry."""
    env = os.environ if env is None else env
    if variable and env.get(variable):
        return env[variable]
    path = secrets_file(env)
    passwords = _read(path).get(KAFKA_PASSWORDS, {})
    if principal not in passwords:
        named = f"{variable} is not set, nor" if variable else "no"
        raise ConfigError(
            f"{named} password for the Kafka principal {principal!r} in {path} "
            f"[{KAFKA_PASSWORDS}]: set it from your secret store (`greenlane infra up` creates "
            "the local broker's principals)"
        )
    return _checked(passwords[principal], f"{path}: [{KAFKA_PASSWORDS}] {principal}")


def init_local(path: Path | None = None, principals: tuple[str, ...] = ()) -> list[str]:
    """Write a random value for every secret the file lacks, and a password for every one
    of ``principals`` (mode 600, written whole); returns what was written. Existing values
    are kept: a new pseudonymisation key would cut the labelled history off."""
    path = path or secrets_file()
    data = _read(path)
    passwords = dict(data.get(KAFKA_PASSWORDS, {}))
    written = [name for name in SPECS if name not in data]
    new_users = [p for p in principals if p not in passwords]
    if not written and not new_users:
        return []
    top = {k: v for k, v in data.items() if not isinstance(v, dict)}
    top |= {name: _random.token_urlsafe(32) for name in written}
    passwords |= {p: new_password() for p in new_users}
    lines = ["# greenlane's local secrets (`greenlane secrets init`): never commit, never share."]
    lines += [f"{k} = {_quoted(v)}" for k, v in top.items()]
    if passwords:
        lines += ["", f"[{KAFKA_PASSWORDS}]"]
        lines += [f"{_quoted(k)} = {_quoted(v)}" for k, v in passwords.items()]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write("\n".join(lines) + "\n")
    os.replace(tmp, path)
    return written + [f"{KAFKA_PASSWORDS}.{p}" for p in new_users]


def new_password() -> str:
    return _random.token_urlsafe(24)


def local_kafka_passwords(principals: tuple[str, ...] | list[str]) -> dict[str, str]:
    """The secrets file's passwords of these principals (the local broker's)."""
    return {p: kafka_password(p) for p in principals}


def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


@cache
def pseudonymiser() -> Pseudonymiser:
    """The process's pseudonymiser, keyed once by ``pseudonymisation_key``."""
    return Pseudonymiser(secret("pseudonymisation_key"))
