"""What each stage of the batch core costs per filing, measured in-process on simulated traffic.

`greenlane bench` reports it next to the stream figures so the cost of the risk engine
(lists, revenue, stateful patterns, lanes) is visible apart from Kafka and Faust.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

from greenlane.streams.core.pipeline import Assessor, tune_gc
from greenlane.streams.devtools.simulator import generate
from greenlane.streams.domain.batch import InboundMessage
from greenlane.streams.domain.state import Overlay
from greenlane.streams.domain.vocabulary import PRE_ARRIVAL, PRE_LOADING
from greenlane.streams.runtime.serde import WireDecoder, WireEncoder, load_schema
from greenlane.streams.settings import schema_path
from greenlane.streams.stages import quality
from greenlane.streams.stages.enrichment import filing_facts
from greenlane.streams.stages.patterns import detect_batch
from greenlane.streams.stages.revenue import assess_revenue_batch
from greenlane.streams.stages.targeting import load_targeting_rules, score_batch
from greenlane.streams.stages.watchlists import match_batch

ROLE_STAGE = {"pre_loading": PRE_LOADING, "pre_arrival": PRE_ARRIVAL}
BATCH = 1000
NOW_MS = 1_795_000_000_000


def _per_filing(fn: Callable[[], object], n: int) -> float:
    started = time.perf_counter()
    fn()
    return round(1e6 * (time.perf_counter() - started) / n, 1)


def in_process_codecs() -> tuple[dict[str, WireDecoder], dict[str, WireEncoder]]:
    """Decoders and encoders of the two filing stages with a registry of two fixed ids held
    in memory: the batch core run in-process, without Kafka or a registry."""
    schemas = {st: load_schema(schema_path(role)) for role, st in ROLE_STAGE.items()}
    ids = {PRE_LOADING: 1, PRE_ARRIVAL: 2}
    by_id = {ids[st]: json.dumps(schemas[st]) for st in schemas}
    decoders = {st: WireDecoder(schemas[st], by_id.get) for st in schemas}
    return decoders, {st: WireEncoder(schemas[st], ids[st]) for st in schemas}


def core_costs(count: int = 20_000, seed: int = 5) -> dict:
    """µs per filing of each stage, per filing stage, in batches of 1,000.

    The collector is tuned as in the worker (see streams/cli.py), so figures match the stream.
    """
    tune_gc()
    decoders, encoders = in_process_codecs()
    rules = quality.load_quality_rules()
    assessor = Assessor(rules, load_targeting_rules(), decoders)
    decision_encoder = WireEncoder(load_schema(schema_path("release")), 3)
    messages: dict[str, list[InboundMessage]] = {PRE_LOADING: [], PRE_ARRIVAL: []}
    for i, f in enumerate(generate(count, seed=seed, invalid_share=0.0)):
        stage = ROLE_STAGE[f.role]
        messages[stage].append(InboundMessage(f.key, encoders[stage].encode(f.value), "t", 0, i, 0))
    return {
        stage.lower(): _stage_costs(stage, msgs, assessor, decision_encoder)
        for stage, msgs in messages.items()
    }


def _stage_costs(
    stage: str, msgs: list[InboundMessage], assessor: Assessor, decision_encoder: WireEncoder
) -> dict:
    rules = assessor.quality_rules
    decoder = assessor.decoders[stage]
    n = len(msgs)
    batches = [msgs[k : k + BATCH] for k in range(0, n, BATCH)]
    records = [r for b in batches for r in decoder.decode_batch([m.value for m in b])]
    reports = quality.assess_batch(records, stage, rules)
    facts = [
        filing_facts(
            r,
            stage,
            frozenset(f["code"] for f in q.findings),
            q.score,
            None,
            False,
            rules.reference_rates,
        )
        for r, q in zip(records, reports, strict=True)
    ]
    figures = {
        "decode": _per_filing(
            lambda: [decoder.decode_batch([m.value for m in b]) for b in batches], n
        ),
        "quality": _per_filing(lambda: quality.assess_batch(records, stage, rules), n),
        "targeting_rules": _per_filing(lambda: score_batch(facts, assessor.targeting_rules), n),
        "lists": _per_filing(lambda: match_batch(records, stage, assessor.lists), n),
    }
    if stage == PRE_ARRIVAL:
        figures["revenue"] = _per_filing(
            lambda: assess_revenue_batch(records, assessor.revenue_settings), n
        )
        figures["patterns"] = _per_filing(
            lambda: detect_batch(
                records,
                [f.total_value for f in facts],
                [bool(f.finding_codes) for f in facts],
                {},
                NOW_MS,
                assessor.pattern_settings,
                assessor.de_minimis,
            ),
            n,
        )
    tables: dict[str, dict] = {"links": {}, "patterns": {}, "summaries": {}}
    results = []

    def run_all() -> None:
        for b in batches:  # through per-batch overlays, committed to dicts, as the worker does
            view = {name: Overlay(table) for name, table in tables.items()}
            arrival = stage == PRE_ARRIVAL
            o = assessor.assess(
                stage,
                b,
                view["links"],
                NOW_MS,
                view["patterns"] if arrival else None,
                view["summaries"] if arrival else None,
            )
            for name, overlay in view.items():
                tables[name].update(overlay.changes())
            results.append(o)

    figures["whole_batch_core"] = _per_filing(run_all, n)
    decisions = [d for o in results for d in o.decisions]
    figures["encode_decision"] = _per_filing(
        lambda: [decision_encoder.encode(d) for d in decisions], n
    )
    return figures


if __name__ == "__main__":
    print(json.dumps(core_costs()))
