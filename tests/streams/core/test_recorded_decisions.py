"""A recorded batch of filings and the decisions the batch core made for them, compared field by
field: a change meant to be faster (issue #11) must leave every decision as it was.

The filings are the simulator's (seed 41, fixed start time, some invalid), assessed in-process
in batches of 500, pre-loading before pre-arrival, rules only (no model: its scores would tie
the record to one scikit-learn build). After a change that is *meant* to alter decisions,
record again and say so in the commit:
``.venv/bin/python -m tests.streams.core.test_recorded_decisions --record``.
"""

from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path

from greenlane.streams.core.pipeline import Assessor
from greenlane.streams.devtools.bench_core import ROLE_STAGE, in_process_codecs
from greenlane.streams.devtools.simulator import generate
from greenlane.streams.domain.batch import InboundMessage
from greenlane.streams.domain.state import Overlay
from greenlane.streams.domain.vocabulary import PRE_ARRIVAL, PRE_LOADING
from greenlane.streams.stages import quality
from greenlane.streams.stages.targeting import load_targeting_rules

RECORD = Path(__file__).parent / "data" / "recorded_decisions.json.gz"
START_MS = 1_790_000_000_000
FILINGS = 3_000
BATCH = 500


def outputs() -> list[dict]:
    """Every decision and dead letter of the recorded traffic, in the order made."""
    decoders, encoders = in_process_codecs()
    assessor = Assessor(quality.load_quality_rules(), load_targeting_rules(), decoders)
    tables: dict[str, dict] = {"links": {}, "patterns": {}, "summaries": {}, "lanes": {}}
    filings = list(generate(FILINGS, seed=41, start_ms=START_MS, invalid_share=0.02))
    out: list[dict] = []
    for start in range(0, len(filings), BATCH):
        batch = filings[start : start + BATCH]
        for stage in (PRE_LOADING, PRE_ARRIVAL):
            part = [(i, f) for i, f in enumerate(batch, start) if ROLE_STAGE[f.role] == stage]
            messages = [
                InboundMessage(
                    f.key,
                    f.raw if f.value is None else encoders[stage].encode(f.value),
                    f.role,
                    0,
                    i,
                    START_MS + i,
                )
                for i, f in part
            ]
            if not messages:
                continue
            view = {name: Overlay(table) for name, table in tables.items()}
            result = assessor.assess(
                stage,
                messages,
                view["links"],
                START_MS + start + BATCH,
                patterns=view["patterns"],
                summaries=view["summaries"],
                lanes=view["lanes"],
            )
            for name, overlay in view.items():
                overlay.commit_to(tables[name])
            out += [{"decision": d} for d in result.decisions]
            out += [{"dead_letter": {**d, "value": None}} for _, d in result.dead_letters]
    return json.loads(json.dumps(out, default=repr))  # as stored: JSON types only


def test_every_decision_is_the_recorded_one_field_by_field():
    recorded = json.loads(gzip.decompress(RECORD.read_bytes()))
    made = outputs()
    assert len(made) == len(recorded)
    for i, (now, then) in enumerate(zip(made, recorded, strict=True)):
        assert now == then, f"output {i} differs from the record"


if __name__ == "__main__" and "--record" in sys.argv:
    RECORD.parent.mkdir(parents=True, exist_ok=True)
    RECORD.write_bytes(gzip.compress(json.dumps(outputs(), sort_keys=True).encode(), mtime=0))
    print(f"recorded {RECORD}")
