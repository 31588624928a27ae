"""`greenlane train | evaluate | models | history | retrain`: the risk model from the command line.

``add_subcommands`` is called by streams/cli.py; each ``*_main(args)`` returns an exit code.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import date
from pathlib import Path

from greenlane.models.config import load_model_settings


def _say(message: str) -> None:
    print(message, flush=True)


def _registry_errors(func):
    """A missing model or version is a one-line message, not a traceback."""

    def run(args: argparse.Namespace) -> int:
        from greenlane.models.registry import RegistryError

        try:
            return func(args)
        except RegistryError as exc:
            print(f"greenlane: {exc}", file=sys.stderr)
            return 1

    return run


def train_main(args: argparse.Namespace) -> int:
    from greenlane.models.evaluate import format_metrics
    from greenlane.models.features import default_spec
    from greenlane.models.mapping import check_servable, load_history, load_mapping
    from greenlane.models.registry import Registry, save_trained
    from greenlane.models.train import train

    settings = load_model_settings()
    mapping = load_mapping(args.mapping) if args.mapping else None
    if mapping:
        check_servable(mapping)
    _say(f"reading {args.data}")
    frame = load_history(args.data, mapping)
    spec = default_spec(
        settings.features,
        mapping.extra_categorical if mapping else (),
        mapping.extra_numeric if mapping else (),
        mapping.extra_filing if mapping else None,
    )
    try:
        model = train(frame, spec, settings.training, _say, tuple(settings.evaluation.budgets))
    except ValueError as exc:  # too little history to split, or no fraud in a period
        print(f"greenlane train: {args.data}: {exc}", file=sys.stderr)
        return 1
    registry = Registry(args.registry)
    before = registry.current()
    version, promoted = save_trained(registry, model, args.data, args.mapping, args.promote)
    start, end = model.info["test_window"]
    _say(f"held-out test period {start} .. {end} (model fit before it; saved refit on all):")
    _say(format_metrics(model.info["metrics"], settings.evaluation.budgets))
    if promoted:
        _say(f"saved model {version} in {registry.root}: PROMOTED, it is the current model")
    else:
        _say(
            f"saved model {version} in {registry.root}: NOT promoted, {before} stays current "
            f"(use --promote, or `greenlane models promote {version}`)"
        )
    return 0


def evaluate_main(args: argparse.Namespace) -> int:
    import polars as pl

    from greenlane.models.evaluate import (
        budget_metrics,
        format_metrics,
        plot_budget_curve,
        write_report,
    )
    from greenlane.models.mapping import load_history, load_mapping
    from greenlane.models.registry import Registry
    from greenlane.models.schema import DATE, LABEL, recovered_revenue

    settings = load_model_settings()
    registry = Registry(args.registry)
    current = registry.current()
    version = args.model or current
    model = registry.load(version)
    which = "the current model" if version == current else "not the current model"
    _say(f"evaluating model {version} ({which}) on {args.data}")
    mapping = load_mapping(args.mapping) if args.mapping else None
    frame = load_history(args.data, mapping).filter(pl.col(LABEL).is_not_null())
    # entity history from the whole file, earlier dates only: rows before --since feed it
    score = model.score(frame)
    if args.since:
        since = _iso_date(args.since, "--since")
        keep = (frame.get_column(DATE) >= since).to_numpy()
        if not keep.any():
            last = frame.get_column(DATE).max()
            print(
                f"greenlane evaluate: {args.data} has no labelled row from {since} "
                f"(its last date is {last})",
                file=sys.stderr,
            )
            return 1
        _say(
            f"judging {int(keep.sum()):,} declarations from {since}; the "
            f"{int((~keep).sum()):,} before it only build the entity history"
        )
        learnt_until = date.fromisoformat(model.info.get("training_window", ["", "0001-01-01"])[1])
        if since <= learnt_until:
            _say(
                f"note: {version} was refit on declarations up to {learnt_until}, so these "
                "figures are in-sample for it; `train` printed its held-out figures"
            )
        frame, score = frame.filter(pl.Series(keep)), score[keep]
    revenue = recovered_revenue(frame)
    budgets = tuple(settings.evaluation.budgets)
    metrics = budget_metrics(frame.get_column(LABEL).to_numpy(), score, revenue, budgets)
    metrics = {"model": version, "data": str(args.data), **metrics}
    out = Path(args.out)
    report = write_report(metrics, out, f"evaluation-{version}")
    chart = plot_budget_curve(
        frame.get_column(LABEL).to_numpy(),
        score,
        revenue,
        out / f"evaluation-{version}.png",
        settings.evaluation.chart_max_percent,
        title=f"greenlane model {version} at inspection budgets",
    )
    _say(format_metrics(metrics, budgets))
    _say(f"wrote {report} and {chart}")
    return 0


def _iso_date(text: str, option: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise SystemExit(f"greenlane: {option}: {text!r} is not a date (YYYY-MM-DD)") from None


def models_list_main(args: argparse.Namespace) -> int:
    from greenlane.models.registry import Registry

    registry = Registry(args.registry)
    if args.action == "promote":
        registry.promote(args.version)
        _say(f"{args.version} is now the current model")
        return 0
    models = registry.list_models()
    if args.json:
        print(json.dumps(models, indent=2))
        return 0
    if not models:
        _say(f"no models in {registry.root}; train one with `greenlane train`")
        return 0
    _say(f"{'':2}{'version':8} {'created':25} {'training window':23} {'p@5%':>6} {'AUC':>6}  data")
    for m in models:
        window = " .. ".join(m.get("training_window", ["?", "?"]))
        metrics = m.get("metrics", {})
        mark = "* " if m["current"] else "  "
        _say(
            f"{mark}{m['version']:8} {m['created']:25} {window:23} "
            f"{metrics.get('precision@5%', float('nan')):>6.3f} "
            f"{metrics.get('roc_auc') or float('nan'):>6.3f}  {m.get('data', '')}"
        )
    return 0


def retrain_main(args: argparse.Namespace) -> int:
    from greenlane.models.feedback import LabelledHistory
    from greenlane.models.registry import Registry
    from greenlane.models.retrain import format_result, retrain

    history = LabelledHistory(args.history)
    frame = history.read()
    _say(f"read {frame.height:,} labelled declarations from {history.folder}")
    try:
        result = retrain(
            frame,
            Registry(args.registry),
            budget=args.budget,
            latest_days=args.latest_days,
            progress=_say,
            source=str(history.folder),
            correct=not args.no_correction,
        )
    except ValueError as exc:
        print(f"greenlane retrain: {exc}", file=sys.stderr)
        return 1
    _say(format_result(result))
    if args.verdict_json:  # for a program that runs retrain (the worker's schedule)
        verdict = {
            "promoted": result.promoted,
            "candidate": result.candidate_version,
            "current": result.current_version,
            "reason": result.reason,
        }
        print(json.dumps(verdict), flush=True)
    return 0


def add_subcommands(sub: argparse._SubParsersAction) -> None:
    """Register train, evaluate, models, history and retrain on greenlane's sub-command parser."""
    from greenlane.models.retrain import BUDGET

    registry_help = "model registry folder (default: GREENLANE_MODEL_REGISTRY or models.yaml)"

    p = sub.add_parser(
        "train",
        help="train a risk model on a history of inspected declarations",
        description="Trains gradient-boosted trees on a CSV or Parquet history of inspected "
        "declarations, split by date into train / validation (calibration) / test, prints "
        "precision, recall and revenue at 1, 2, 5, 10%% inspection budgets on the test period "
        "and stores the model with its metadata in the registry. The first model is promoted "
        "to current; a later one is saved but stays a candidate unless --promote is given "
        "(the last line says which happened).",
    )
    p.add_argument("--data", required=True, type=Path, metavar="FILE", help="CSV or Parquet")
    p.add_argument(
        "--mapping",
        type=Path,
        metavar="FILE",
        help="YAML naming the columns of FILE (date, label, revenue, roles, extras); "
        "omit for a file already in canonical columns (e.g. from `greenlane history`)",
    )
    p.add_argument("--registry", type=Path, metavar="DIR", help=registry_help)
    p.add_argument("--promote", action="store_true", help="make the new model current")
    p.set_defaults(func=train_main)

    p = sub.add_parser(
        "evaluate",
        help="evaluate a model at inspection budgets (JSON + PNG chart)",
        description="Scores a labelled history with a registered model (--model, default the "
        "current one; the first line says which) and reports precision@n%%, recall@n%% and "
        "revenue@n%% (n = models.yaml's budgets) and ROC AUC. With --since only declarations "
        "from that date are judged; the earlier ones build the sellers', importers' and routes' "
        "history the model needs, so pass the whole history, not a test file alone: "
        "greenlane evaluate --data history.parquet --since 2025-10-01",
    )
    p.add_argument("--model", metavar="VERSION", help="model version (default: current)")
    p.add_argument("--data", required=True, type=Path, metavar="FILE", help="CSV or Parquet")
    p.add_argument("--mapping", type=Path, metavar="FILE", help="as for train")
    p.add_argument(
        "--since",
        metavar="YYYY-MM-DD",
        help="judge declarations from this date; earlier rows build the entity history",
    )
    p.add_argument("--out", default="evaluation", metavar="DIR", help="report folder")
    p.add_argument("--registry", type=Path, metavar="DIR", help=registry_help)
    p.set_defaults(func=_registry_errors(evaluate_main))

    p = sub.add_parser(
        "models",
        help="list the registered models, or promote one",
        description="`models list` shows every model version (* = current); "
        "`models promote VERSION` makes one current.",
    )
    p.add_argument("action", choices=["list", "promote"])
    p.add_argument("version", nargs="?", help="with promote: the version")
    p.add_argument("--json", action="store_true", help="list as JSON metadata")
    p.add_argument("--registry", type=Path, metavar="DIR", help=registry_help)
    p.set_defaults(func=_registry_errors(_models_checked))

    p = sub.add_parser(
        "retrain",
        help="retrain on inspection outcomes; promote only if better at the 5%% budget",
        description="Trains a candidate on the labelled history kept from inspection outcomes, "
        "holding out its latest period, with every row weighed by the inverse of its "
        "selection propensity (a random pick of released traffic stands for the many "
        "released unexamined), which corrects for examining mostly what rules and model "
        "flagged. Judges candidate and current model on the held-out period at the "
        "inspection budget with the same weights (estimates for all traffic: precision, ties "
        "broken by revenue recovered), also on the random picks alone, and promotes the "
        "candidate only if it wins on enough evidence (models.yaml retrain).",
    )
    p.add_argument(
        "--history",
        type=Path,
        metavar="DIR",
        help="labelled history folder (default: GREENLANE_HISTORY or ~/.cache/greenlane/history)",
    )
    p.add_argument("--registry", type=Path, metavar="DIR", help=registry_help)
    p.add_argument(
        "--latest-days",
        type=int,
        metavar="N",
        help="days held out to judge on (default: models.yaml retrain.latest_days; a history "
        "younger than twice that holds out its latest holdout_share of rows)",
    )
    p.add_argument(
        "--no-correction",
        action="store_true",
        help="train without the selection-bias weights (to compare; judging stays weighted)",
    )
    p.add_argument(
        "--budget",
        type=float,
        default=BUDGET,
        metavar="PCT",
        help="inspection budget, %% of declarations (default: %(default)s)",
    )
    p.add_argument(
        "--verdict-json",
        action="store_true",
        help="end with one JSON line: promoted, candidate, current, reason",
    )
    p.set_defaults(func=_registry_errors(retrain_main))


def _models_checked(args: argparse.Namespace) -> int:
    if args.action == "promote" and not args.version:
        print("greenlane models promote: a VERSION is needed", file=sys.stderr)
        return 2
    return models_list_main(args)
