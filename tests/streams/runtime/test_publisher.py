"""Publishing: changelog before outputs, outputs in batch order, nothing given up, nothing too
large produced, each batch's delivery its own."""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time
from dataclasses import replace
from io import BytesIO

import pytest
from confluent_kafka import KafkaError
from fastavro import parse_schema, schemaless_reader

from greenlane.streams.core.outcomes import dead_letter_record
from greenlane.streams.domain.batch import BatchOutcome, InboundMessage
from greenlane.streams.runtime import publisher as publishing
from greenlane.streams.runtime.publisher import OUTPUT_UNPUBLISHABLE, Delivery, Publisher
from greenlane.streams.runtime.serde import load_schema, strip_logical_types
from greenlane.streams.settings import schema_path, settings


class Report:
    """What confluent-kafka hands a delivery callback."""

    def __init__(self, topic, partition, offset, key=None, value=None) -> None:
        self._t, self._p, self._o, self._k, self._v = topic, partition, offset, key, value

    def topic(self):
        return self._t

    def partition(self):
        return self._p

    def offset(self):
        return self._o

    def key(self):
        return self._k

    def value(self):
        return self._v


class Table:
    def __init__(self) -> None:
        self.confirmed: list[dict[int, int]] = []

    def persisted(self, offsets: dict[int, int]) -> None:
        self.confirmed.append(dict(offsets))


