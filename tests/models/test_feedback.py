from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json

import numpy as np
import polars as pl
import pytest

from greenlane.models.cli import add_subcommands
from greenlane.models.config import load_model_settings
from greenlane.models.feedback import (
    FEEDBACK_COLUMNS,
    INCOMPLETE_DECLARATION,
    NOT_PRE_ARRIVAL,
    UNKNOWN_DECISION,
    UNKNOWN_RESULT,
    WAYBILL_MISMATCH,
    LabelledHistory,
    join_outcomes,
    labelled_frame,
    summaries_from_decisions,
    summary_from_decision,
)
from greenlane.models.registry import Registry
from greenlane.models.retrain import format_result, held_out, retrain, selection_weights
from greenlane.models.schema import CANONICAL
from greenlane.models.stream import canonical_rows
from greenlane.models.train import train
from greenlane.streams.devtools.history import generate_history
from greenlane.streams.devtools.simulator import generate
from greenlane.streams.stages.quality import load_quality_rules

RATES = dict(load_quality_rules().reference_rates)
LATEST_DAYS = 60


# --------------------------------------------------------------------------- join


@pytest.fixture(scope="module")
def declarations():
    filings = generate(60, seed=3, invalid_share=0.0, start_ms=1_750_000_000_000)
    return [f.value for f in filings if f.role == "pre_arrival"][:6]


def _decision(record: dict, n: int, stage: str = "PRE_ARRIVAL", **extra) -> dict:
    return {
        "decision_id": f"D{n}",
        "house_waybill": record["house_waybill"],
        "stage": stage,
        "route": "INSPECT",
        "risk_score": 4.5,
        "random_pick": False,
        "selection_propensity": 1.0,
        "model_probability": 0.31,
        "model_version": "v0003",
        "destination_country": record["destination_country"],
        "filing_time": record["filing_time"],
        "reasons": [{"code": "ignored"}],
        **extra,
    }


def _outcome(decision: dict, result: str, revenue: float = 0.0, currency: str = "EUR") -> dict:
    return {
        "decision_id": decision["decision_id"],
        "house_waybill": decision["house_waybill"],
        "officer": "officer-7",
        "result": result,
        "recovered_revenue": revenue,
        "currency": currency,
        "inspected_at": 1_750_100_000_000,
        "notes": None,
    }


def test_summary_is_the_stream_mapping_and_json_safe(declarations):
    record = declarations[0]
    summary = summary_from_decision(_decision(record, 0), record, RATES)
    scored = canonical_rows([record], RATES).row(0, named=True)
    for role in CANONICAL:
        if role not in ("date", "fraud", "revenue_recovered"):
            assert summary[role] == scored[role], role
    assert summary["date"] == scored["date"].isoformat()
    assert summary["model_version"] == "v0003" and summary["random_pick"] is False
    assert "reasons" not in summary
    assert json.loads(json.dumps(summary)) == summary
    pre_loading = summary_from_decision(_decision(record, 1, "PRE_LOADING"), record, RATES)
    assert pre_loading["stage"] == "PRE_LOADING" and "hs_code" not in pre_loading


