"""Secrets come from the environment or a file only its owner reads; none has a default."""

from __future__ import annotations

import os
import stat

import pytest

from greenlane.streams.domain.pseudonyms import Pseudonymiser
from greenlane.streams.settings import ConfigError
from greenlane.streams.settings.secrets import SPECS, init_local, secret


def test_environment_first_then_the_file(tmp_path):
    path = tmp_path / "secrets.toml"
    env = {"GREENLANE_SECRETS_FILE": str(path)}
    with pytest.raises(ConfigError) as missing:
        secret("pseudonymisation_key", env)
    message = str(missing.value)
    assert "GREENLANE_PSEUDONYMISATION_KEY is not set" in message and str(path) in message
    assert "greenlane secrets init" in message and "\n" not in message

    assert init_local(path) == list(SPECS)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    from_file = secret("pseudonymisation_key", env)
    assert len(from_file) >= 32 and from_file != secret("lanes_key", env)
    assert init_local(path) == []  # kept: a new key would cut the history off
    assert secret("pseudonymisation_key", env) == from_file
    env["GREENLANE_PSEUDONYMISATION_KEY"] = "from-the-secret-store-0123"
    assert secret("pseudonymisation_key", env) == "from-the-secret-store-0123"


def test_refuses_short_values_and_a_file_others_can_read(tmp_path):
    path = tmp_path / "secrets.toml"
    with pytest.raises(ConfigError, match="GREENLANE_LANES_KEY: expected a string of at least"):
        secret("lanes_key", {"GREENLANE_LANES_KEY": "short"})
    init_local(path)
    os.chmod(path, 0o644)
    with pytest.raises(ConfigError, match="readable by others"):
        secret("lanes_key", {"GREENLANE_SECRETS_FILE": str(path)})


def test_init_adds_only_what_is_missing(tmp_path):
    path = tmp_path / "secrets.toml"
    path.write_text('lanes_key = "a-lanes-key-set-by-hand-000"\n')
    os.chmod(path, 0o600)
    assert init_local(path) == ["pseudonymisation_key"]
    env = {"GREENLANE_SECRETS_FILE": str(path)}
    assert secret("lanes_key", env) == "a-lanes-key-set-by-hand-000"


def test_digests_are_keyed_stable_and_per_role():
    a, b = Pseudonymiser("key-a-0123456789"), Pseudonymiser("key-b-0123456789")
    assert a("importer", "Jane Example") == a("importer", "Jane Example")
    assert a("importer", "Jane Example") != b("importer", "Jane Example")
    assert a("a b", "c") != a("a", "b c")
    assert a.party("seller", " gb123 ", "ignored") == a.party("seller", "GB123", "other")
    assert a.party("seller", None, "Shop", "CN") != a.party("importer", None, "Shop", "CN")
    assert a.derive("table seal v1") != a.derive("party digests v1")
