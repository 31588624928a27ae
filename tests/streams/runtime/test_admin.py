"""runtime.admin without a broker: what it refuses before it connects."""

from __future__ import annotations

import os

import pytest

from greenlane.streams.runtime import admin
from greenlane.streams.settings import load_settings


def test_deleting_a_run_without_a_topic_prefix_is_refused_before_any_request():
    env = {k: v for k, v in os.environ.items() if k != "GREENLANE_TOPIC_PREFIX"}
    settings = load_settings(env={**env, "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"})
    assert settings.topics.prefix == ""
    with pytest.raises(ValueError, match="topic prefix"):
        admin.delete_run(settings, "greenlane")
