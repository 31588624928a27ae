import json
import os
import platform
import subprocess
import sys

import pytest

from greenlane.streams.cli import build_parser, limit_malloc_arenas


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's mallopt")
def test_the_worker_caps_malloc_arenas_on_glibc():
    assert limit_malloc_arenas(2) is True


def test_worker_options_for_a_second_worker_on_one_machine():
    args = build_parser().parse_args(["worker", "--data-dir", "/tmp/w2", "--metrics-port", "0"])
    assert args.data_dir == "/tmp/w2" and args.metrics_port == 0
    help_text = subprocess.run(
        [sys.executable, "-m", "greenlane.streams.cli", "worker", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    help_text = " ".join(help_text.split())  # however argparse wrapped it
    assert "--data-dir" in help_text and "two workers on one machine need two" in help_text


def test_scorecard_without_its_ground_truth_file_says_so(tmp_path, capsys):
    args = build_parser().parse_args(["scorecard", "--truth", str(tmp_path / "none.jsonl")])
    assert args.func(args) == 1
    assert "none.jsonl: no such ground-truth file" in capsys.readouterr().err


def test_scorecard_with_a_broken_ground_truth_file_says_which_line(tmp_path, capsys):
    path = tmp_path / "truth.jsonl"
    path.write_text('{"not": "a record"}\n{"house_waybill": "A"}\n')
    args = build_parser().parse_args(["scorecard", "--truth", str(path)])
    assert args.func(args) == 1
    assert "truth.jsonl: line 1 is not a ground-truth record" in capsys.readouterr().err


def test_simulate_and_run_take_a_ground_truth_file(tmp_path):
    for command in ("simulate", "run"):
        args = build_parser().parse_args([command, "--truth", str(tmp_path / "t.jsonl")])
        assert args.truth == tmp_path / "t.jsonl"


def test_the_worker_limits_the_models_openmp_runtime_and_polars_to_one_thread():
    """Set before scikit-learn's OpenMP runtime is loaded, a limit would not reach it; polars
    sizes its pool once."""
    script = (
        "import json; from threadpoolctl import threadpool_info, threadpool_limits; "
        "from greenlane.streams.cli import limit_model_threads; "
        "limit_model_threads(threadpool_limits); "
        "import polars; assert polars.thread_pool_size() == 1, polars.thread_pool_size(); "
        "print(json.dumps([p for p in threadpool_info() if p['user_api'] == 'openmp']))"
    )
    env = {
        k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "POLARS_MAX_THREADS")
    }
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True
    )
    pools = json.loads(out.stdout.strip().splitlines()[-1])
    assert pools, "scikit-learn's OpenMP runtime should be loaded"
    assert all(p["num_threads"] == 1 for p in pools)
