"""The batch core: raw Kafka messages of one filing stage in, decisions and responses out.

Everything between "bytes arrived" and "records to produce" happens here, without I/O beyond
the (cached) schema lookup, so unit tests and the benchmark call exactly what the worker runs.
The tables (consignment links by house waybill, pattern state, decision summaries) come in as
per-batch overlays (``domain.state.Overlay``): the core reads and writes them like mappings and
the runtime commits what the overlay collected, once the batch is done.
"""

from __future__ import annotations

import base64
import gc
import json
import time
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, replace
from functools import partial
from typing import TypeVar

from greenlane.models.feedback import summaries_from_decisions
from greenlane.models.stream import ModelPart, StreamScorer, canonical_row
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
from greenlane.streams.domain.state import Overlay
from greenlane.streams.domain.stopwatch import Stopwatch
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
from greenlane.streams.stages.enrichment import filing_facts, totals
from greenlane.streams.stages.lanes import (
    LaneAllocator,
    LaneSettings,
    apply_change,
    load_lane_settings,
)
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
from greenlane.streams.stages.routing import forced_by_reasons, route_for, shown_codes
from greenlane.streams.stages.targeting import (
    FilingFacts,
    TargetingRules,
    score_batch,
)
from greenlane.streams.stages.watchlists import Lists, load_lists, match_batch

Scored = tuple[float, list[dict], "str | None"]
T = TypeVar("T")

UNUSABLE_RECORD = "UNUSABLE_RECORD"
# The link entry's key for the latest filing of each stage, and the other stage.
SIDE = {PRE_LOADING: "pre_loading", PRE_ARRIVAL: "pre_arrival"}
OTHER_STAGE = {PRE_LOADING: PRE_ARRIVAL, PRE_ARRIVAL: PRE_LOADING}


@dataclass(slots=True, eq=False)
class _Job:
    """One assessment to run: a filing as received, or a kept one assessed again."""

    stage: str
    record: dict
    report: quality.QualityReport
    msg: InboundMessage  # the filing's own message (source fields, partition, key)
    trigger: int  # the inbound message that caused it (latency, replay log)
    did: str
    revision: int
    previous: dict | None  # the latest decision of this stage for the waybill, as kept
    other: dict | None  # the latest decision of the other stage, as kept
    flags: list[dict]  # reasons found later by the seller-keyed patterns
    cause: str = "FILING"  # the decision's revision_cause
    force_publish: bool = False
    row: dict | None = None  # a declaration's canonical row, once the engine built it


def _isolated(
    core: Callable[..., BatchOutcome],
    messages: Sequence[InboundMessage],
    tables: Sequence[MutableMapping[str, dict] | None],
    stage: str | None,
    now_ms: int,
) -> BatchOutcome:
    """``core(messages, links, now_ms, *other tables)`` on overlays, each message that
    breaks it dead-lettered alone (``outcomes.run_isolated``)."""

    def run(batch: Sequence[InboundMessage], t: list) -> BatchOutcome:
        return core(batch, t[0], now_ms, *t[1:])

    return run_isolated(run, messages, tables, stage, now_ms)


def _rounds(items: Sequence[T], waybill: Callable[[T], str]) -> list[list[T]]:
    """``items`` in rounds of at most one per house waybill, in order: a waybill's second
    item in a batch is handled after its first, as it would be in the next batch."""
    rounds: list[list[T]] = []
    seen: dict[str, int] = {}
    for item in items:
        key = waybill(item)
        n = seen.get(key, 0)
        seen[key] = n + 1
        if n == len(rounds):
            rounds.append([])
        rounds[n].append(item)
    return rounds


def _read_only(table: MutableMapping[str, dict] | None) -> MutableMapping[str, dict] | None:
    """A throw-away overlay: the stage reads the table, its writes are dropped."""
    return None if table is None else Overlay(table)


def _with_effect(scored: Scored, effect: quality.Effect) -> Scored:
    """A score with what the data-quality findings force (the stricter outcome wins)."""
    if effect.forced is None:
        return scored
    score, reasons, forced = scored
    if forced is None or SEVERITY[effect.forced] > SEVERITY[forced]:
        forced = effect.forced
    return score, [*reasons, effect.reason], forced


