"""The settings loader's [topics.retention_days]: validated at load, given to topic creation."""

from __future__ import annotations

import pytest

from greenlane.streams.settings import ConfigError, load_settings


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
