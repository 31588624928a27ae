"""The settings loader's [topics.retention_days]: validated at load, given to topic creation."""

from __future__ import annotations

import pytest

from greenlane.streams.settings import ConfigError, load_settings
from greenlane.streams.settings.secrets import init_local


def loaded(tmp_path, text: str):
    extra = tmp_path / "extra.toml"
    extra.write_text(text)
    return load_settings(extra, env={})


def test_each_role_is_created_with_its_retention_and_an_override_changes_one(tmp_path):
    s = loaded(tmp_path, "[topics.retention_days]\ndead_letter = 2.5\n")
    assert s.topics.config("dead_letter") == {"retention.ms": str(int(2.5 * 86_400_000))}
    assert s.topics.config("carrier_response") == {"retention.ms": str(7 * 86_400_000)}
    assert "retention.ms" in s.topics.config("referral")
    hash(s.topics)  # settings stay hashable (cached functions take them)


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("[topics.retention_days]\ndecisions = 3\n", "decisions: not a topic role"),
        ("[topics.retention_days]\nhold = 0\n", "hold: expected a number of days > 0"),
        ('[topics.retention_days]\nhold = "long"\n', "hold: expected a number of days > 0"),
        ("[topics]\nretention_days = 3\n", "must be a table of role = days"),
    ],
)
def test_a_wrong_retention_names_the_file_and_the_role(tmp_path, text: str, said: str):
    with pytest.raises(ConfigError) as err:
        loaded(tmp_path, text)
    assert said in str(err.value) and "extra.toml" in str(err.value)


def test_client_settings_name_the_principal_and_take_its_password_from_the_secrets(
    tmp_path, monkeypatch
):
    """Every confluent-kafka client is configured by Settings.kafka_config: on a secured
    cluster the process's own principal, or the administrator's, each with its own password."""
    secrets = tmp_path / "secrets.toml"
    init_local(secrets, principals=("greenlane-worker", "greenlane-admin"))
    env = {
        "GREENLANE_SECRETS_FILE": str(secrets),
        "GREENLANE_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "GREENLANE_KAFKA_CA_FILE": "/etc/greenlane/ca.pem",
    }
    for variable, value in env.items():
        monkeypatch.setenv(variable, value)
    s = load_settings()
    own, admin = s.kafka_config(), s.as_admin()
    assert own["security.protocol"] == "SASL_SSL" and own["sasl.mechanism"] == "SCRAM-SHA-512"
    assert own["sasl.username"] == "greenlane-worker"
    assert admin["sasl.username"] == "greenlane-admin"
    assert len(own["sasl.password"]) >= 16 and own["sasl.password"] != admin["sasl.password"]
    assert own["ssl.ca.location"] == "/etc/greenlane/ca.pem"
    monkeypatch.setenv("GREENLANE_KAFKA_PASSWORD", "from-the-secret-store-1234")
    monkeypatch.setenv("GREENLANE_KAFKA_USERNAME", "carrier-gb-post")
    s = load_settings()
    assert s.kafka_config()["sasl.username"] == "carrier-gb-post"
    assert s.kafka_config()["sasl.password"] == "from-the-secret-store-1234"
    assert s.as_admin()["sasl.password"] == admin["sasl.password"]
    plain = load_settings(env={"GREENLANE_KAFKA_SECURITY_PROTOCOL": "PLAINTEXT"})
    assert "sasl.username" not in plain.kafka_config()


@pytest.mark.parametrize(
    "variable, value, said",
    [
        ("GREENLANE_KAFKA_SECURITY_PROTOCOL", "TLS", "security_protocol 'TLS': expected one of"),
        ("GREENLANE_KAFKA_SASL_MECHANISM", "MD5", "sasl_mechanism 'MD5': expected one of"),
    ],
)
def test_wrong_client_security_is_refused_at_load(variable, value, said):
    env = {"GREENLANE_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", variable: value}
    with pytest.raises(ConfigError, match=said):
        load_settings(env=env)


def test_a_missing_password_names_the_principal_and_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("GREENLANE_SECRETS_FILE", str(tmp_path / "none.toml"))
    env = {"GREENLANE_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT"}
    said = r"GREENLANE_KAFKA_PASSWORD is not set, nor .*'greenlane-worker'"
    with pytest.raises(ConfigError, match=said):
        load_settings(env=env).kafka_config()
