from __future__ import annotations

import json

import pytest

from greenlane.models.registry import Registry, RegistryError
from greenlane.streams.cli import build_parser
from greenlane.streams.devtools.history import generate_history, write_history


def _parse(argv):
    return build_parser().parse_args(argv)


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
    assert "precision" in out and "saved model v0001" in out and "promoted" in out

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
    report = json.loads((out_dir / "evaluation-v0001.json").read_text())
    assert report["precision@5%"] == pytest.approx(meta["metrics"]["precision@5%"], abs=1e-9)
    assert (out_dir / "evaluation-v0001.png").stat().st_size > 1000


def test_cli_missing_model_is_one_line(tmp_path, capsys):
    data = write_history(generate_history(500, seed=1), tmp_path / "h.csv")
    args = _parse(["evaluate", "--data", str(data), "--registry", str(tmp_path / "empty")])
    assert args.func(args) == 1
    assert "no current model" in capsys.readouterr().err
