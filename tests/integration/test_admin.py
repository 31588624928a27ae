"""runtime.admin against the real broker: what a run creates, it can take away again."""

from __future__ import annotations

import pytest
from confluent_kafka import Consumer, TopicPartition

from greenlane.streams.runtime import admin
from tests.factories import pre_arrival
from tests.integration.conftest import open_harness

pytestmark = pytest.mark.integration


def test_a_finished_run_leaves_no_topics_or_group_behind(tmp_path_factory):
    """What keeps the broker's start time flat from one test run to the next."""
    with open_harness(tmp_path_factory, start=False) as h:
        s = h.settings
        h.send("pre_arrival", [pre_arrival("DR1")])
        group = Consumer({**s.as_admin(), "group.id": s.worker.app_id})
        group.commit(
            offsets=[TopicPartition(s.topics.name("pre_arrival"), 0, 1)], asynchronous=False
        )
        group.close()
    client = admin.admin_client(s)
    assert not [t for t in client.list_topics(timeout=30).topics if t.startswith(s.topics.prefix)]
    groups = client.list_consumer_groups(request_timeout=30).result().valid
    assert s.worker.app_id not in {g.group_id for g in groups}


def test_topics_are_created_with_the_retention_of_their_role(tmp_path_factory):
    """[topics.retention_days], applied by `greenlane topics create` (admin.prepare)."""
    from confluent_kafka.admin import ConfigResource

    with open_harness(tmp_path_factory, start=False) as h:
        s = h.settings
        client = admin.admin_client(s)
        wanted = {
            role: s.topics.config(role)["retention.ms"]
            for role in ("pre_arrival", "dead_letter", "carrier_response")
        }
        resources = [ConfigResource(ConfigResource.Type.TOPIC, s.topics.name(r)) for r in wanted]
        found = {
            resource.name: config["retention.ms"].value
            for resource, future in client.describe_configs(resources).items()
            for config in [future.result(30)]
        }
        assert found == {s.topics.name(r): ms for r, ms in wanted.items()}
        assert wanted["carrier_response"] == str(7 * 86_400_000)
        for topic in admin.referral_topics(s):
            resource = ConfigResource(ConfigResource.Type.TOPIC, topic)
            config = client.describe_configs([resource])[resource].result(30)
            assert config["retention.ms"].value == s.topics.config("referral")["retention.ms"]