def test_join_labels_matches_and_reports_every_unmatched(declarations):
    records = declarations[:5]
    decisions = [
        _decision(records[0], 0),
        _decision(
            records[1],
            1,
            random_pick=True,
            selection_propensity=0.005,
            model_version=None,
            model_probability=None,
        ),
        _decision(records[2], 2),
        _decision(records[3], 3),
        _decision(records[4], 4, stage="PRE_LOADING"),
    ]
    summaries = summaries_from_decisions(decisions, records, RATES)
    # as a worker's table would hold them: serialised and read back
    table = {s["decision_id"]: json.loads(json.dumps(s)) for s in summaries}
    table["D9"] = {**table["D0"], "decision_id": "D9", "value": None}
    outcomes = [
        _outcome(decisions[0], "SEIZED", 100.0, "USD"),
        _outcome(decisions[1], "NO_FINDINGS"),
        _outcome(decisions[2], "DUTY_ADJUSTED", 40.0, "XXX"),
        _outcome(decisions[3], "REFERRED"),
        _outcome(decisions[4], "SEIZED"),  # on the pre-loading decision
        {**_outcome(decisions[0], "SEIZED"), "decision_id": "D404"},
        {**_outcome(decisions[0], "SEIZED"), "house_waybill": "OTHER-HAWB"},
        {**_outcome(decisions[0], "SEIZED"), "result": "CONFISCATED"},
        {**_outcome(decisions[0], "NO_FINDINGS"), "decision_id": "D9"},
    ]
    rows, unmatched = join_outcomes(outcomes, table, RATES)

    assert [r["decision_id"] for r in rows] == ["D0", "D1", "D2", "D3"]
    assert [r["fraud"] for r in rows] == [1, 0, 1, None]  # REFERRED stays unlabelled
    assert rows[0]["revenue_recovered"] == pytest.approx(100.0 * RATES["USD"])
    assert rows[1]["revenue_recovered"] == 0.0
    assert rows[2]["revenue_recovered"] is None  # currency without a reference rate
    assert [r["random_pick"] for r in rows] == [False, True, False, False]
    assert [r["selection_propensity"] for r in rows] == [1.0, 0.005, 1.0, 1.0]
    assert [r["model_version"] for r in rows] == ["v0003", None, "v0003", "v0003"]
    assert rows[0]["date"] == canonical_rows([records[0]], RATES)["date"][0]
    assert rows[0]["hs_code"] and rows[0]["value"] > 0 and rows[0]["result"] == "SEIZED"
    assert rows[0]["inspected_at"] == dt.datetime(2025, 6, 16, 18, 53, 20, tzinfo=dt.UTC)

    assert len(rows) + len(unmatched) == len(outcomes)
    reasons = {u["outcome"]["decision_id"] + ":" + u["reason"] for u in unmatched}
    assert reasons == {
        f"D4:{NOT_PRE_ARRIVAL}",
        f"D404:{UNKNOWN_DECISION}",
        f"D0:{WAYBILL_MISMATCH}",
        f"D0:{UNKNOWN_RESULT}",
        f"D9:{INCOMPLETE_DECLARATION}",
    }
    assert all(u["detail"] for u in unmatched)

    frame = labelled_frame(rows)
    assert frame.schema["fraud"] == pl.Int8 and frame.schema["date"] == pl.Date
    assert frame.schema["random_pick"] == pl.Boolean
    assert frame["random_pick"].to_list() == [False, True, False, False]


# --------------------------------------------------------------------------- storage


def _labelled(rows: int, seed: int, random_share: float = 0.1) -> pl.DataFrame:
    """A synthetic labelled history as the feedback loop stores it."""
    frame = generate_history(rows, seed=seed)
    rng = np.random.default_rng(seed)
    return labelled_frame(
        frame.with_columns(
            decision_id=pl.format("D{}-{}", pl.lit(seed), pl.int_range(pl.len())),
            random_pick=pl.Series(rng.random(frame.height) < random_share),
            model_version=pl.lit("v0001"),
            result=pl.when(pl.col("fraud") == 1)
            .then(pl.lit("SEIZED"))
            .otherwise(pl.lit("NO_FINDINGS")),
        )
    )


def test_history_appends_parts_and_reads_them_back(tmp_path):
    history = LabelledHistory(tmp_path / "history")
    assert history.read().is_empty()
    assert set(history.read().columns) == set(CANONICAL) | set(FEEDBACK_COLUMNS)
    assert history.append([]) is None
    first = _labelled(300, seed=1)
    history.append(first.head(200))
    history.append(first.tail(100).to_dicts())
    assert len(history.parts()) == 2
    assert not list(history.folder.glob(".part-*"))
    back = history.read()
    assert back.height == 300 and back.schema == first.schema
    assert back.sort("decision_id").equals(first.sort("decision_id"))

    # an outcome delivered again, corrected: the later one wins
    again = first.head(1).with_columns(pl.lit(1, pl.Int8).alias("fraud"), result=pl.lit("SEIZED"))
    history.append(again)
    back = history.read()
    assert back.height == 300
    row = back.filter(pl.col("decision_id") == again["decision_id"][0])
    assert row["fraud"].item() == 1 and row["result"].item() == "SEIZED"


# --------------------------------------------------------------------------- retrain


@pytest.fixture(scope="module")
def fast():
    """Small trees: retraining is judged here, not the trees' quality."""
    training = load_model_settings().training
    return dataclasses.replace(training, max_iter=30, max_leaf_nodes=15, early_stopping=False)


@pytest.fixture(scope="module")
def good():
    return _labelled(8_000, seed=21)