def _merge(scores: list[Scored], extra: Sequence[list[dict]]) -> list[Scored]:
    """The rules' scores with the other reasons added, strongest reason first."""
    merged: list[Scored] = []
    for (score, reasons, forced), more in zip(scores, extra, strict=True):
        if more:
            reasons = sorted([*reasons, *more], key=lambda r: -r["contribution"])
            score = sum(r["contribution"] for r in reasons)
        merged.append((score, reasons, forced))
    return merged


def tune_gc() -> None:
    """Batches allocate many short-lived dicts while the worker's tables keep many long-lived
    ones: with the default first-generation threshold (700) the collector rescans the tables
    thousands of times a second. A larger one cuts the assessment time by about a third."""
    gc.set_threshold(50_000, 20, 100)


def freeze_start_up() -> None:
    """Once the worker is ready: what start-up left (modules, settings, the model, recovered
    tables) goes to the collector's permanent generation, so no full collection walks it
    again; garbage is collected first so none is kept for good."""
    gc.collect()
    gc.freeze()


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
        stopwatch: Stopwatch | None = None,
    ) -> None:
        """``partitions``: of the filing topics (and the internal ones), which decides the
        seller partition of an observation; ``finding_decoder``: for ``amend``;
        ``stopwatch``: where the stages' CPU time is added up (the runtime exports it)."""
        self.stopwatch = stopwatch or Stopwatch()
        if scorer is not None:
            scorer.stopwatch = self.stopwatch
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
        self._versions: tuple[TargetingRules, dict[str, str]] | None = None

    def reconfigure(
        self,
        quality_rules: quality.QualityRules | None = None,
        lists: Lists | None = None,
        revenue_settings: RevenueSettings | None = None,
        pattern_settings: PatternSettings | None = None,
        lanes: LaneSettings | None = None,
    ) -> None:
        """Put reloaded settings sets in force (settings.watch), with what is derived from
        them; the next batch uses them and its decisions record their versions."""
        if quality_rules is not None:
            self.quality_rules = quality_rules
            self.rates = quality_rules.reference_rates
            self._bounds_checks = {}
        if lists is not None:
            self.lists = lists
        if revenue_settings is not None:
            self.revenue_settings = revenue_settings
            self._de_minimis_cache = {}
        if pattern_settings is not None:
            self.pattern_settings = pattern_settings
        if lanes is not None:
            self.lanes.reconfigure(lanes)
        self._versions = None

    def settings_versions(self) -> dict[str, str]:
        """The version or digest of every settings set in force (one dict shared by the
        decisions until a set changes)."""
        rules = self.targeting_rules
        if self._versions is None or self._versions[0] is not rules:
            versions = {
                "profiles": rules.version,
                "lists": ",".join(f"{f}@{v}" for f, v in sorted(self.lists.versions.items())),
                "lanes": self.lanes.settings.version,
                "revenue": self.revenue_settings.digest,
                "quality": self.quality_rules.digest,
                "patterns": self.pattern_settings.version,
            }
            self._versions = (rules, versions)
        return self._versions[1]

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
        flags: Sequence[list[dict]] = (),
        learns: Sequence[bool] = (),
    ) -> tuple[list[Scored], list[dict | None], list[ModelPart | None], list[dict] | None]:
        """Rule scores with the list matches, plus for pre-arrival the revenue,
        stateful-pattern and risk-model reasons and ``flags`` (reasons the seller-keyed
        patterns found later), all adding up to the score. ``learns``: per filing, whether
        the pattern state learns from it (default: all do) or only judges it. Last: the
        declarations' canonical rows (built once, for the model and the summaries)."""
        part = self.stopwatch.part
        with part("targeting"):
            scores = score_batch(facts, self.targeting_rules)
        with part("lists"):
            extra = match_batch(records, stage, self.lists)
        if flags:
            extra = [a + f for a, f in zip(extra, flags, strict=True)]
        revenues: list = [None] * len(records)
        models: list[ModelPart | None] = [None] * len(records)
        rows = None
        if stage == PRE_ARRIVAL:
            with part("canonical rows"):
                rows = [canonical_row(r, self.rates) for r in records]
            with part("revenue"):
                revenues = assess_revenue_batch(records, self.revenue_settings)
            extra = [a + (r.reasons if r else []) for a, r in zip(extra, revenues, strict=True)]
            if self.scorer is not None:
                models = self.scorer.score(records, self.rates, rows)
                extra = [
                    a + ([m.reason] if m and m.reason else [])
                    for a, m in zip(extra, models, strict=True)
                ]
        if stage == PRE_ARRIVAL and patterns is not None:  # stateful: only with a state
            started = time.thread_time()
            # value norms and carrier trends: learnt per filing partition, in its order
            by_partition: dict[tuple[int, bool], list[int]] = {}
            for i, p in enumerate(partitions):
                by_partition.setdefault((p, learns[i] if learns else True), []).append(i)
            found: list[list[dict]] = [[] for _ in records]
            judged = _read_only(patterns)  # what only judges writes nothing
            for (p, learn), at in by_partition.items():
                result = detect_batch(
                    [records[i] for i in at],
                    [facts[i].total_value for i in at],
                    [bool(facts[i].finding_codes) for i in at],
                    patterns if learn else judged,
                    now_ms,
                    self.pattern_settings,
                    self.de_minimis,
                    kinds=FILING_PATTERNS,
                    scope=p,
                )
                for i, reasons in zip(at, result.reasons, strict=True):
                    found[i] = reasons
            extra = [a + b for a, b in zip(extra, found, strict=True)]
            self.stopwatch.add("patterns", time.thread_time() - started)
        return (
            _merge(scores, extra),
            [rev.as_record() if rev is not None else None for rev in revenues],
            models,
            rows,
        )

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
        with self.stopwatch.part("decode"):
            decoded = self.decoders[stage].decode_batch([messages[i].value for i in sized])
        within = self._bounds_check(stage)
        records: list[dict] = []
        positions: list[int] = []
        started = time.thread_time()
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
        self.stopwatch.add("bounds", time.thread_time() - started)
        keys = [messages[pos].key for pos in positions]
        started = time.thread_time()
        reports = quality.assess_batch(records, stage, self.quality_rules, keys)
        usable: list[tuple[int, dict, quality.QualityReport]] = []
        for pos, record, report in zip(positions, records, reports, strict=True):
            rejected = quality.effect(report, stage, self.quality_rules).rejected
            if rejected is not None:  # answered under its house waybill, whatever its key
                why = f"{rejected['field']}: {rejected['message']}"
                out.findings.update(f["code"] for f in report.findings)
                waybill = record["house_waybill"].encode()
                dead_letter(
                    out, stage, messages[pos], rejected["code"], why, None, record, now_ms, waybill
                )
            elif report.unusable:
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
        self.stopwatch.add("quality", time.thread_time() - started)
        self._decide_rounds(stage, out, usable, messages, links, now_ms, patterns, summaries, lanes)
        return out

    def _decide_rounds(
        self,
        stage: str,
        out: BatchOutcome,
        usable: list[tuple[int, dict, quality.QualityReport]],
        messages: Sequence[InboundMessage],
        links: MutableMapping[str, dict],
        now_ms: int,
        patterns: MutableMapping[str, dict] | None,
        summaries: MutableMapping[str, dict] | None,
        lanes: MutableMapping[str, dict] | None,
    ) -> None:
        """Decide the batch's filings in rounds of one filing per house waybill: a waybill's
        second filing in a batch amends its first, as it would in the next batch."""
        for batch in _rounds(usable, lambda item: item[1]["house_waybill"]):
            jobs = [
                self._filing_job(stage, messages[pos], pos, record, report, links)
                for pos, record, report in batch
            ]
            decided = self._engine(stage, jobs, now_ms, patterns, lanes)  # in offset order
            for job, decision in zip(jobs, decided, strict=True):
                self._publish(out, job, decision, links, now_ms)
            self._keep_summaries(list(zip(jobs, decided, strict=True)), summaries)
            self._reassess(stage, out, jobs, links, now_ms, patterns, summaries, lanes)
            if stage == PRE_ARRIVAL and patterns is not None:
                firsts = [(j, d) for j, d in zip(jobs, decided, strict=True) if j.previous is None]
                self._observe(out, [j for j, _ in firsts], [d for _, d in firsts])

    def _filing_job(
        self,
        stage: str,
        msg: InboundMessage,
        pos: int,
        record: dict,
        report: quality.QualityReport,
        links: Mapping[str, dict],
    ) -> _Job:
        """A filing as received: a first filing (revision 0) or an amendment of the latest one
        of its stage for the house waybill (the next revision)."""
        entry = links.get(record["house_waybill"]) or {}
        previous = entry.get(SIDE[stage])
        return _Job(
            stage=stage,
            record=record,
            report=report,
            msg=msg,
            trigger=pos,
            did=decision_id(stage, msg.value or b""),
            revision=previous["revision"] + 1 if previous else 0,
            previous=previous,
            other=entry.get(SIDE[OTHER_STAGE[stage]]),
            flags=list((previous or {}).get("flags") or []),
            cause="AMENDMENT" if previous else "FILING",
        )

    def _engine(
        self,
        stage: str,
        jobs: Sequence[_Job],
        now_ms: int,
        patterns: MutableMapping[str, dict] | None,
        lanes: MutableMapping[str, dict] | None,
    ) -> list[dict]:
        """The whole assessment of filings of one stage, whatever caused it (a filing, an
        amendment, the other filing, a pattern finding): quality findings as given, rules,
        lists, revenue, patterns and model, routing and lanes, then the one builder."""
        if not jobs:
            return []
        arrival = stage == PRE_ARRIVAL
        clock = self.stopwatch
        started = time.thread_time()
        facts = [
            filing_facts(
                j.record,
                stage,
                frozenset(f["code"] for f in j.report.findings),
                j.report.score,
                j.other["outcome"] if arrival and j.other else None,
                j.other is not None,
                self.rates,
            )
            for j in jobs
        ]
        clock.add("facts", time.thread_time() - started)
        scores, revenues, models, rows = self._score(
            stage,
            facts,
            [j.record for j in jobs],
            patterns,
            now_ms,
            [j.msg.partition for j in jobs],
            [j.flags for j in jobs],
            # a consignment counts once in the pattern state: its first declaration teaches,
            # amendments and re-assessments only read
            [j.cause == "FILING" for j in jobs],
        )
        for j, row in zip(jobs, rows or (), strict=False):
            j.row = row
        started = time.thread_time()
        decisions = [
            self._decision(
                stage,
                j.record,
                j.report,
                _with_effect(scored, quality.effect(j.report, stage, self.quality_rules)),
                j.msg,
                j.did,
                j.revision,
                j.other,
                rev,
                model,
                j.cause,
            )
            for j, scored, rev, model in zip(jobs, scores, revenues, models, strict=True)
        ]
        previous = [j.previous["route"] if j.previous else None for j in jobs]
        changes = self.lanes.allocate(decisions, now_ms, lanes, previous)
        propensity = self.lanes.selection_propensity
        decided = [
            apply_change(d, c, propensity(d)) for d, c in zip(decisions, changes, strict=True)
        ]
        clock.add("decisions and lanes", time.thread_time() - started)
        return decided

    def _keep_summaries(
        self,
        published: Sequence[tuple[_Job, dict]],
        summaries: MutableMapping[str, dict] | None,
    ) -> None:
        """What the feedback join needs of every published pre-arrival decision, revisions
        included, so an outcome for any of them joins (one batch call)."""
        arrival = [(j, d) for j, d in published if d["stage"] == PRE_ARRIVAL]
        if summaries is None or not arrival:
            return
        with self.stopwatch.part("summaries"):
            made = summaries_from_decisions(
                [d for _, d in arrival],
                [j.record for j, _ in arrival],
                self.rates,
                [j.row for j, _ in arrival],
            )
        for (job, decision), summary in zip(arrival, made, strict=True):
            summaries[decision["decision_id"]] = summary | {"partition": job.msg.partition}

    def _publish(
        self,
        out: BatchOutcome,
        job: _Job,
        decision: dict,
        links: MutableMapping[str, dict],
        now_ms: int,
    ) -> None:
        """Emit a decision (answered to the carrier under its filing's key) and make it the
        latest of its stage in the link entry."""
        msg = job.msg
        emit(out, decision, job.trigger, msg.key, now_ms)
        waybill = decision["house_waybill"]
        entry = dict(links.get(waybill) or {})
        entry[SIDE[decision["stage"]]] = {
            "decision_id": decision["decision_id"],
            "revision": decision["revision"],
            "route": decision["route"],
            "outcome": decision["placi_outcome"],
            "shown": shown_codes(decision),
            # the filing itself, as received: what a re-assessment decodes and assesses again
            "filing": base64.b64encode(msg.value or b"").decode("ascii"),
            "source": [msg.topic, msg.partition, msg.offset],
            "key": (msg.key or b"").decode("utf-8", "replace"),
            "timestamp_ms": msg.timestamp_ms,
            "flags": job.flags,
        }
        # for the retention sweep: event time (replays agree) and where the changelog lives
        entry["filed_at"] = max(entry.get("filed_at", 0), job.record["filing_time"])
        entry["partition"] = msg.partition
        links[waybill] = entry

    def _stored_jobs(
        self,
        stage: str,
        wanted: Sequence[tuple[str, int, list[dict] | None]],
        links: Mapping[str, dict],
    ) -> list[_Job]:
        """Re-assessment jobs for the latest ``stage`` filing of each (waybill, trigger
        position, flags to set) that has one kept: decoded and quality-checked again, with
        the settings in force now."""
        found = []
        for waybill, trigger, flags in wanted:
            entry = links.get(waybill) or {}
            side = entry.get(SIDE[stage])
            if side and side.get("filing"):
                found.append((entry, side, trigger, flags))
        if not found:
            return []
        values = [base64.b64decode(side["filing"]) for _, side, _, _ in found]
        decoded = self.decoders[stage].decode_batch(values)
        kept = [
            (f, v, r) for f, v, r in zip(found, values, decoded, strict=True) if isinstance(r, dict)
        ]
        reports = quality.assess_batch([r for _, _, r in kept], stage, self.quality_rules)
        jobs = []
        for ((entry, side, trigger, flags), value, record), report in zip(
            kept, reports, strict=True
        ):
            if report.unusable:
                continue
            topic, partition, offset = side["source"]
            key = side["key"].encode()
            msg = InboundMessage(key, value, topic, partition, offset, side["timestamp_ms"])
            revision = side["revision"] + 1
            jobs.append(
                _Job(
                    stage=stage,
                    record=record,
                    report=report,
                    msg=msg,
                    trigger=trigger,
                    did=revision_id(side["decision_id"], revision),
                    revision=revision,
                    previous=side,
                    other=entry.get(SIDE[OTHER_STAGE[stage]]),
                    flags=list(side.get("flags") or []) if flags is None else flags,
                    cause="OTHER_FILING" if flags is None else "PATTERN_FINDING",
                    force_publish=flags is not None,
                )
            )
        return jobs

    def _reassess(
        self,
        stage: str,
        out: BatchOutcome,
        jobs: Sequence[_Job],
        links: MutableMapping[str, dict],
        now_ms: int,
        patterns: MutableMapping[str, dict] | None,
        summaries: MutableMapping[str, dict] | None,
        lanes: MutableMapping[str, dict] | None,
    ) -> None:
        """Re-assess the other filing of every consignment a filing of ``stage`` (new or
        amended) changed, if the other stage's rules read anything of this one."""
        other = OTHER_STAGE[stage]
        if not self.targeting_rules.reads_link(other):
            return
        wanted = [(j.record["house_waybill"], j.trigger, None) for j in jobs]
        self._revise(
            out, self._stored_jobs(other, wanted, links), links, now_ms, patterns, summaries, lanes
        )

    def _revise(
        self,
        out: BatchOutcome,
        jobs: list[_Job],
        links: MutableMapping[str, dict],
        now_ms: int,
        patterns: MutableMapping[str, dict] | None,
        summaries: MutableMapping[str, dict] | None,
        lanes: MutableMapping[str, dict] | None,
    ) -> None:
        """Assess kept filings again with the full engine; a new revision is published when
        the route, the PLACI outcome or the codes shown to the carrier change (or the job
        says so: a new pattern reason)."""
        if not jobs:
            return
        stage = jobs[0].stage
        decisions = self._engine(stage, jobs, now_ms, patterns, lanes)
        published = []
        for job, decision in zip(jobs, decisions, strict=True):
            side = job.previous or {}
            changed = job.force_publish or (
                decision["route"],
                decision["placi_outcome"],
                shown_codes(decision),
            ) != (side.get("route"), side.get("outcome"), side.get("shown"))
            if changed:
                self._publish(out, job, decision, links, now_ms)
                published.append((job, decision))
        self._keep_summaries(published, summaries)

    def _observe(self, out: BatchOutcome, jobs: Sequence[_Job], decisions: list[dict]) -> None:
        """Re-key each first declaration by seller for the seller-keyed patterns
        (core.entities); its decision's id names the observation."""
        cfg = self.pattern_settings
        if not any(getattr(cfg, name).enabled for name in ENTITY_PATTERNS):
            return
        for job, decision in zip(jobs, decisions, strict=True):
            record, msg = job.record, job.msg
            total, _ = totals(record["items"], self.rates)
            obs = observe(record, total, self.de_minimis(record["destination_country"]), cfg)
            obs["filing_time"] = min(obs["filing_time"], msg.timestamp_ms or obs["filing_time"])
            obs.update(
                observation_id=decision["decision_id"],
                filing_partition=msg.partition,
                received_at=msg.timestamp_ms,
            )
            seller = obs["seller_key"]
            partition = seller_partition(seller, self.partitions)
            out.forwards.append(Forward(OBSERVATION, seller.encode(), partition, obs, job.trigger))

    def amend(
        self,
        messages: Sequence[InboundMessage],
        links: MutableMapping[str, dict],
        now_ms: int,
        patterns: MutableMapping[str, dict] | None = None,
        summaries: MutableMapping[str, dict] | None = None,
        replay_log: MutableMapping[str, dict] | None = None,
        lanes: MutableMapping[str, dict] | None = None,
    ) -> BatchOutcome:
        """Re-assess consignments that pattern findings (core.entities) now include, read on
        the partition of their house waybills: the finding's reason joins the declaration's
        kept reasons and the full engine runs again; a new revision per consignment and
        pattern, never twice. ``replay_log``: a redelivered finding republishes what it made."""
        if replay_log is not None:
            ids = [message_id(FINDING, m.value) for m in messages]
            fresh = partial(
                self.amend,
                links=links,
                now_ms=now_ms,
                patterns=patterns,
                summaries=summaries,
                lanes=lanes,
            )
            return replay_logged(ids, messages, replay_log, now_ms, fresh)
        if self.finding_decoder is None:
            raise ValueError("Assessor.amend needs a finding_decoder")
        out = BatchOutcome()
        decoded = self.finding_decoder.decode_batch([m.value for m in messages])
        found: list[tuple[int, dict]] = []
        for pos, item in enumerate(decoded):
            if isinstance(item, DecodeFailure):
                msg = messages[pos]
                dead_letter(
                    out, None, msg, item.error_code, item.message, item.schema_id, None, now_ms
                )
            else:
                found.append((pos, item))
        for batch in _rounds(found, lambda f: f[1]["house_waybill"]):
            wanted = []
            applied = []
            for pos, item in batch:
                side = (links.get(item["house_waybill"]) or {}).get(SIDE[PRE_ARRIVAL])
                flags = list((side or {}).get("flags") or [])
                if (
                    not side
                    or not side.get("filing")
                    or item["reason"]["code"] in {f["code"] for f in flags}
                ):
                    out.unapplied += 1
                    continue
                wanted.append((item["house_waybill"], pos, [*flags, item["reason"]]))
                applied.append(item)
            jobs = self._stored_jobs(PRE_ARRIVAL, wanted, links)
            out.unapplied += len(wanted) - len(jobs)
            done = {j.record["house_waybill"] for j in jobs}
            self._revise(out, jobs, links, now_ms, patterns, summaries, lanes)
            out.amended_from += [i["received_at"] for i in applied if i["house_waybill"] in done]
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
        core = partial(self.assess, stage)
        tables = (links, patterns, summaries, replay_log, lanes)
        return _isolated(core, messages, tables, stage, now_ms)

    def amend_isolated(
        self,
        messages: Sequence[InboundMessage],
        links: MutableMapping[str, dict],
        now_ms: int,
        patterns: MutableMapping[str, dict] | None = None,
        summaries: MutableMapping[str, dict] | None = None,
        replay_log: MutableMapping[str, dict] | None = None,
        lanes: MutableMapping[str, dict] | None = None,
    ) -> BatchOutcome:
        """``amend``, each finding that breaks it dead-lettered alone."""
        tables = (links, patterns, summaries, replay_log, lanes)
        return _isolated(self.amend, messages, tables, None, now_ms)

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
        cause: str = "FILING",
    ) -> dict:
        """The one builder of a decision record (a filing, an amendment, a re-assessment):
        every revision carries the same fields. ``identity``: the filing's record."""
        score, reasons, forced = scored
        rules = self.targeting_rules
        codes = {r["code"] for r in reasons}
        forced = forced_by_reasons(stage, codes, rules.thresholds, forced)
        route, placi = route_for(stage, score, rules.thresholds, forced)
        return {
            "decision_id": did,
            "revision": revision,
            "revision_cause": cause,
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
            "settings_versions": self.settings_versions(),
            "filing_time": identity["filing_time"],
            "source_topic": msg.topic,
            "source_partition": msg.partition,
            "source_offset": msg.offset,
        }