class FakeProducer:
    """Takes records like confluent-kafka's Producer; the test plays the broker."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes | None, bytes | None, int, object]] = []
        self.offset = 0

    def produce(self, topic, value, key, partition, on_delivery) -> None:
        self.sent.append((topic, key, value, partition, on_delivery))

    def poll(self, timeout: float) -> int:
        time.sleep(timeout)
        return 0

    def flush(self, timeout: float) -> int:
        return 0

    def confirm(self, n: int | None = None, error=None, start: int = 0) -> None:
        """Report the records from ``start`` (first ``n``), all delivered or all refused."""
        for topic, key, value, partition, cb in self.sent[start : None if n is None else start + n]:
            self.offset += 1
            cb(error, Report(topic, max(partition, 0), self.offset, key, value))

    def topics(self) -> list[str]:
        return [t for t, *_ in self.sent]


class Refusal:
    """A KafkaError lookalike with its code."""

    def __init__(self, code: int, text: str) -> None:
        self._code, self._text = code, text

    def code(self) -> int:
        return self._code

    def __str__(self) -> str:
        return self._text


IDS = {"release": 11, "carrier_response": 12, "dead_letter": 13}
IDS |= {"pattern_observation": 14, "pattern_finding": 15}


def make(max_output_bytes: int = 1_000_000) -> tuple[Publisher, FakeProducer]:
    s = settings()
    keep = min(s.worker.dead_letter_keep_bytes, max_output_bytes // 2)
    worker = replace(s.worker, max_output_bytes=max_output_bytes, dead_letter_keep_bytes=keep)
    s = replace(s, worker=worker)
    fake = FakeProducer()
    return Publisher(s, IDS, producer=fake), fake


def decode(role: str, value: bytes) -> dict:
    schema = parse_schema(strip_logical_types(load_schema(schema_path(role))))
    return schemaless_reader(BytesIO(value[5:]), schema)


def dead_letter(value: bytes = b"v") -> tuple[bytes, dict]:
    msg = InboundMessage(b"k", value, "greenlane.filing.pre-arrival", 0, 5, 0)
    return b"k", dead_letter_record(msg, "UNDECODABLE", "no header", None, None, 0)


async def settle() -> None:
    """Let the publishing tasks run as far as they can without the broker."""
    for _ in range(3):
        await asyncio.sleep(0.02)


def test_confirmed_after_the_last_report_with_changelog_offsets_per_partition() -> None:
    async def scenario() -> Table:
        loop = asyncio.get_running_loop()
        table = Table()
        d = Delivery(loop)
        d._tables["links-changelog"] = table
        for _ in range(3):
            d._sent()
        future = d.seal()
        reports = [("links-changelog", 1, 7), ("links-changelog", 1, 9), ("decisions", 0, 3)]

        def broker() -> None:  # reports arrive on the producer's poll thread
            for topic, p, o in reports:
                d.on_delivery(None, Report(topic, p, o))

        await asyncio.sleep(0)
        assert not future.done()
        thread = threading.Thread(target=broker)
        thread.start()
        await asyncio.wait_for(future, 5)
        thread.join()
        d.persist()
        return table

    table = asyncio.run(scenario())
    assert table.confirmed == [{1: 9}]


def test_outputs_wait_for_their_changelog_and_keep_the_order_of_the_batches() -> None:
    async def scenario() -> tuple[list[str], list[bool]]:
        pub, fake = make()
        first, second = pub.begin(), pub.begin()
        table = Table()
        for batch, n in ((first, b"1"), (second, b"2")):
            batch.changelog(table, "links-changelog", 0, n, b"{}")
            batch.outcome(BatchOutcome(dead_letters=[dead_letter(n)]))
        one = await first.send()
        two = await second.send()
        await settle()
        # only the changelog records are out: no output before its changelog is durable
        assert fake.topics() == ["links-changelog", "links-changelog"]
        fake.confirm(1, start=1)  # the second batch's changelog first
        await settle()
        assert len(fake.sent) == 2, "batch 2's outputs wait for batch 1's"
        fake.confirm(1, start=0)
        await settle()
        assert len(fake.sent) == 4
        order = [decode("dead_letter", v)["original_value"] for _, _, v, _, _ in fake.sent[2:]]
        fake.confirm(start=2)
        await asyncio.wait_for(asyncio.gather(one, two), 5)
        pub.close(1)
        return [o.decode() for o in order], [one.done(), two.done()], table

    order, done, table = asyncio.run(scenario())
    assert order == ["1", "2"]
    assert done == [True, True]
    assert table.confirmed == [{0: 1}, {0: 2}]  # each batch once its own changelog is in


def test_a_refused_record_is_produced_again_until_the_broker_takes_it(monkeypatch) -> None:
    monkeypatch.setattr(publishing, "FIRST_RETRY_SECONDS", 0.01)

    async def scenario() -> tuple[int, bool]:
        pub, fake = make()
        batch = pub.begin()
        batch.changelog(Table(), "links-changelog", 0, b"k", b"{}")
        confirmed = await batch.send()
        await settle()
        fake.confirm(error=Refusal(KafkaError._MSG_TIMED_OUT, "Local: Message timed out"))
        await asyncio.sleep(0.1)
        assert not confirmed.done(), "a refused changelog record is never given up"
        assert len(fake.sent) == 2  # produced again
        fake.confirm(start=1)
        await asyncio.wait_for(confirmed, 5)
        pub.close(1)
        return len(fake.sent), confirmed.done()

    sent, done = asyncio.run(scenario())
    assert (sent, done) == (2, True)


def test_an_output_the_broker_refuses_for_its_size_becomes_a_dead_letter(monkeypatch) -> None:
    monkeypatch.setattr(publishing, "FIRST_RETRY_SECONDS", 0.01)

    async def scenario() -> dict:
        pub, fake = make()
        batch = pub.begin()
        batch.outcome(BatchOutcome(dead_letters=[dead_letter(b"x" * 3000)]))
        confirmed = await batch.send()
        await settle()
        too_large = Refusal(KafkaError.MSG_SIZE_TOO_LARGE, "Broker: Message size too large")
        fake.confirm(error=too_large)
        await asyncio.sleep(0.1)
        fake.confirm(start=1)
        await asyncio.wait_for(confirmed, 5)
        pub.close(1)
        return decode("dead_letter", fake.sent[1][2])

    replaced = asyncio.run(scenario())
    assert replaced["error_code"] == OUTPUT_UNPUBLISHABLE
    assert "Message size too large" in replaced["error_message"]


def test_an_output_larger_than_the_limit_is_never_produced() -> None:
    async def scenario() -> list[tuple[str, bytes]]:
        pub, fake = make(max_output_bytes=20_000)
        batch = pub.begin()
        batch.outcome(BatchOutcome(dead_letters=[dead_letter()]))
        # an output of 30 KB (a carrier response made huge by a defect)
        batch.outputs.append(pub.bounded(("responses", b"k", b"y" * 30_000, -1)))
        confirmed = await batch.send()
        await settle()
        fake.confirm()
        await asyncio.wait_for(confirmed, 5)
        pub.close(1)
        return [(t, v) for t, _, v, _, _ in fake.sent]

    sent = asyncio.run(scenario())
    assert len(sent) == 2
    assert all(len(v) <= 20_000 for _, v in sent)
    last = decode("dead_letter", sent[-1][1])
    assert last["error_code"] == OUTPUT_UNPUBLISHABLE
    assert last["source_topic"] == "responses"
    assert last["original_value_bytes"] == 30_000
    assert "more than max_output_bytes" in last["error_message"]


def test_a_dead_letter_keeps_a_bounded_prefix_with_the_size_and_digest_of_the_whole() -> None:
    async def scenario() -> dict:
        pub, fake = make()
        original = bytes(range(256)) * 4000  # ~1 MB
        batch = pub.begin()
        batch.outcome(BatchOutcome(dead_letters=[dead_letter(original)]))
        confirmed = await batch.send()
        await settle()
        fake.confirm()
        await asyncio.wait_for(confirmed, 5)
        pub.close(1)
        return decode("dead_letter", fake.sent[0][2]) | {"whole": original}

    dead = asyncio.run(scenario())
    keep = settings().worker.dead_letter_keep_bytes
    assert dead["original_value"] == dead["whole"][:keep]
    assert dead["original_value_bytes"] == len(dead["whole"])
    assert dead["original_value_sha256"] == hashlib.sha256(dead["whole"]).hexdigest()


def test_a_schema_id_beyond_signed_32_bits_is_published() -> None:
    async def scenario() -> dict:
        pub, fake = make()
        key, record = dead_letter()
        record["schema_id"] = 2**32 - 1
        batch = pub.begin()
        batch.outcome(BatchOutcome(dead_letters=[(key, record)]))
        confirmed = await batch.send()
        await settle()
        fake.confirm()
        await asyncio.wait_for(confirmed, 5)
        pub.close(1)
        return decode("dead_letter", fake.sent[0][2])

    assert asyncio.run(scenario())["schema_id"] == 2**32 - 1


def test_an_output_that_cannot_be_encoded_is_dead_lettered_instead() -> None:
    async def scenario() -> dict:
        pub, fake = make()
        key, record = dead_letter()
        record["source_partition"] = "not a number"
        batch = pub.begin()
        batch.outcome(BatchOutcome(dead_letters=[(key, record)]))
        confirmed = await batch.send()
        await settle()
        fake.confirm()
        await asyncio.wait_for(confirmed, 5)
        pub.close(1)
        assert len(fake.sent) == 1
        return decode("dead_letter", fake.sent[0][2])

    dead = asyncio.run(scenario())
    assert dead["error_code"] == OUTPUT_UNPUBLISHABLE
    assert "not encodable" in dead["error_message"]


def test_waiting_for_the_broker_is_told_apart_from_records_in_flight() -> None:
    async def scenario() -> tuple[bool, bool, bool]:
        pub, fake = make()
        batch = pub.begin()
        batch.changelog(Table(), "links-changelog", 0, b"k", b"{}")
        confirmed = await batch.send()
        await settle()
        fresh = pub.waiting_for_broker(longer_than=0.2)
        await asyncio.sleep(0.3)
        waiting = pub.waiting_for_broker(longer_than=0.2)
        fake.confirm()
        await asyncio.wait_for(confirmed, 5)
        after = pub.waiting_for_broker(longer_than=0.2)
        pub.close(1)
        return fresh, waiting, after

    assert asyncio.run(scenario()) == (False, True, False)


@pytest.mark.parametrize("size", [0, 1])
def test_an_empty_step_is_confirmed_at_once(size: int) -> None:
    async def scenario() -> bool:
        d = Delivery(asyncio.get_running_loop())
        for _ in range(size):
            d._sent()
            d.on_delivery(None, Report("t", 0, 1))
        return d.seal().done()

    assert asyncio.run(scenario())
