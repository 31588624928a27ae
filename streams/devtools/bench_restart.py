"""Restart-to-ready and resident memory after a large backlog: ``greenlane bench-restart``.

Preloads N filings (default 1,000,000) on fresh topics, lets one worker drain them while its
resident memory is sampled, stops it, starts it again on the same table directory and times
how long until its /ready answers 200 (partitions assigned, tables recovered), then samples its
memory a little longer. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path

from greenlane.streams.devtools.bench import (
    MemorySampler,
    _delete_topics,
    _drain_responses,
    _end_offsets,
    _worker_settings_file,
)
from greenlane.streams.devtools.launcher import WorkerProcess, free_port
from greenlane.streams.devtools.simulator import CarrierSimulator, generate
from greenlane.streams.runtime import admin
from greenlane.streams.settings import load_settings


def main(args: argparse.Namespace) -> int:
    run_id = uuid.uuid4().hex[:8]
    env = dict(os.environ, GREENLANE_TOPIC_PREFIX=f"bench-{run_id}.")
    s = load_settings(env=env)
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    admin.prepare(s, partitions=args.partitions, progress=lambda m: None)
    log(f"bench-restart {run_id}: preloading {args.count:,} filings…")
    t0 = time.perf_counter()
    CarrierSimulator(s).send(generate(args.count, seed=args.seed, invalid_share=0.01))
    log(f"  preloaded in {time.perf_counter() - t0:.1f} s")
    expected = sum(
        _end_offsets(s, [s.topics.name("pre_loading"), s.topics.name("pre_arrival")]).values()
    )
    app_id = f"greenlane-bench-{run_id}"
    port = free_port()
    settings_file = _worker_settings_file(s, app_id, port, "")
    worker_env = dict(env, GREENLANE_SETTINGS=str(settings_file))
    data_dir = tempfile.mkdtemp(prefix="greenlane-bench-restart-")
    url = f"http://127.0.0.1:{port}/metrics"
    worker_log = Path(tempfile.gettempdir()) / f"greenlane-bench-{run_id}-worker.log"

    def start() -> WorkerProcess:
        flags = ("--quiet", "--data-dir", data_dir)
        return WorkerProcess(worker_log, worker_env, flags, url).start()

    result: dict = {"filings": expected, "partitions": args.partitions}
    worker = start()
    try:
        sampler = MemorySampler(worker.pid)
        result["first_start_ready_seconds"] = round(worker.wait_ready(300), 2)
        log(f"draining {expected:,} filings…")
        t0 = time.monotonic()
        count, first, last = _drain_responses(s, expected, timeout=args.timeout, workers=[worker])
        result["drain"] = {
            "responses": count,
            "seconds": round(time.monotonic() - t0, 1),
            "throughput_per_s": round(count / max(last - first, 1e-3), 1),
            **sampler.stop(),
        }
        log(f"  {result['drain']}")
        result["stop_seconds"] = round(worker.stop(60), 2)
        tables = sum(f.stat().st_size for f in Path(data_dir).rglob("*") if f.is_file())
        result["tables_on_disk_mb"] = round(tables / 2**20, 1)

        log("restarting on the same table directory…")
        worker = start()
        sampler = MemorySampler(worker.pid)
        result["restart_ready_seconds"] = round(worker.wait_ready(600), 2)
        time.sleep(args.settle_seconds)  # timers, first scrapes: memory after it settles
        result["after_restart"] = sampler.stop()
        log(f"  ready in {result['restart_ready_seconds']} s; {result['after_restart']}")
    finally:
        worker.stop()
        settings_file.unlink(missing_ok=True)
        shutil.rmtree(data_dir, ignore_errors=True)
        if not args.keep_topics:
            _delete_topics(s, app_id)
    result["worker_log"] = str(worker_log)
    print(json.dumps(result))
    return 0
