"""The `greenlane` command: infrastructure, topics, worker, carrier simulator, live run, bench."""

from __future__ import annotations

import argparse
import itertools
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

from greenlane.streams.settings import ConfigError, settings

DESCRIPTION = """\
greenlane: streaming risk assessment of cross-border e-commerce filings.

Carriers file a pre-loading (PLACI) filing and a pre-arrival declaration per consignment on
Kafka; the worker checks data quality, scores targeting rules and routes each filing to
release / hold / inspect, answers the carrier, and dead-letters what it cannot read.

Endpoints come from streams/settings/greenlane.toml, or KAFKA_BOOTSTRAP_SERVERS and
SCHEMA_REGISTRY_URL when set (then nothing is started locally).
"""


def _cmd_infra(args: argparse.Namespace) -> int:
    from greenlane.streams.devtools import infra

    s = settings()

    def say(message: str) -> None:
        print(message, flush=True)

    if args.action == "up":
        infra.up(s, record=args.record, progress=say)
    elif args.action == "down":
        infra.down(s, only_recorded=args.only_recorded, progress=say)
    else:
        for name, state in infra.status(s).items():
            print(f"{name:10} {state}")
    return 0


def _cmd_secrets(args: argparse.Namespace) -> int:
    from greenlane.streams.settings import secrets

    path = args.file or secrets.secrets_file()
    written = secrets.init_local(path)
    print(f"{path}: " + (f"wrote {', '.join(written)}" if written else "every secret present"))
    return 0


def _cmd_topics(_args: argparse.Namespace) -> int:
    from greenlane.streams.runtime import admin

    admin.prepare(settings())
    return 0


M_ARENA_MAX = -8  # glibc mallopt parameter


def limit_malloc_arenas(arenas: int = 2) -> bool:
    """Cap glibc's malloc arenas before RocksDB, librdkafka and the executor start threads.

    By default glibc gives every thread that allocates its own arena (up to 8 per core), and
    RocksDB's and librdkafka's threads then keep hundreds of MB of freed memory resident.
    Returns whether the cap took effect (not on other C libraries).
    """
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        return bool(libc.mallopt(M_ARENA_MAX, arenas))
    except (OSError, AttributeError):
        return False


