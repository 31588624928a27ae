"""The batch core: raw Kafka messages of one filing stage in, decisions and responses out.

Everything between "bytes arrived" and "records to produce" happens here, without I/O beyond
the (cached) schema lookup, so unit tests and the benchmark call exactly what the worker runs.
The tables (consignment links by house waybill, pattern state, decision summaries) come in as
per-batch overlays (``domain.state.Overlay``): the core reads and writes them like mappings and
the runtime commits what the overlay collected, once the batch is done.
"""

from __future__ import annotations

import gc
import json
import re
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from dataclasses import replace
from functools import partial

from greenlane.models.feedback import summaries_from_decisions
from greenlane.models.stream import ModelPart, StreamScorer
from greenlane.streams.core.entities import FINDING, OBSERVATION
from greenlane.streams.core.outcomes import (
    dead_letter,
    digest,
    emit,
    message_id,
    replay_logged,
    run_isolated,
)
from greenlane.streams.domain.batch import (
    BatchOutcome,
    DecodeFailure,
    Decoder,
    Forward,
    InboundMessage,
)
from greenlane.streams.domain.money import convert
from greenlane.streams.domain.vocabulary import (
    PRE_ARRIVAL,
    PRE_LOADING,
    SEVERITY,
    STAGE_TOPIC_ROLE,
)
from greenlane.streams.settings import schema_path
from greenlane.streams.stages import quality
from greenlane.streams.stages.bounds import (
    OUT_OF_BOUNDS,
    OVERSIZED,
    compile_checker,
    message_problem,
)
from greenlane.streams.stages.enrichment import filing_facts
from greenlane.streams.stages.lanes import LaneAllocator, apply_change, load_lane_settings
from greenlane.streams.stages.patterns import (
    ENTITY_PATTERNS,
    FILING_PATTERNS,
    PatternSettings,
    detect_batch,
    load_pattern_settings,
    observe,
    seller_partition,
)
from greenlane.streams.stages.revenue import (
    RevenueSettings,
    assess_revenue_batch,
    load_revenue_settings,
)
from greenlane.streams.stages.routing import route_for
from greenlane.streams.stages.targeting import (
    FilingFacts,
    TargetingRules,
    facts_entry,
    facts_from_entry,
    score_batch,
)
from greenlane.streams.stages.watchlists import Lists, load_lists, match_batch

Scored = tuple[float, list[dict], "str | None"]

UNUSABLE_RECORD = "UNUSABLE_RECORD"
# What a pre-arrival link entry keeps of its decision, to amend it later (split shipments).
SUMMARY_FIELDS = (
    "message_id",
    "carrier_id",
    "destination_country",
    "risk_score",
    "quality_score",
    "filing_time",
)


def _merge(scores: list[Scored], extra: Sequence[list[dict]]) -> list[Scored]:
    """The rules' scores with the other reasons added, strongest reason first."""
    merged: list[Scored] = []
    for (score, reasons, forced), more in zip(scores, extra, strict=True):
        if more:
            reasons = sorted([*reasons, *more], key=lambda r: -r["contribution"])
            score = sum(r["contribution"] for r in reasons)
        merged.append((score, reasons, forced))
    return merged


_QUOTED = re.compile(r" '[^']*'")


def _kept_reason(reason: dict) -> dict:
    """A reason as a link entry keeps it: list-match evidence loses the quoted party names and
    addresses (the watchlist entry id and similarity stay); the first decision has them."""
    if reason["code"].startswith("W_PARTY"):
        return dict(reason, evidence=_QUOTED.sub("", reason["evidence"]))
    return reason


def tune_gc() -> None:
    """Batches allocate many short-lived dicts while the worker's tables keep many long-lived
    ones: with the default first-generation threshold (700) the collector rescans the tables
    thousands of times a second. A larger one cuts the assessment time by about a third."""
    gc.set_threshold(50_000, 20, 100)


def decision_id(stage: str, value: bytes) -> str:
    """Deterministic: the same filing bytes at the same stage always give the same id."""
    return message_id(stage, value)


def revision_id(previous_id: str, revision: int) -> str:
    return digest(previous_id.encode(), str(revision).encode())


