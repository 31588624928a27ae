"""What a batch is made of: the messages as consumed, and the one typed outcome of assessing them.

Shared by the batch core (which produces outcomes), the runtime (which consumes messages and
publishes outcomes) and the benchmarks; free of Faust and Kafka clients.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol


class ServiceUnavailable(Exception):
    """A service the whole batch depends on (the schema registry) did not answer: not the
    message's fault, so the batch is tried again later instead of being dead-lettered."""


@dataclass(frozen=True, slots=True)
class DecodeFailure:
    """Why a message could not be decoded; becomes a dead letter."""

    error_code: str
    message: str
    schema_id: int | None = None


class Decoder(Protocol):
    """Turns raw message values into records, or says why not (runtime.serde.WireDecoder)."""

    def decode_batch(self, values: Sequence[bytes | None]) -> list[dict | DecodeFailure]: ...


@dataclass(frozen=True, slots=True)
class InboundMessage:
    """One Kafka record as consumed, before decoding."""

    key: bytes | None
    value: bytes | None
    topic: str
    partition: int
    offset: int
    timestamp_ms: int


@dataclass(frozen=True, slots=True)
class Forward:
    """A record for one of greenlane's internal topics (a declaration re-keyed by seller, a
    finding sent back), to an explicit partition: the stage that reads it must find it on the
    partition that holds its state, whatever partitioner the producer has."""

    role: str
    key: bytes
    partition: int
    record: dict
    source: int  # index of the inbound message it came from


@dataclass(slots=True)
class BatchOutcome:
    """What one batch produces for the outside world; its state changes are in the overlays."""

    decisions: list[dict] = field(default_factory=list)
    responses: list[tuple[bytes | None, dict]] = field(default_factory=list)
    dead_letters: list[tuple[bytes | None, dict]] = field(default_factory=list)
    # records for internal topics (re-keyed observations, pattern findings)
    forwards: list[Forward] = field(default_factory=list)
    findings: Counter = field(default_factory=Counter)
    # index of the inbound message each decision came from (for latency and the replay log)
    decision_sources: list[int] = field(default_factory=list)
    # Kafka key of each decision's carrier response (that of the filing it answers)
    decision_keys: list[bytes | None] = field(default_factory=list)
    # decisions re-published from the replay log rather than assessed again
    replayed: int = 0
    # per decision that amends an earlier one from a pattern finding: when the declaration
    # that completed the pattern was received (amendment latency is measured from it)
    amended_from: list[int] = field(default_factory=list)
    # pattern findings not applied: the consignment's link is gone, or it was already flagged
    unapplied: int = 0

    def extend(self, other: BatchOutcome, offset: int) -> None:
        """Append ``other``, the outcome of messages starting at index ``offset`` of this
        batch (positions are shifted to this batch's)."""
        self.decisions += other.decisions
        self.decision_sources += [offset + pos for pos in other.decision_sources]
        self.decision_keys += other.decision_keys
        self.responses += other.responses
        self.dead_letters += other.dead_letters
        self.forwards += [replace(f, source=offset + f.source) for f in other.forwards]
        self.findings.update(other.findings)
        self.replayed += other.replayed
        self.amended_from += other.amended_from
        self.unapplied += other.unapplied