def limit_model_threads(threadpool_limits: Callable[[int], object]) -> None:
    """One thread for the model's native pools (OpenMP, BLAS) and for polars: one worker per
    core is the scale-out unit, and extra threads only fight the event loop for the same cores
    (measured: 3.5 ms against over 200 ms per predict on 2 cores; a 50-row batch's features
    2.5 ms against 3.2-4.6 ms). Call it before polars is imported (it sizes its pool once);
    scikit-learn's OpenMP runtime is loaded here: a limit set before it exists does not
    reach it."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("POLARS_MAX_THREADS", "1")
    import sklearn.ensemble  # noqa: F401  (loads the OpenMP runtime the models use)

    threadpool_limits(1)


def _cmd_worker(args: argparse.Namespace) -> int:
    from threadpoolctl import threadpool_limits

    limit_model_threads(threadpool_limits)  # before anything imports polars
    import faust

    from greenlane.streams.core.pipeline import tune_gc
    from greenlane.streams.runtime.app import create_app
    from greenlane.streams.runtime.logs import quiet_repeats
    from greenlane.streams.runtime.metrics import watch_gc

    if args.uvloop:
        import asyncio

        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    tune_gc()
    watch_gc()
    limit_malloc_arenas()
    s = settings()
    if args.data_dir:
        s = replace(s, worker=replace(s.worker, data_dir=args.data_dir))
    if args.metrics_port is not None:
        s = replace(s, worker=replace(s.worker, metrics_port=args.metrics_port))
    app = create_app(s)
    quiet_repeats()  # a broker that is away: one line per kind every 30 s, with a count
    worker = faust.Worker(app, loglevel=args.loglevel, quiet=args.quiet)
    # Faust's terminal spinner sets the root logger to DEBUG so it can spin on every record;
    # every debug call in aiokafka and Faust then builds a LogRecord: ~10% of the worker's CPU.
    worker.spinner = None
    worker.execute_from_commandline()
    return 0


def _cmd_history(args: argparse.Namespace) -> int:
    from greenlane.streams.devtools.history import generate_history, write_history

    frame = generate_history(args.rows, seed=args.seed)
    path = write_history(frame, args.out)
    print(f"wrote {frame.height:,} declarations ({frame['fraud'].mean():.2%} fraudulent) to {path}")
    return 0


def _cmd_simulate(args: argparse.Namespace) -> int:
    from greenlane.streams.devtools.simulator import CarrierSimulator, generate
    from greenlane.streams.runtime import admin

    s = settings()
    admin.prepare(s, progress=lambda m: None)
    sim = CarrierSimulator(s)
    from greenlane.streams.devtools.scorecard import TruthLog

    truth = TruthLog(args.truth or _truth_path(s, args.seed))
    filings = truth.tap(
        generate(
            args.count,
            seed=args.seed,
            risky_share=args.risky_share,
            invalid_share=args.invalid_share,
        )
    )
    started = time.monotonic()

    def progress(n: int) -> None:  # called about twice a second
        print(
            f"\rsent {n:,} filings ({n / max(time.monotonic() - started, 1e-9):,.0f}/s)",
            end="",
            flush=True,
        )

    report = sim.send(filings, rate=args.rate, progress=progress)
    print(f"\n{report}")
    print(f"ground truth: {truth.path}")
    return 0


def _truth_path(s, seed: int) -> Path:
    return s.local.home_path / "truth" / f"run-{seed}.jsonl"


def _cmd_scorecard(args: argparse.Namespace) -> int:
    import json

    from greenlane.streams.devtools.scorecard import (
        DecisionTap,
        format_scorecard,
        read_truth,
        scorecard,
    )

    if not args.truth.is_file():
        print(f"greenlane scorecard: {args.truth}: no such ground-truth file", file=sys.stderr)
        return 1
    try:
        truth = read_truth(args.truth)
    except ValueError as exc:
        print(f"greenlane scorecard: {exc}", file=sys.stderr)
        return 1
    tap = DecisionTap(settings(), start="beginning")
    try:
        tap.read_to_end()
    finally:
        tap.close()
    card = scorecard(tap.decided, truth)
    print(json.dumps(card, indent=2) if args.json else format_scorecard(card))
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from greenlane.models.feedback import default_history_folder
    from greenlane.streams.devtools.first_model import ensure_model
    from greenlane.streams.devtools.launcher import WorkerProcess
    from greenlane.streams.devtools.officers import Officers, OutcomeDesk
    from greenlane.streams.devtools.progress import LiveProgress
    from greenlane.streams.devtools.scorecard import (
        DecisionTap,
        TruthLog,
        format_scorecard,
        hit_rate,
        scorecard,
    )
    from greenlane.streams.devtools.simulator import CarrierSimulator, generate
    from greenlane.streams.runtime import admin

    s = settings()
    registered = admin.prepare(s)
    print(f"risk model in force: {ensure_model(s.local.home_path)}")
    log_dir = s.local.home_path / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    worker_log = log_dir / "worker.log"
    print(f"starting the worker (log: {worker_log})")
    # this run's decisions, judged on the ground truth; opened first so that a broker problem
    # is reported before a worker is started
    seed = args.seed if args.seed is not None else int(time.time()) % 1_000_000
    officers = Officers(seed=seed)  # the targeting centre, filing outcomes from the truth
    decisions = DecisionTap(s, start="end", listener=lambda d: officers.receive(d, time.time()))
    outcomes = OutcomeDesk(s, registered.ids["inspection_outcome"])
    worker = WorkerProcess(worker_log, args=()).start()
    stop = threading.Event()
    sim = CarrierSimulator(s)
    sent = [0]
    truth = TruthLog(args.truth or _truth_path(s, seed))
    # Stopping ends the filing stream, so the simulator still flushes what it produced.
    filings = itertools.takewhile(
        lambda _: not stop.is_set(),
        truth.tap(
            generate(
                args.count or 10**12,
                seed=seed,
                risky_share=args.risky_share,
                invalid_share=args.invalid_share,
            )
        ),
    )
    sim_thread = threading.Thread(
        target=lambda: sim.send(filings, rate=args.rate, progress=lambda n: sent.__setitem__(0, n)),
        daemon=True,
    )
    sim_thread.start()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    live = LiveProgress(f"http://{s.worker.metrics_host}:{s.worker.metrics_port}/metrics")
    print(
        f"metrics: {live.url}   carrier simulator: {args.rate:,.0f} filings/s (seed {seed})   "
        f"{'until Ctrl-C' if not args.duration else f'for {args.duration:g} s'}"
    )
    started = time.monotonic()
    try:
        while not stop.is_set():
            if (code := worker.exited()) is not None:
                print(f"\nthe worker exited with {code}; see {worker_log}")
                decisions.close()
                outcomes.close()
                return 1
            stop.wait(2.0)
            decisions.poll(0.05)
            now = time.time()
            outcomes.file(officers.due(now, truth.truth, truth.tax_rate, int(now * 1000)))
            hits = hit_rate(decisions.decided, truth.truth)
            kpi = f"inspection hit rate {100 * hits:.0f}%  " if hits is not None else ""
            kpi += f"outcomes filed {officers.filed:,}  "
            line = live.line(sent[0], time.monotonic() - started)
            print("\r" + line + kpi, end="", flush=True)
            if args.duration and time.monotonic() - started >= args.duration:
                break
    except KeyboardInterrupt:
        pass
    finally:
        stop.set()
        print("\nstopping…")
        sim_thread.join(30)
        undelivered = outcomes.close()  # on the topic before the worker stops
        worker.stop()
    print(live.summary(sent[0], time.monotonic() - started))
    decisions.read_to_end(1.0)
    decisions.close()
    if undelivered:
        print(f"{undelivered:,} inspection outcomes could not be delivered to the broker")
    print(
        f"officers filed {officers.filed:,} inspection outcomes ({officers.waiting:,} still "
        f"queued, {officers.settings.delay_seconds:g} s after each decision); the worker joins "
        f"them into the labelled history ({default_history_folder()}), those it had not read "
        f"yet when it next starts: greenlane retrain"
    )
    print("against the simulator's ground truth (pre-arrival declarations decided):")
    print(format_scorecard(scorecard(decisions.decided, truth.truth)))
    print(f"ground truth: {truth.path}  (greenlane scorecard --truth {truth.path})")
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    from greenlane.streams.devtools.bench import main as bench_main

    return bench_main(args)


def _cmd_bench_restart(args: argparse.Namespace) -> int:
    from greenlane.streams.devtools.bench_restart import main as restart_main

    return restart_main(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="greenlane",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "infra",
        help="start, stop or show the local Kafka broker and registry",
        description="The local Kafka broker (KRaft) and Apicurio schema registry, "
        "downloaded from Maven Central on first use and kept under "
        "~/.cache/greenlane. Nothing is started for an endpoint given by "
        "KAFKA_BOOTSTRAP_SERVERS / SCHEMA_REGISTRY_URL.",
    )
    p.add_argument("action", choices=["up", "down", "status"])
    p.add_argument(
        "--record",
        type=Path,
        metavar="FILE",
        help="with up: add the names of the services this call started to FILE",
    )
    p.add_argument(
        "--only-recorded",
        type=Path,
        metavar="FILE",
        help="with down: stop only the services named in FILE (then delete it)",
    )
    p.set_defaults(func=_cmd_infra)

    p = sub.add_parser(
        "secrets",
        help="write local secrets for a development machine",
        description="Writes a random value for every secret the secrets file lacks "
        "(GREENLANE_SECRETS_FILE, by default ~/.cache/greenlane/secrets.toml, mode 600) "
        "and keeps those it has. `greenlane infra up` does it. A production deployment "
        "sets GREENLANE_LANES_KEY and GREENLANE_PSEUDONYMISATION_KEY from its secret store "
        "instead: a missing secret stops greenlane with the variable named.",
    )
    p.add_argument("action", choices=["init"])
    p.add_argument("--file", type=Path, metavar="FILE", help="the secrets file to write")
    p.set_defaults(func=_cmd_secrets)

    p = sub.add_parser(
        "topics",
        help="create the topics, grant the worker's ACLs, register the Avro schemas",
        description="Creates every greenlane topic that is missing, grants the worker "
        "principal its ACLs on a secured broker (streams/runtime/acls.py) and registers "
        "each topic's value schema (topic-name strategy, BACKWARD compatible). Runs as "
        "[kafka] admin_username.",
    )
    p.add_argument("action", choices=["create"])
    p.set_defaults(func=_cmd_topics)

    p = sub.add_parser(
        "worker",
        help="run the stream worker (Faust)",
        description="Consumes the pre-loading and pre-arrival topics and publishes "
        "decisions, carrier responses and dead letters. Its topics must exist "
        "(`greenlane topics create`, run as the administrator, also grants the worker's "
        "ACLs); it authenticates as [kafka] username. Start more workers to "
        "scale out: they share the partitions of the same consumer group "
        "(on one machine, give each its own --data-dir).",
    )
    p.add_argument(
        "--data-dir",
        help="where this worker keeps its tables (default: [worker] data_dir); "
        "two workers on one machine need two",
    )
    p.add_argument(
        "--metrics-port",
        type=int,
        help="port of /metrics and /ready (default: [worker] metrics_port; 0: none)",
    )
    p.add_argument("--loglevel", default="warn", choices=["crit", "error", "warn", "info", "debug"])
    p.add_argument("--quiet", action="store_true", help="no startup banner")
    p.add_argument(
        "--no-uvloop",
        dest="uvloop",
        action="store_false",
        help="use asyncio's default event loop instead of uvloop",
    )
    p.set_defaults(func=_cmd_worker)

    def traffic_options(p: argparse.ArgumentParser, rate: float | None, seed: int | None) -> None:
        p.add_argument(
            "--rate",
            type=float,
            default=rate,
            help="filings per second (default: %(default)s; omit for as fast as possible)",
        )
        p.add_argument(
            "--seed",
            type=int,
            default=seed,
            help="random seed (default: %(default)s; none: new consignments every run)",
        )
        p.add_argument(
            "--risky-share",
            type=float,
            default=0.05,
            help="share of consignments with risk signals (default: %(default)s)",
        )
        p.add_argument(
            "--invalid-share",
            type=float,
            default=0.01,
            help="share of messages that must be dead-lettered (default: %(default)s)",
        )
        p.add_argument(
            "--truth",
            type=Path,
            metavar="FILE",
            help="where to write the ground truth of the consignments sent, one JSON line each "
            "(default: ~/.cache/greenlane/truth/run-SEED.jsonl); `greenlane scorecard` reads it",
        )

    p = sub.add_parser(
        "simulate",
        help="send synthetic carrier traffic",
        description="Produces realistic pre-loading and pre-arrival filings "
        "through the Confluent Avro serializer a carrier would use. Seeded and "
        "reproducible.",
    )
    p.add_argument(
        "--count", type=int, default=10_000, help="filings to send (default: %(default)s)"
    )
    traffic_options(p, None, 7)
    p.set_defaults(func=_cmd_simulate)

    p = sub.add_parser(
        "run",
        help="worker + carrier simulator with live progress (make run)",
        description="Runs the worker and the carrier simulator together and shows "
        "throughput, route split, dead letters and latency until Ctrl-C.",
    )
    p.add_argument(
        "--duration",
        type=float,
        default=0,
        help="stop after this many seconds (default: 0 = until Ctrl-C)",
    )
    p.add_argument("--count", type=int, default=0, help="stop sending after this many filings")
    traffic_options(p, 2000.0, None)
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser(
        "scorecard",
        help="judge the decisions against the simulator's ground truth",
        description="Reads every decision on the release, hold and inspect topics and the "
        "ground truth the simulator wrote (--truth), and reports the precision and recall of "
        "inspect and hold (inspect precision is the inspection hit rate), and the model's ROC "
        "AUC and precision at the 5%% budget next to the best any model could reach on that "
        "traffic. Example: greenlane scorecard --truth ~/.cache/greenlane/truth/run-42.jsonl",
    )
    p.add_argument("--truth", type=Path, required=True, metavar="FILE", help="ground-truth file")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    p.set_defaults(func=_cmd_scorecard)

    p = sub.add_parser(
        "bench",
        help="measure pipeline throughput and latency against a bare loop",
        description="Preloads a backlog of filings and measures on it, in one run: a bare "
        "confluent-kafka + fastavro loop, the Faust ceiling (and the same agent taking what is "
        "queued in one step), one greenlane worker (throughput, CPU µs per filing by part, "
        "memory, the local broker's cores, restart-to-ready), latency at --latency-rate and "
        "at half the worker's capacity (with garbage-collector pauses), and --workers workers "
        "in one consumer group on a second copy of the backlog. Prints one JSON object.",
    )
    p.add_argument("--count", type=int, default=200_000, help="backlog size (default: %(default)s)")
    p.add_argument(
        "--partitions",
        type=int,
        default=4,
        help="partitions of the bench topics (default: %(default)s)",
    )
    p.add_argument("--seed", type=int, default=11, help="simulator seed (default: %(default)s)")
    p.add_argument(
        "--latency-seconds",
        type=float,
        default=20.0,
        help="length of the steady-rate latency phase (default: %(default)s)",
    )
    p.add_argument(
        "--latency-rate",
        type=float,
        default=1000.0,
        help="filings/s during the latency phase (default: %(default)s)",
    )
    p.add_argument("--no-uvloop", action="store_true", help="run the worker on asyncio's loop")
    p.add_argument(
        "--worker-settings",
        default="",
        metavar="TOML",
        help="extra TOML lines for the worker, e.g. '[worker]\\nbatch_max = 5000'",
    )
    p.add_argument("--keep-topics", action="store_true", help="do not delete the bench topics")
    p.add_argument(
        "--workers",
        type=int,
        default=2,
        help="after the one-worker figures, this many workers in one consumer group drain a "
        "second copy of the backlog (1: skip; default: %(default)s)",
    )
    p.add_argument(
        "--ceiling-batch-max",
        type=int,
        default=2000,
        help="batch size of the Faust-ceiling agent (default: %(default)s)",
    )
    p.set_defaults(func=_cmd_bench)
    p = sub.add_parser(
        "bench-restart",
        help="measure restart-to-ready time and worker memory after a large backlog",
        description="Preloads a backlog, lets one worker (RocksDB tables) drain it while its "
        "resident memory is sampled, restarts it on the same table directory and times how "
        "long until /ready answers 200. Prints one JSON object.",
    )
    p.add_argument(
        "--count", type=int, default=1_000_000, help="backlog size (default: %(default)s)"
    )
    p.add_argument("--partitions", type=int, default=4, help="default: %(default)s")
    p.add_argument("--seed", type=int, default=23, help="simulator seed (default: %(default)s)")
    p.add_argument(
        "--timeout", type=float, default=3600, help="drain timeout, s (default: %(default)s)"
    )
    p.add_argument(
        "--settle-seconds",
        type=float,
        default=15.0,
        help="memory is sampled this long after the restart (default: %(default)s)",
    )
    p.add_argument("--keep-topics", action="store_true", help="do not delete the bench topics")
    p.set_defaults(func=_cmd_bench_restart)
    p = sub.add_parser(
        "history",
        help="generate a synthetic labelled history of declarations",
        description="Writes a seeded synthetic history (canonical columns, CSV or Parquet by "
        "suffix) consistent with the carrier simulator's catalogue.",
    )
    p.add_argument("--rows", type=int, default=100_000)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--out", type=Path, required=True, metavar="FILE")
    p.set_defaults(func=_cmd_history)
    from greenlane.models.cli import add_subcommands

    add_subcommands(sub)  # train, evaluate, models, retrain (the risk model, issue #4)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for name in ("httpx", "httpx2"):  # one line per registry call otherwise
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        return int(args.func(args) or 0)
    except ConfigError as exc:
        print(f"greenlane: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # a clear one-line error for operators; details with --debug later
        from greenlane.streams.devtools import infra

        if isinstance(exc, infra.InfraError):
            print(f"greenlane: {exc}", file=sys.stderr)
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())
