"""What every batch core shares: ids, how outputs enter an outcome, the replay log, isolation.

The filing stages (core.pipeline), the seller-keyed pattern stage (core.entities) and the
amendment of decisions from pattern findings all produce a ``BatchOutcome`` the same way, and
all make a redelivered message harmless the same way: the replay log.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, MutableMapping, Sequence
from dataclasses import replace

from greenlane.streams.domain.batch import (
    BatchOutcome,
    Forward,
    InboundMessage,
    ServiceUnavailable,
)
from greenlane.streams.domain.state import Overlay
from greenlane.streams.stages.routing import carrier_response, rejection_response

ASSESSMENT_FAILED = "ASSESSMENT_FAILED"


def digest(*parts: bytes) -> str:
    h = hashlib.blake2b(digest_size=16)
    for p in parts:
        h.update(p)
        h.update(b"|")
    return h.hexdigest()


def message_id(kind: str, value: bytes | None) -> str:
    """Deterministic: the same bytes of the same kind always give the same id."""
    return digest(kind.encode(), value or b"")


def dead_letter_record(
    msg: InboundMessage,
    code: str,
    why: str,
    schema_id: int | None,
    record: dict | None,
    now_ms: int,
) -> dict:
    """A message set aside whole, with why: a DeadLetter record (schemas/dead_letter.avsc).
    The publisher cuts an original too large to republish to a prefix; size and digest stay."""
    return {
        "dead_letter_id": digest(
            msg.topic.encode(),
            str(msg.partition).encode(),
            str(msg.offset).encode(),
            msg.value or b"",
        ),
        "error_code": code,
        "error_message": why,
        "source_topic": msg.topic,
        "source_partition": msg.partition,
        "source_offset": msg.offset,
        "source_timestamp": msg.timestamp_ms,
        "schema_id": schema_id,
        "carrier_id": (record or {}).get("carrier_id") or None,
        "message_id": (record or {}).get("message_id") or None,
        "original_key": msg.key,
        "original_value": msg.value,
        "original_value_bytes": len(msg.value or b""),
        "original_value_sha256": hashlib.sha256(msg.value).hexdigest()
        if msg.value is not None
        else None,
        "dead_lettered_at": now_ms,
    }


def emit(out: BatchOutcome, decision: dict, pos: int, key: bytes | None, now_ms: int) -> None:
    """A decision and the carrier's response to it."""
    out.decisions.append(decision)
    out.decision_sources.append(pos)
    out.decision_keys.append(key)
    out.responses.append((key, carrier_response(decision, now_ms)))


def dead_letter(
    out: BatchOutcome,
    stage: str | None,
    msg: InboundMessage,
    code: str,
    why: str,
    schema_id: int | None,
    record: dict | None,
    now_ms: int,
    answer_key: bytes | None = None,
) -> None:
    """A message set aside; a filing's carrier is answered (``stage`` None: an internal
    record, which has no carrier to answer), under ``answer_key`` if given (the house
    waybill of a filing sent under another key), else under the message's key."""
    dead = dead_letter_record(msg, code, why, schema_id, record, now_ms)
    out.dead_letters.append((msg.key, dead))
    if stage is None:
        return
    waybill = (record or {}).get("house_waybill") or (
        msg.key.decode("utf-8", "replace") if msg.key else None
    )
    key = answer_key if answer_key is not None else msg.key
    out.responses.append((key, rejection_response(dead, stage, waybill)))


def _run_at(
    run: Callable[[Sequence[InboundMessage]], BatchOutcome],
    messages: Sequence[InboundMessage],
    positions: list[int],
) -> BatchOutcome:
    """``run`` the messages at ``positions``, with the outcome's positions those of the batch."""
    if len(positions) == len(messages):
        return run(messages)
    out = run([messages[i] for i in positions])
    out.decision_sources = [positions[pos] for pos in out.decision_sources]
    out.forwards = [replace(f, source=positions[f.source]) for f in out.forwards]
    return out


