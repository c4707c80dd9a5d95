"""Running ``python -m bench.NAME`` as a user would, for the tests: one JSON object out,
checked for the keys every benchmark shares (``machine``, ``versions``)."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def run_module(args: list[str], timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", *args],
        cwd=REPO,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def check_common(result: dict, name: str) -> None:
    assert result["benchmark"] == name
    assert isinstance(result["args"], dict)
    assert result["benchmark_wall_s"] >= 0
    machine = result["machine"]
    assert isinstance(machine["cpu_model"], str) and machine["cpu_model"]
    assert machine["logical_cores"] >= 1 and 1 <= machine["usable_cores"] <= os.cpu_count()
    assert machine["memory_total_gb"] > 0
    assert machine["omp_num_threads"] == "1"
    for key in ("load_average_start", "load_average_end"):
        assert len(machine[key]) == 3 and all(x >= 0 for x in machine[key])
    versions = result["versions"]
    assert versions["python"] == platform.python_version()
    assert versions["numpy"] == np.__version__
    for package in ("torch", "pillow", "pyarrow", "prefect"):
        assert isinstance(versions[package], str) and versions[package][0].isdigit()


def bench(name: str, *args: str, timeout: float = 300) -> dict:
    """Run ``python -m bench.NAME ARGS``; its single JSON object, checked for the shared keys."""
    proc = run_module([f"bench.{name}", *args], timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1, proc.stdout[:2000]
    result = json.loads(lines[0])
    assert isinstance(result, dict)
    check_common(result, name)
    return result