def _permuted(frame: pl.DataFrame, seed: int) -> pl.DataFrame:
    """The same declarations with labels shuffled: a history nothing can be learnt from."""
    order = np.random.default_rng(seed).permutation(frame.height)
    return frame.with_columns(
        pl.Series("fraud", frame["fraud"].to_numpy()[order]),
        pl.Series("revenue_recovered", frame["revenue_recovered"].to_numpy()[order]),
    )


def _before_latest(frame: pl.DataFrame) -> pl.DataFrame:
    """The rows before the held-out period: what a model in force had learnt from."""
    return frame.filter(pl.col("date") < frame["date"].max() - dt.timedelta(days=LATEST_DAYS - 1))


def _install(registry: Registry, model) -> str:
    version = registry.save(model, model.info)
    registry.promote(version)
    return version


def test_retrain_promotes_a_candidate_that_beats_the_current_model(tmp_path, good, spec, fast):
    registry = Registry(tmp_path / "reg")
    weak = _install(registry, train(_permuted(_before_latest(good), 1), spec, fast))
    result = retrain(good, registry, latest_days=LATEST_DAYS, spec=spec, settings=fast)

    assert result.promoted and result.current_version == weak
    assert registry.current() == result.candidate_version != weak
    assert result.candidate["precision@5%"] > 1.5 * result.current["precision@5%"]
    start, end = result.latest_period
    assert end == good["date"].max() and (end - start).days == LATEST_DAYS - 1
    assert result.training_rows == good.filter(pl.col("date") < start).height
    latest = good.filter(pl.col("date") >= start)
    assert result.candidate["declarations"] == latest.height
    picks = latest.filter("random_pick")
    assert result.random_picks == picks.height > 0
    assert result.base_rate == pytest.approx(picks["fraud"].mean(), abs=1e-4)
    assert "random_precision@5%" in result.candidate
    meta = registry.metadata(result.candidate_version)
    assert meta["retrain"]["promoted"] and meta["retrain"]["against"] == weak
    text = format_result(result)
    assert "promoted to current" in text and "precision@5%" in text


def test_retrain_refuses_a_candidate_no_better_than_the_current_model(tmp_path, good, spec, fast):
    registry = Registry(tmp_path / "reg")
    strong = _install(registry, train(_before_latest(_labelled(8_000, seed=22)), spec, fast))
    cutoff = good["date"].max() - dt.timedelta(days=LATEST_DAYS - 1)
    spoilt = pl.concat(  # the candidate's training period carries no signal
        [_permuted(good.filter(pl.col("date") < cutoff), 2), good.filter(pl.col("date") >= cutoff)]
    )
    before = (registry.root / "CURRENT").read_text()
    result = retrain(spoilt, registry, latest_days=LATEST_DAYS, spec=spec, settings=fast)

    assert not result.promoted and result.current_version == strong
    assert (registry.root / "CURRENT").read_text() == before and registry.current() == strong
    assert result.current["precision@5%"] > result.candidate["precision@5%"]
    assert result.candidate_version in registry.versions()  # kept for the record
    assert "not promoted" in format_result(result)


def test_a_current_model_is_never_judged_on_rows_it_learnt_from(tmp_path, good, spec, fast):
    registry = Registry(tmp_path / "reg")
    seen_all = _install(registry, train(good, spec, fast))  # as a refit after a promotion
    result = retrain(good, registry, latest_days=LATEST_DAYS, spec=spec, settings=fast)
    assert not result.promoted and registry.current() == seen_all
    assert f"held out that {seen_all} has not learnt from" in result.reason
    assert result.candidate["declarations"] == 0 and result.current is None


def test_retrain_needs_findings_in_the_latest_period(tmp_path, good, spec, fast):
    cleared = good.with_columns(
        pl.when(pl.col("date") >= good["date"].max() - dt.timedelta(days=5))
        .then(0)
        .otherwise(pl.col("fraud"))
        .cast(pl.Int8)
        .alias("fraud")
    )
    with pytest.raises(ValueError, match="no findings"):
        retrain(cleared, Registry(tmp_path / "reg"), latest_days=5, spec=spec, settings=fast)


