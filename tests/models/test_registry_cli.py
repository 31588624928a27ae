from __future__ import annotations

import json

import pytest

from greenlane.models.registry import Registry, RegistryError
from greenlane.streams.cli import build_parser
from greenlane.streams.devtools.history import generate_history, write_history


def _parse(argv):
    return build_parser().parse_args(argv)


def _run(argv) -> int:
    args = _parse(argv)
    return args.func(args)


def test_registry_versions_list_and_promote(tmp_path):
    registry = Registry(tmp_path / "reg")
    assert registry.list_models() == [] and registry.current() is None
    with pytest.raises(RegistryError):
        registry.load()
    first = registry.save({"weights": 1}, {"metrics": {"precision@5%": 0.4}})
    second = registry.save({"weights": 2}, {"metrics": {"precision@5%": 0.5}})
    assert (first, second) == ("v0001", "v0002")
    assert registry.current() is None
    registry.promote(second)
    assert registry.load() == {"weights": 2}
    listed = registry.list_models()
    assert [m["version"] for m in listed] == ["v0001", "v0002"]
    assert [m["current"] for m in listed] == [False, True]
    assert listed[0]["metrics"]["precision@5%"] == 0.4 and "created" in listed[0]
    registry.promote(first)
    assert registry.load() == {"weights": 1}
    with pytest.raises(RegistryError, match="v0009"):
        registry.promote("v0009")


def test_cli_history_train_list_evaluate_round_trip(tmp_path, capsys):
    data = tmp_path / "history.parquet"
    reg = str(tmp_path / "reg")
    args = _parse(["history", "--rows", "12000", "--seed", "5", "--out", str(data)])
    assert args.func(args) == 0
    args = _parse(["train", "--data", str(data), "--registry", reg])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "precision" in out and "saved model v0001" in out and "PROMOTED" in out

    args = _parse(["models", "list", "--registry", reg])
    assert args.func(args) == 0
    listing = capsys.readouterr().out
    assert "* v0001" in listing

    args = _parse(["models", "list", "--json", "--registry", reg])
    args.func(args)
    (meta,) = json.loads(capsys.readouterr().out)
    assert meta["data_fingerprint"] and meta["features"] and meta["training_window"]
    assert meta["current"] is True

    out_dir = tmp_path / "eval"
    args = _parse(
        [
            "evaluate",
            "--data",
            str(data),
            "--registry",
            reg,
            "--out",
            str(out_dir),
            "--since",
            meta["test_window"][0],
        ]
    )
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "evaluating model v0001 (the current model)" in out
    assert f"from {meta['test_window'][0]}; the " in out  # earlier rows build entity history
    assert "figures are in-sample for it" in out  # the saved model was refit on them
    report = json.loads((out_dir / "evaluation-v0001.json").read_text())
    assert report["model"] == "v0001"
    # the saved model was refit on everything, the test period included: it does at least as
    # well there as the model that was judged before the refit
    assert report["precision@5%"] >= meta["metrics"]["precision@5%"] - 0.02
    assert (out_dir / "evaluation-v0001.png").stat().st_size > 1000


def test_train_says_whether_it_promoted_and_evaluate_which_model_it_judged(tmp_path, capsys):
    data = write_history(generate_history(6_000, seed=2), tmp_path / "h.parquet")
    reg = str(tmp_path / "reg")
    for extra in ([], [], ["--promote"]):
        assert _run(["train", "--data", str(data), "--registry", reg, *extra]) == 0
    out = capsys.readouterr().out
    assert "v0001 in" in out and "v0001 in " + reg + ": PROMOTED" in out
    assert f"v0002 in {reg}: NOT promoted, v0001 stays current" in out
    assert f"v0003 in {reg}: PROMOTED" in out
    assert Registry(reg).current() == "v0003"
    ev = ["evaluate", "--data", str(data), "--registry", reg, "--out", str(tmp_path / "e")]
    assert _run(ev) == 0
    assert "evaluating model v0003 (the current model)" in capsys.readouterr().out
    assert _run([*ev, "--model", "v0002"]) == 0
    assert "evaluating model v0002 (not the current model)" in capsys.readouterr().out
    assert _run([*ev, "--since", "2099-01-01"]) == 1
    assert "no labelled row from 2099-01-01" in capsys.readouterr().err


def test_evaluate_without_revenue_reports_it_absent(tmp_path, capsys):
    frame = generate_history(6_000, seed=2).drop("revenue_recovered")
    data = write_history(frame, tmp_path / "h.csv")
    reg = str(tmp_path / "reg")
    assert _run(["train", "--data", str(data), "--registry", reg]) == 0
    ev = ["evaluate", "--data", str(data), "--registry", reg, "--out", str(tmp_path / "e")]
    assert _run(ev) == 0
    out = capsys.readouterr().out
    assert "0.000" not in out.split("evaluating")[-1] and "—" in out
    report = json.loads((tmp_path / "e" / "evaluation-v0001.json").read_text())
    assert report["revenue@5%"] is None and report["precision@5%"] > 0


def test_cli_missing_model_is_one_line(tmp_path, capsys):
    data = write_history(generate_history(500, seed=1), tmp_path / "h.csv")
    args = _parse(["evaluate", "--data", str(data), "--registry", str(tmp_path / "empty")])
    assert args.func(args) == 1
    assert "no current model" in capsys.readouterr().err
