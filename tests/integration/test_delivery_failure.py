"""A batch whose outputs the broker refuses is never acknowledged: the worker stops, and once
the cause is fixed the filing is decided after all."""

from __future__ import annotations

import subprocess

import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource, ResourceType

from greenlane.streams.runtime import admin
from tests.integration.conftest import Harness
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
    c = Consumer({"bootstrap.servers": harness.settings.bootstrap_servers, "group.id": "it-wm"})
    try:
        parts = c.list_topics(topic, timeout=10).topics[topic].partitions
        return {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in parts}
    finally:
        c.close()


def committed(harness: Harness, topic: str, partition: int) -> int:
    c = Consumer(
        {
            "bootstrap.servers": harness.settings.bootstrap_servers,
            "group.id": harness.settings.worker.app_id,
        }
    )
    try:
        [tp] = c.committed([TopicPartition(topic, partition)], timeout=10)
        return tp.offset
    finally:
        c.close()


def test_an_undeliverable_batch_stops_the_worker_unacknowledged_and_is_decided_later(harness):
    [w] = waybills(1)
    harness.send("pre_loading", [risky_pre_loading(w)])  # its pre-arrival will go to INSPECT
    harness.read(DECISIONS, lambda rs: any(r["house_waybill"] == w for r in rs))
    inspect = harness.settings.topics.name("inspect")
    set_max_message_bytes(harness, inspect, "64")  # every decision is larger
    try:
        topic = harness.settings.topics.name("pre_arrival")
        before = watermarks(harness, topic)
        harness.send("pre_arrival", [arrival(w)])
        after = watermarks(harness, topic)
        [(partition, offset)] = [(p, before[p]) for p in after if after[p] > before[p]]

        try:  # a worker that went on past the batch would never exit: the bound only ends that
            code = harness.worker.process.wait(timeout=600)
        except subprocess.TimeoutExpired:
            pytest.fail("the worker went on past an undelivered batch")
        assert code != 0
        assert "batch failed, stopping without acknowledging it" in harness.log.read_text()
        assert committed(harness, topic, partition) <= offset  # not acknowledged
    finally:
        set_max_message_bytes(harness, inspect, None)

    harness.start_worker()  # the cause is fixed: the filing is read again and decided
    recs = harness.read(
        ["inspect"],
        lambda rs: any(r["house_waybill"] == w and r["stage"] == "PRE_ARRIVAL" for r in rs),
    )
    [decided] = [r for r in recs if r["house_waybill"] == w and r["stage"] == "PRE_ARRIVAL"]
    assert decided["route"] == "INSPECT"