def replay_logged(
    ids: Sequence[str],
    messages: Sequence[InboundMessage],
    replay_log: MutableMapping[str, dict],
    now_ms: int,
    run: Callable[[Sequence[InboundMessage]], BatchOutcome],
) -> BatchOutcome:
    """``run`` the messages the replay log does not know; republish those it does.

    ``ids``: each message's deterministic id. A message already handled (its state changes
    are in the tables) is not handled again over state that already counts it: what it
    published (decisions, internal records) is published again as it was, same ids, same
    routes. What a fresh message publishes is logged under its id. A second copy of a message
    in the same batch is a replay of the first, as it would be in a later batch.
    """
    logged = {i: replay_log.get(mid) for i, mid in enumerate(ids)}
    first: set[str] = set()
    fresh, copies = [], []
    for i, mid in enumerate(ids):
        if logged[i] is None:
            (copies if mid in first else fresh).append(i)
            first.add(mid)
    out = _run_at(run, messages, fresh)
    published: dict[int, list] = {}
    for d, pos, key in zip(out.decisions, out.decision_sources, out.decision_keys, strict=True):
        published.setdefault(pos, []).append([(key or b"").decode("utf-8", "replace"), d])
    forwarded: dict[int, list] = {}
    for f in out.forwards:
        forwarded.setdefault(f.source, []).append(
            [f.role, f.key.decode("utf-8", "replace"), f.partition, f.record]
        )
    for i in fresh:
        if i in published or i in forwarded:  # handled, not dead-lettered: remember it
            replay_log[ids[i]] = {
                "published": published.get(i, []),
                "forwards": forwarded.get(i, []),
                "partition": messages[i].partition,
                "logged_at": now_ms,
            }
    for i in copies:
        logged[i] = replay_log.get(ids[i])
    refused = [i for i in copies if logged[i] is None]  # as the first copy was: stateless
    if refused:
        out.extend(_run_at(run, messages, refused), 0)
    for i, entry in logged.items():
        if entry is None:
            continue
        for key, decision in entry["published"]:
            emit(out, decision, i, key.encode(), now_ms)
            out.replayed += 1
        for role, key, partition, record in entry.get("forwards", ()):
            out.forwards.append(Forward(role, key.encode(), partition, record, i))
    return out


Tables = Sequence[MutableMapping[str, dict] | None]


def _absorb(tables: Tables, trials: Sequence[Overlay | None]) -> None:
    """Carry a successful trial's changes into the batch's tables (None deletes)."""
    for table, trial in zip(tables, trials, strict=True):
        if table is None or trial is None:
            continue
        for key, value in trial.changes().items():
            if value is None:
                table.pop(key, None)
            else:
                table[key] = value


def run_isolated(
    run: Callable[[Sequence[InboundMessage], list[Overlay | None]], BatchOutcome],
    messages: Sequence[InboundMessage],
    tables: Tables,
    stage: str | None,
    now_ms: int,
) -> BatchOutcome:
    """``run(messages, overlays)``, except that a message which breaks it (a defect greenlane
    did not foresee) is dead-lettered with the error instead of failing its whole batch.

    The batch is tried on throw-away overlays of ``tables``; if it raises, it is redone
    message by message, each on its own overlays, and only the messages that succeed change
    the tables. ``stage``: the filing stage whose carriers are answered (None: internal).
    ``ServiceUnavailable`` is no message's fault: it is raised, for the batch to wait.
    """
    try:
        trial = [Overlay(t) if t is not None else None for t in tables]
        out = run(messages, trial)
    except ServiceUnavailable:
        raise
    except Exception:
        out = BatchOutcome()
        for i, msg in enumerate(messages):
            trial = [Overlay(t) if t is not None else None for t in tables]
            try:
                one = run([msg], trial)
            except ServiceUnavailable:
                raise
            except Exception as exc:
                why = f"{type(exc).__name__}: {exc}"[:500]
                dead_letter(out, stage, msg, ASSESSMENT_FAILED, why, None, None, now_ms)
                continue
            _absorb(tables, trial)
            out.extend(one, i)
        return out
    _absorb(tables, trial)
    return out