def test_rows_are_weighed_by_their_inverse_selection_propensity():
    frame = pl.DataFrame({"selection_propensity": [1.0, 0.005, None, 0.01]})
    weights, without = selection_weights(frame)
    assert weights.tolist() == [1.0, 200.0, 1.0, 100.0] and without == 1
    weights, without = selection_weights(pl.DataFrame({"fraud": [0, 1]}))
    assert weights.tolist() == [1.0, 1.0] and without == 2  # an old history: every row once


def test_a_young_history_holds_out_its_latest_rows_not_days(good):
    [day] = good["date"].sample(1, seed=1).to_list()
    same_day = good.head(1000).with_columns(pl.lit(day).alias("date"))
    latest = held_out(same_day, 30, 0.3)
    assert latest.sum() == 300 and latest[-300:].all() and not latest[:700].any()
    by_days = held_out(good, 30, 0.3)  # a year of history: its latest 30 days
    assert good.filter(pl.Series(by_days))["date"].min() == good["date"].max() - dt.timedelta(
        days=29
    )


def _propensities(frame: pl.DataFrame, rate: float = 0.5) -> pl.DataFrame:
    """Random picks examined only because they were picked (propensity ``rate``)."""
    return frame.with_columns(selection_propensity=pl.when("random_pick").then(rate).otherwise(1.0))


def test_too_few_random_picks_held_out_keep_the_current_model(tmp_path, good, spec, fast):
    registry = Registry(tmp_path / "reg")
    weak = _install(registry, train(_permuted(_before_latest(good), 1), spec, fast))
    sparse = _propensities(good).with_columns(  # random picks only in the first half year
        random_pick=pl.col("random_pick")
        & (pl.col("date") < good["date"].min() + dt.timedelta(180))
    )
    result = retrain(sparse, registry, latest_days=LATEST_DAYS, spec=spec, settings=fast)
    assert not result.promoted and registry.current() == weak
    assert result.random_picks == 0 and "0 random picks" in result.reason
    assert "models.yaml retrain" in result.reason
    assert result.candidate["precision@5%"] > result.current["precision@5%"]  # yet not enough


def test_a_promoted_candidate_learnt_with_weights_and_is_refit_on_all(tmp_path, good, spec, fast):
    registry = Registry(tmp_path / "reg")
    weak = _install(registry, train(_permuted(_before_latest(good), 1), spec, fast))
    history = _propensities(good)
    result = retrain(history, registry, latest_days=LATEST_DAYS, spec=spec, settings=fast)
    assert result.promoted and result.corrected and result.without_propensity == 0
    meta = registry.metadata(result.candidate_version)
    assert meta["weighted"] is True and meta["rows"]["all"] == history.height  # refit on all
    assert meta["judged_as"]["rows"]["all"] == result.training_rows < history.height
    assert meta["retrain"]["against"] == weak and meta["retrain"]["corrected"] is True
    assert "examined_precision@5%" in result.candidate  # the rows once each, beside
    # the weighted figures count each random pick for two consignments
    assert result.candidate["precision@5%"] != result.candidate["examined_precision@5%"]

    plain = retrain(
        history,
        Registry(tmp_path / "plain"),
        latest_days=LATEST_DAYS,
        spec=spec,
        settings=fast,
        correct=False,
    )
    assert plain.corrected is False
    assert registry.metadata(result.candidate_version)["weighted"] is True
    assert Registry(tmp_path / "plain").metadata(plain.candidate_version)["weighted"] is False


# --------------------------------------------------------------------------- command line


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="greenlane")
    add_subcommands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli_retrain_round_trip(tmp_path, capsys):
    folder, reg = tmp_path / "history", tmp_path / "reg"
    assert _run(["retrain", "--history", str(folder), "--registry", str(reg)]) == 1
    assert "no inspection outcomes" in capsys.readouterr().err

    LabelledHistory(folder).append(_labelled(6_000, seed=5))
    argv = ["retrain", "--history", str(folder), "--registry", str(reg), "--latest-days", "90"]
    assert _run(argv) == 0
    out = capsys.readouterr().out
    assert "read 6,000 labelled declarations" in out
    assert "precision@5%" in out and "revenue@5%" in out
    assert "candidate v0001: promoted to current (no current model)" in out
    assert Registry(reg).current() == "v0001"
    assert _run([*argv, "--no-correction"]) == 0
    assert "(unweighted)" in capsys.readouterr().out
    assert Registry(reg).metadata("v0002")["retrain"]["corrected"] is False