class Assessor:
    """Holds the loaded configuration; ``assess`` is the pure batch function."""

    def __init__(
        self,
        quality_rules: quality.QualityRules,
        targeting_rules: TargetingRules,
        decoders: Mapping[str, Decoder],
        revenue_settings: RevenueSettings | None = None,
        lanes: LaneAllocator | None = None,
        pattern_settings: PatternSettings | None = None,
        lists: Lists | None = None,
        scorer: StreamScorer | None = None,
        partitions: int = 1,
        finding_decoder: Decoder | None = None,
    ) -> None:
        """``partitions``: of the filing topics (and the internal ones), which decides the
        seller partition of an observation; ``finding_decoder``: for ``amend``."""
        self.quality_rules = quality_rules
        self.targeting_rules = targeting_rules
        self.decoders = decoders
        self.rates = quality_rules.reference_rates
        self.revenue_settings = revenue_settings or load_revenue_settings()
        # Stateful (capacity counts per destination): one per worker, kept across batches.
        self.lanes = lanes or LaneAllocator(load_lane_settings())
        self.pattern_settings = pattern_settings or load_pattern_settings()
        # The risk model (issue #4); None: rules only.
        self.scorer = scorer
        self.lists = lists or load_lists(
            rates=quality_rules.reference_rates,
            reference_currency=quality_rules.reference_currency,
        )
        self._de_minimis_cache: dict[str, float | None] = {}
        self.partitions = partitions
        self.finding_decoder = finding_decoder
        self._bounds_checks: dict[str, Callable[[dict, int], str | None]] = {}

    def _bounds_check(self, stage: str) -> Callable[[dict, int], str | None]:
        """The stage's bounds checker (stages.bounds), compiled once from its schema."""
        check = self._bounds_checks.get(stage)
        if check is None:
            schema = json.loads(schema_path(STAGE_TOPIC_ROLE[stage]).read_text())
            check = compile_checker(schema, self.quality_rules.bounds)
            self._bounds_checks[stage] = check
        return check

    def de_minimis(self, destination: str) -> float | None:
        """The value under which splitting a consignment pays, in the reference currency.

        The highest of the destination's duty and tax thresholds and its vendor-collection cap
        (EU IOSS: EUR 150): below it a consignment gets relief or simplified collection.
        """
        if destination not in self._de_minimis_cache:
            adm = self.revenue_settings.by_country.get(destination)
            value = None
            if adm is not None:
                limits = [
                    adm.duty_threshold.default,
                    adm.tax_threshold.default,
                    adm.vendor_scheme.max_value if adm.vendor_scheme else None,
                ]
                limits = [x for x in limits if x]
                value = convert(max(limits), adm.currency, self.rates) if limits else None
            self._de_minimis_cache[destination] = value
        return self._de_minimis_cache[destination]

    def _score(
        self,
        stage: str,
        facts: list[FilingFacts],
        records: list[dict],
        patterns: MutableMapping[str, dict] | None = None,
        now_ms: int = 0,
        partitions: Sequence[int] = (),
    ) -> tuple[list[Scored], list[dict | None], list[ModelPart | None], list[list[dict]]]:
        """Rule scores with the list matches, plus for pre-arrival the revenue,
        stateful-pattern and risk-model reasons; also those other reasons alone (what a
        re-assessment keeps while it runs the rules again)."""
        scores = score_batch(facts, self.targeting_rules)
        extra = match_batch(records, stage, self.lists)
        revenues: list = [None] * len(records)
        models: list[ModelPart | None] = [None] * len(records)
        if stage == PRE_ARRIVAL:
            revenues = assess_revenue_batch(records, self.revenue_settings)
            extra = [a + (r.reasons if r else []) for a, r in zip(extra, revenues, strict=True)]
            if self.scorer is not None:
                models = self.scorer.score(records, self.rates)
                extra = [
                    a + ([m.reason] if m and m.reason else [])
                    for a, m in zip(extra, models, strict=True)
                ]
        if stage == PRE_ARRIVAL and patterns is not None:  # stateful: only with a state
            # value norms and carrier trends: learnt per filing partition, in its order
            by_partition: dict[int, list[int]] = {}
            for i, p in enumerate(partitions):
                by_partition.setdefault(p, []).append(i)
            found: list[list[dict]] = [[] for _ in records]
            for p, at in by_partition.items():
                result = detect_batch(
                    [records[i] for i in at],
                    [facts[i].total_value for i in at],
                    [bool(facts[i].finding_codes) for i in at],
                    patterns,
                    now_ms,
                    self.pattern_settings,
                    self.de_minimis,
                    kinds=FILING_PATTERNS,
                    scope=p,
                )
                for i, reasons in zip(at, result.reasons, strict=True):
                    found[i] = reasons
            extra = [a + b for a, b in zip(extra, found, strict=True)]
        return (
            _merge(scores, extra),
            [rev.as_record() if rev is not None else None for rev in revenues],
            models,
            extra,
        )

    def _allocate_lanes(
        self, decisions: list[dict], now_ms: int, lanes: MutableMapping[str, dict] | None
    ) -> list[dict]:
        """Capacity ceiling and random selection (pre-arrival); the decisions as they stand.
        ``lanes``: the quota counts (a table's overlay; None: kept by the allocator)."""
        changes = self.lanes.allocate(decisions, now_ms, lanes)
        return [apply_change(d, c) for d, c in zip(decisions, changes, strict=True)]

    def assess(
        self,
        stage: str,
        messages: Sequence[InboundMessage],
        links: MutableMapping[str, dict],
        now_ms: int,
        patterns: MutableMapping[str, dict] | None = None,
        summaries: MutableMapping[str, dict] | None = None,
        replay_log: MutableMapping[str, dict] | None = None,
        lanes: MutableMapping[str, dict] | None = None,
    ) -> BatchOutcome:
        """Decide every message of one stage; bad ones become dead letters, never exceptions.

        The tables are the batch's overlays: ``links`` (house waybill -> link entry) and, for
        pre-arrival, ``patterns`` (the stateful fraud patterns; None: no stateful patterns)
        and ``summaries`` (decision_id -> what the feedback join needs) are read and written.

        ``replay_log`` (decision_id of a filing -> the decisions its assessment published)
        makes a replay harmless: a filing already assessed (its state changes are in the
        tables) is not assessed again; the decisions it produced are published again as they
        were, same ids, same routes. Without it every message is assessed. ``lanes`` holds
        the inspection-quota counts (None: the allocator keeps them).
        """
        if replay_log is not None:
            fresh = partial(
                self.assess,
                stage,
                links=links,
                now_ms=now_ms,
                patterns=patterns,
                summaries=summaries,
                lanes=lanes,
            )
            ids = [decision_id(stage, m.value or b"") for m in messages]
            return replay_logged(ids, messages, replay_log, now_ms, fresh)
        out = BatchOutcome()
        bounds = self.quality_rules.bounds
        sized = []  # positions small enough to decode
        for i, m in enumerate(messages):
            why = message_problem(m.key, m.value, bounds)
            if why is None:
                sized.append(i)
            else:  # answered under the key's first bytes (the source topic has the rest)
                cut = replace(m, key=m.key[: bounds.max_key_bytes] if m.key else m.key)
                dead_letter(out, stage, cut, OVERSIZED, why, None, None, now_ms)
        decoded = self.decoders[stage].decode_batch([messages[i].value for i in sized])
        within = self._bounds_check(stage)
        records: list[dict] = []
        positions: list[int] = []
        for i, item in zip(sized, decoded, strict=True):
            if not isinstance(item, DecodeFailure):
                why = within(item, now_ms)
                if why is not None:
                    dead_letter(out, stage, messages[i], OUT_OF_BOUNDS, why, None, item, now_ms)
                    continue
            if isinstance(item, DecodeFailure):
                dead_letter(
                    out,
                    stage,
                    messages[i],
                    item.error_code,
                    item.message,
                    item.schema_id,
                    None,
                    now_ms,
                )
            else:
                records.append(item)
                positions.append(i)

        reports = quality.assess_batch(records, stage, self.quality_rules)
        usable: list[tuple[int, dict, quality.QualityReport]] = []
        for pos, record, report in zip(positions, records, reports, strict=True):
            if report.unusable:
                dead_letter(
                    out,
                    stage,
                    messages[pos],
                    UNUSABLE_RECORD,
                    report.unusable,
                    None,
                    record,
                    now_ms,
                )
            else:
                usable.append((pos, record, report))
                out.findings.update(f["code"] for f in report.findings)

        other_key = "pre_loading" if stage == PRE_ARRIVAL else "pre_arrival"
        facts = []
        entries = []
        for _pos, record, report in usable:
            entry = links.get(record["house_waybill"]) or {}
            entries.append(entry)
            other = entry.get(other_key)
            facts.append(
                filing_facts(
                    record,
                    stage,
                    frozenset(f["code"] for f in report.findings),
                    report.score,
                    other["outcome"] if stage == PRE_ARRIVAL and other else None,
                    other is not None,
                    self.rates,
                )
            )
        scores, revenues, models, extras = self._score(
            stage,
            facts,
            [r for _, r, _ in usable],
            patterns,
            now_ms,
            [messages[pos].partition for pos, _, _ in usable],
        )
        decisions = [
            self._decision(
                stage,
                record,
                report,
                scored,
                messages[pos],
                decision_id(stage, messages[pos].value or b""),
                0,
                entry.get(other_key),
                revenue,
                model,
            )
            for (pos, record, report), entry, scored, revenue, model in zip(
                usable, entries, scores, revenues, models, strict=True
            )
        ]
        decisions = self._allocate_lanes(decisions, now_ms, lanes)
        if stage == PRE_ARRIVAL and decisions and summaries is not None:
            made = summaries_from_decisions(decisions, [r for _, r, _ in usable], self.rates)
            for (pos, _, _), d, summary in zip(usable, decisions, made, strict=True):
                summaries[d["decision_id"]] = summary | {"partition": messages[pos].partition}

        reassess: list[tuple[str, int, dict, dict]] = []
        for i, ((pos, record, report), entry, decision) in enumerate(
            zip(usable, entries, decisions, strict=True)
        ):
            msg = messages[pos]
            waybill = record["house_waybill"]
            entry = links.get(waybill) or entry
            other = entry.get(other_key)
            emit(out, decision, pos, msg.key, now_ms)
            entry = dict(entry)
            if stage == PRE_LOADING:
                entry["pre_loading"] = {
                    "decision_id": decision["decision_id"],
                    "outcome": decision["placi_outcome"],
                }
                if other and other.get("pending"):
                    reassess.append((waybill, pos, other, entry["pre_loading"]))
            else:
                pending = None
                if other is None and record["transport_mode"] == "AIR":
                    # what re-running the rules needs once the pre-loading filing arrives;
                    # not the declaration itself (parties' names and addresses)
                    model = models[i]
                    pending = {
                        "facts": facts_entry(facts[i]),
                        "extra": [_kept_reason(r) for r in extras[i]],
                        "revenue": revenues[i],
                        "model": [model.version, model.probability] if model else None,
                    }
                entry["pre_arrival"] = {
                    "decision_id": decision["decision_id"],
                    "route": decision["route"],
                    "revision": 0,
                    "pending": pending,
                    "quality": {"findings": report.findings, "score": report.score},
                    "source": [msg.topic, msg.partition, msg.offset],
                    "key": (msg.key or b"").decode("utf-8", "replace"),
                    "summary": {k: decision[k] for k in SUMMARY_FIELDS},
                }
            # for the retention sweep: event time (replays agree) and where the changelog lives
            entry["filed_at"] = max(entry.get("filed_at", 0), record["filing_time"])
            entry["partition"] = msg.partition
            links[waybill] = entry
        if reassess:
            self._reassess(out, reassess, links, now_ms, lanes)
        if stage == PRE_ARRIVAL and patterns is not None:
            self._observe(out, usable, facts, decisions, messages)
        return out

    def _observe(
        self,
        out: BatchOutcome,
        usable: list[tuple[int, dict, quality.QualityReport]],
        facts: list[FilingFacts],
        decisions: list[dict],
        messages: Sequence[InboundMessage],
    ) -> None:
        """Re-key each declaration by seller for the seller-keyed patterns (core.entities);
        ``decisions``: the declarations' first decisions, whose ids name the observations."""
        cfg = self.pattern_settings
        if not any(getattr(cfg, name).enabled for name in ENTITY_PATTERNS):
            return
        for (pos, record, _), fact, decision in zip(usable, facts, decisions, strict=True):
            msg = messages[pos]
            obs = observe(
                record, fact.total_value, self.de_minimis(record["destination_country"]), cfg
            )
            obs["filing_time"] = min(obs["filing_time"], msg.timestamp_ms or obs["filing_time"])
            obs.update(
                observation_id=decision["decision_id"],
                filing_partition=msg.partition,
                received_at=msg.timestamp_ms,
            )
            seller = obs["seller_key"]
            partition = seller_partition(seller, self.partitions)
            out.forwards.append(Forward(OBSERVATION, seller.encode(), partition, obs, pos))

    def amend(
        self,
        messages: Sequence[InboundMessage],
        links: MutableMapping[str, dict],
        now_ms: int,
        replay_log: MutableMapping[str, dict] | None = None,
    ) -> BatchOutcome:
        """Amend decisions from pattern findings (core.entities) read on the partition of
        their house waybills: a new revision per consignment and pattern, never twice.
        ``replay_log``: a redelivered finding republishes the revision it made."""
        if replay_log is not None:
            ids = [message_id(FINDING, m.value) for m in messages]
            fresh = partial(self.amend, links=links, now_ms=now_ms)
            return replay_logged(ids, messages, replay_log, now_ms, fresh)
        if self.finding_decoder is None:
            raise ValueError("Assessor.amend needs a finding_decoder")
        out = BatchOutcome()
        decoded = self.finding_decoder.decode_batch([m.value for m in messages])
        for pos, item in enumerate(decoded):
            msg = messages[pos]
            if isinstance(item, DecodeFailure):
                dead_letter(
                    out, None, msg, item.error_code, item.message, item.schema_id, None, now_ms
                )
                continue
            if self._amend(out, item["house_waybill"], item["reason"], links, now_ms, pos):
                out.amended_from.append(item["received_at"])
            else:
                out.unapplied += 1
        return out

    def assess_isolated(
        self,
        stage: str,
        messages: Sequence[InboundMessage],
        links: MutableMapping[str, dict],
        now_ms: int,
        patterns: MutableMapping[str, dict] | None = None,
        summaries: MutableMapping[str, dict] | None = None,
        replay_log: MutableMapping[str, dict] | None = None,
        lanes: MutableMapping[str, dict] | None = None,
    ) -> BatchOutcome:
        """``assess``, except that a filing which breaks the assessment (a defect greenlane
        did not foresee) is dead-lettered with the error instead of failing its whole batch
        (``outcomes.run_isolated``)."""

        def run(batch: Sequence[InboundMessage], t: list) -> BatchOutcome:
            return self.assess(stage, batch, t[0], now_ms, *t[1:])

        tables = (links, patterns, summaries, replay_log, lanes)
        return run_isolated(run, messages, tables, stage, now_ms)

    def _amend(
        self,
        out: BatchOutcome,
        waybill: str,
        reason: dict,
        links: MutableMapping[str, dict],
        now_ms: int,
        pos: int,
    ) -> bool:
        """Amend the decision of a consignment that a stateful pattern now includes; False
        when there is nothing to amend (no link entry any more) or it was amended for this
        pattern already.

        The new revision adds the pattern's reason to the earlier score and never lowers the
        lane; the reason is kept for a re-assessment still to come.
        """
        entry = links.get(waybill)
        arrival = (entry or {}).get("pre_arrival")
        if not arrival or "summary" not in arrival:
            return False
        flagged = arrival.get("flags") or []
        if reason["code"] in flagged:
            return False
        summary = arrival["summary"]
        score = summary["risk_score"] + reason["contribution"]
        revision = arrival["revision"] + 1
        topic, partition, offset = arrival["source"]
        decision = self._decision(  # the amendment: what changed, on the earlier score
            PRE_ARRIVAL,
            summary | {"house_waybill": waybill},
            quality.QualityReport(findings=[], score=summary["quality_score"], unusable=None),
            (score, [reason], None),
            InboundMessage(None, None, topic, partition, offset, 0),
            revision_id(arrival["decision_id"], revision),
            revision,
            {"decision_id": arrival["decision_id"]},
            floor_route=arrival["route"],
        )
        emit(out, decision, pos, arrival["key"].encode(), now_ms)
        pending = arrival.get("pending")
        if pending:  # the re-assessment keeps the pattern's reason with the others
            pending = dict(pending, extra=[*pending["extra"], reason])
        updated = dict(
            arrival,
            decision_id=decision["decision_id"],
            route=decision["route"],
            revision=revision,
            summary=dict(summary, risk_score=score),
            flags=[*flagged, reason["code"]],
            pending=pending,
        )
        links[waybill] = dict(entry, pre_arrival=updated)
        return True

    def _reassess(
        self,
        out: BatchOutcome,
        pending: list[tuple[str, int, dict, dict]],
        links: MutableMapping[str, dict],
        now_ms: int,
        lanes: MutableMapping[str, dict] | None,
    ) -> None:
        """Re-assess pre-arrival declarations that came before their pre-loading filing.

        ``pending``: (waybill, position of the pre-loading filing, pre-arrival link entry, the
        new pre-loading link entry). One batch call for all of them, like any batch. A new
        decision (next revision) is published only if the lane changes, so consignments filed
        in order still yield exactly one decision per filing.
        """
        # The rules run again on the kept facts, now with the pre-loading outcome; the list,
        # revenue, model and pattern reasons do not depend on it and are kept as they were.
        facts = [
            facts_from_entry(arrival["pending"]["facts"], pre_loading["outcome"], True)
            for _, _, arrival, pre_loading in pending
        ]
        scores = _merge(
            score_batch(facts, self.targeting_rules),
            [arrival["pending"]["extra"] for _, _, arrival, _ in pending],
        )
        decisions = []
        for (waybill, _, arrival, pre_loading), scored in zip(pending, scores, strict=True):
            kept = arrival["pending"]
            q = arrival["quality"]
            report = quality.QualityReport(findings=q["findings"], score=q["score"], unusable=None)
            topic, partition, offset = arrival["source"]
            source = InboundMessage(arrival["key"].encode(), None, topic, partition, offset, 0)
            revision = arrival["revision"] + 1
            model = ModelPart(*kept["model"], None) if kept["model"] else None
            decisions.append(
                self._decision(
                    PRE_ARRIVAL,
                    arrival["summary"] | {"house_waybill": waybill},
                    report,
                    scored,
                    source,
                    revision_id(arrival["decision_id"], revision),
                    revision,
                    pre_loading,
                    kept["revenue"],
                    model,
                )
            )
        decisions = self._allocate_lanes(decisions, now_ms, lanes)
        for (waybill, pos, arrival, _), decision in zip(pending, decisions, strict=True):
            updated = dict(arrival, pending=None)
            if decision["route"] != arrival["route"]:
                emit(out, decision, pos, arrival["key"].encode(), now_ms)
                updated.update(
                    decision_id=decision["decision_id"],
                    route=decision["route"],
                    revision=decision["revision"],
                )
            links[waybill] = dict(links[waybill], pre_arrival=updated)

    def _decision(
        self,
        stage: str,
        identity: dict,
        report: quality.QualityReport,
        scored: tuple[float, list[dict], str | None],
        msg: InboundMessage,
        did: str,
        revision: int,
        other: dict | None,
        revenue: dict | None = None,
        model: ModelPart | None = None,
        floor_route: str | None = None,
    ) -> dict:
        """The one builder of a decision record (first assessment, re-assessment, split
        amendment): every revision carries the same fields. ``identity`` is the filing or
        what a link entry kept of it; ``floor_route``: a lane this revision may not go below."""
        score, reasons, forced = scored
        rules = self.targeting_rules
        route, placi = route_for(stage, score, rules.thresholds, forced)
        if floor_route is not None and SEVERITY[floor_route] > SEVERITY[route]:
            route = floor_route
        return {
            "decision_id": did,
            "revision": revision,
            "stage": stage,
            "message_id": identity["message_id"],
            "carrier_id": identity["carrier_id"],
            "house_waybill": identity["house_waybill"],
            "destination_country": identity["destination_country"],
            "route": route,
            "placi_outcome": placi,
            "risk_score": score,
            "forced_outcome": forced,
            "quality_score": report.score,
            "reasons": reasons,
            "quality_findings": report.findings,
            "random_pick": False,
            "revenue": revenue,
            "referrals": rules.referrals(reasons),
            "model_version": model.version if model else None,
            "model_probability": model.probability if model else None,
            "linked_decision_id": other["decision_id"] if other else None,
            "linked_placi_outcome": other.get("outcome")
            if other and stage == PRE_ARRIVAL
            else None,
            "ruleset_version": rules.version,
            "filing_time": identity["filing_time"],
            "source_topic": msg.topic,
            "source_partition": msg.partition,
            "source_offset": msg.offset,
        }
