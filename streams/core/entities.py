"""The seller-keyed half of the stateful patterns: observations in, findings out.

A pre-arrival declaration is assessed on the partition of its house waybill; what the split
shipment and new-seller velocity patterns need of it (``stages.patterns.observe``: digests, no
names) is re-keyed by seller to the partition a hash of the seller gives (``pattern_observation``
topic), so all of one seller's consignments are counted in one place whatever partitions their
waybills filed on and however many workers share the partitions. What that finds is sent back
(``pattern_finding`` topic) to the partition of each consignment it names, where its decision
is amended (``Assessor.amend``), so only one place ever writes a consignment's revisions.
"""

from __future__ import annotations

from collections.abc import MutableMapping, Sequence

from greenlane.streams.core.outcomes import dead_letter, digest, message_id, replay_logged
from greenlane.streams.domain.batch import (
    BatchOutcome,
    DecodeFailure,
    Decoder,
    Forward,
    InboundMessage,
)
from greenlane.streams.stages.patterns import PatternSettings, detect_entity_batch

OBSERVATION = "pattern_observation"
FINDING = "pattern_finding"


def finding(observation: dict, waybill: str, partition: int, reason: dict) -> dict:
    """A PatternFinding record: ``reason`` for ``waybill``, found on ``observation``."""
    return {
        "finding_id": digest(
            observation["observation_id"].encode(), reason["code"].encode(), waybill.encode()
        ),
        "house_waybill": waybill,
        "filing_partition": partition,
        "received_at": observation["received_at"],
        "reason": {
            "code": reason["code"],
            "description": reason["description"],
            "contribution": reason["contribution"],
            "evidence": reason.get("evidence"),
            "carrier_visible": reason["carrier_visible"],
        },
    }


class PatternStage:
    """Holds the pattern settings and the observation decoder; ``assess`` is the batch core."""

    def __init__(self, settings: PatternSettings, decoder: Decoder) -> None:
        self.settings = settings
        self.decoder = decoder

    def assess(
        self,
        messages: Sequence[InboundMessage],
        patterns: MutableMapping[str, dict],
        now_ms: int,
        replay_log: MutableMapping[str, dict] | None = None,
    ) -> BatchOutcome:
        """Count each observation on its seller's partition (the partition it was read from)
        and forward a finding for every consignment a pattern now includes. ``replay_log``:
        a redelivered observation republishes the findings it made rather than counting
        again (None: every message is counted)."""
        if replay_log is None:
            return self._assess(messages, patterns, now_ms)
        ids = [message_id(OBSERVATION, m.value) for m in messages]
        return replay_logged(
            ids, messages, replay_log, now_ms, lambda fresh: self._assess(fresh, patterns, now_ms)
        )

    def _assess(
        self,
        messages: Sequence[InboundMessage],
        patterns: MutableMapping[str, dict],
        now_ms: int,
    ) -> BatchOutcome:
        out = BatchOutcome()
        by_partition: dict[int, list[tuple[int, dict]]] = {}
        decoded = self.decoder.decode_batch([m.value for m in messages])
        for pos, item in enumerate(decoded):
            if isinstance(item, DecodeFailure):
                msg = messages[pos]
                dead_letter(
                    out, None, msg, item.error_code, item.message, item.schema_id, None, now_ms
                )
                continue
            by_partition.setdefault(messages[pos].partition, []).append((pos, item))
        for partition, items in by_partition.items():
            observations = [obs for _, obs in items]
            found = detect_entity_batch(
                observations,
                [obs["filing_partition"] for obs in observations],
                patterns,
                now_ms,
                self.settings,
                scope=partition,
            )
            for (pos, obs), reasons in zip(items, found.reasons, strict=True):
                for reason in reasons:
                    waybill, partition = obs["house_waybill"], obs["filing_partition"]
                    self._forward(out, obs, waybill, partition, reason, pos)
            for flag in found.flags:  # earlier consignments: logged with what completed it
                pos, obs = items[flag["by"]]
                waybill, reason = flag["house_waybill"], flag["reason"]
                self._forward(out, obs, waybill, flag["partition"], reason, pos)
        return out

    @staticmethod
    def _forward(
        out: BatchOutcome, obs: dict, waybill: str, partition: int, reason: dict, pos: int
    ) -> None:
        record = finding(obs, waybill, partition, reason)
        out.forwards.append(Forward(FINDING, waybill.encode(), partition, record, pos))
