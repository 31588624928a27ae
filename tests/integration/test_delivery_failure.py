"""An output the broker refuses for itself (larger than its topic accepts) is not lost and does
not stop the worker: it is dead-lettered whole, and the batch is acknowledged once every one
of its outputs is accounted for."""

from __future__ import annotations

import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource, ResourceType

from greenlane.streams.runtime import admin
from tests.integration.conftest import Harness, wait_until
from tests.integration.test_worker import DECISIONS, arrival, risky_pre_loading, waybills

pytestmark = pytest.mark.integration


def set_max_message_bytes(harness: Harness, topic: str, value: str | None) -> None:
    op = AlterConfigOpType.SET if value is not None else AlterConfigOpType.DELETE
    entry = ConfigEntry("max.message.bytes", value or "", incremental_operation=op)
    resource = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[entry])
    client = admin.admin_client(harness.settings)
    for future in client.incremental_alter_configs([resource]).values():
        future.result(timeout=30)


def watermarks(harness: Harness, topic: str) -> dict[int, int]:
    c = Consumer({**harness.settings.as_admin(), "group.id": "it-wm"})
    try:
        parts = c.list_topics(topic, timeout=10).topics[topic].partitions
        return {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in parts}
    finally:
        c.close()


def committed(harness: Harness, topic: str, partition: int) -> int:
    c = Consumer(
        {
            **harness.settings.as_admin(),
            "group.id": harness.settings.worker.app_id,
        }
    )
    try:
        [tp] = c.committed([TopicPartition(topic, partition)], timeout=10)
        return tp.offset
    finally:
        c.close()


def test_an_output_the_broker_refuses_is_dead_lettered_and_the_worker_goes_on(harness):
    [w, later] = waybills(2)
    harness.send("pre_loading", [risky_pre_loading(w), risky_pre_loading(later)])
    harness.read(DECISIONS, lambda rs: {w, later} <= {r["house_waybill"] for r in rs})
    inspect = harness.settings.topics.name("inspect")
    set_max_message_bytes(harness, inspect, "64")  # every decision is larger
    try:
        topic = harness.settings.topics.name("pre_arrival")
        before = watermarks(harness, topic)
        harness.send("pre_arrival", [arrival(w)])
        after = watermarks(harness, topic)
        [(partition, offset)] = [(p, before[p]) for p in after if after[p] > before[p]]

        def unpublishable(recs: list[dict]) -> bool:
            return any(r["error_code"] == "OUTPUT_UNPUBLISHABLE" for r in recs)

        [dead] = [
            r
            for r in harness.read(["dead_letter"], unpublishable)
            if r["error_code"] == "OUTPUT_UNPUBLISHABLE"
        ]
        assert dead["source_topic"] == inspect
        assert "refused by the broker" in dead["error_message"]
        assert dead["original_key"] == w.encode()
        assert w.encode() in dead["original_value"]  # the whole decision is kept
        responses = harness.read(
            ["carrier_response"],
            lambda rs: any(r["house_waybill"] == w and r["stage"] == "PRE_ARRIVAL" for r in rs),
        )
        assert responses
        wait_until(
            lambda: committed(harness, topic, partition) > offset,
            "the batch to be acknowledged once its outputs are accounted for",
        )
        assert harness.worker.process.poll() is None, "the worker goes on"
    finally:
        set_max_message_bytes(harness, inspect, None)

    harness.send("pre_arrival", [arrival(later)])  # the limit is lifted: decisions flow again
    recs = harness.read(
        ["inspect"],
        lambda rs: any(r["house_waybill"] == later and r["stage"] == "PRE_ARRIVAL" for r in rs),
    )
    [decided] = [r for r in recs if r["house_waybill"] == later and r["stage"] == "PRE_ARRIVAL"]
    assert decided["route"] == "INSPECT"
