"""What a batch is made of: the messages as consumed, and the one typed outcome of assessing them.

Shared by the batch core (which produces outcomes), the runtime (which consumes messages and
publishes outcomes) and the benchmarks; free of Faust and Kafka clients.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol


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


@dataclass(slots=True)
class BatchOutcome:
    """What one batch produces for the outside world; its state changes are in the overlays."""

    decisions: list[dict] = field(default_factory=list)
    responses: list[tuple[bytes | None, dict]] = field(default_factory=list)
    dead_letters: list[tuple[bytes | None, dict]] = field(default_factory=list)
    # split-shipment groups found in this batch (stages.patterns.PatternResult.split_groups)
    split_groups: list[dict] = field(default_factory=list)
    findings: Counter = field(default_factory=Counter)
    # index of the inbound message each decision came from (for latency and the replay log)
    decision_sources: list[int] = field(default_factory=list)
    # Kafka key of each decision's carrier response (that of the filing it answers)
    decision_keys: list[bytes | None] = field(default_factory=list)
    # decisions re-published from the replay log rather than assessed again
    replayed: int = 0
