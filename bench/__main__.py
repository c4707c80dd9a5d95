"""Run every benchmark, each in its own process, and print their JSON objects, one per line.

    python -m bench                      # quick settings (minutes on a 2-core CPU)
    python -m bench --full               # the settings behind the figures in bench/README.md
    python -m bench --only dedupe,fetch  # a subset, by run name or benchmark module
    python -m bench --list               # what would run, with its arguments

Stdout is JSON Lines: one object per run, in order, as the benchmark printed it with ``run``
(the run's name) added in front. A run that fails or prints anything but one JSON object
gives ``{"run": ..., "benchmark": ..., "error": ...}`` instead, and the exit status is 1.
Progress and the benchmarks' own stderr go to stderr. Children get ``OMP_NUM_THREADS=1``
unless it is set: the figures are per core, and OpenMP threads spinning against each other
on a small shared machine distort them. Nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass

from bench.common import REPO


@dataclass(frozen=True)
class Run:
    name: str
    module: str  # bench.<module>
    quick: tuple[str, ...]
    full: tuple[str, ...]


RUNS = (
    Run("quality", "quality", ("--images", "1", "--repeats", "1", "--threads", "1"),
        ("--images", "2", "--repeats", "2", "--threads", "1")),
    Run("dedupe", "dedupe", ("--n", "2000000", "--d", "4"), ("--n", "2000000", "--d", "4")),
    Run("dedupe_stage", "dedupe", ("--n", "2000000", "--d", "4", "--stage"),
        ("--n", "2000000", "--d", "4", "--stage")),
    Run("dedupe_100m", "dedupe", ("--n", "10000000", "--workers", "2", "--queries", "20"),
        ("--n", "100000000", "--workers", "2", "--queries", "20")),
    Run("scale_run", "scale_run", ("--n", "400", "--partition-size", "200", "--sample-s", "2"),
        ("--n", "12000", "--partition-size", "500", "--sample-s", "10")),
    Run("curation_filters", "curation_filters", ("--n", "3", "--rounds", "1"),
        ("--n", "12", "--rounds", "3")),
    Run("curation_accuracy", "curation_accuracy", ("--offline", "--no-iqa", "--no-rows"),
        ("--no-rows",)),
    Run("build", "build", ("--offline", "--generated", "2", "--modes", "folder", "--warmup", "2"),
        ("--generated", "24", "--modes", "folder,http")),
    Run("fetch", "fetch", ("--n", "300", "--repeats", "1"),
        ("--n", "2000", "--repeats", "3", "--stages")),
    Run("shards", "shards", ("--n", "200",), ("--n", "1000",)),
    Run("model", "model", ("--threads", "1", "--repeats", "1"),
        ("--threads", "1", "--repeats", "3")),
    Run("train", "train", ("--steps", "1", "--patches", "8", "--loader-batches", "4"),
        ("--steps", "3", "--patches", "24", "--loader-batches", "8")),
    Run("learning", "learning", ("--pretrain-steps", "2", "--finetune-steps", "2", "--patches",
        "16", "--train-images", "9", "--test-images", "6"), ()),
)  # fmt: skip


def select(only: str | None) -> list[Run]:
    """The runs named in ``only`` (run names or module names, comma-separated), in order."""
    if not only:
        return list(RUNS)
    wanted = {name.strip() for name in only.split(",") if name.strip()}
    known = {run.name for run in RUNS} | {run.module for run in RUNS}
    unknown = sorted(wanted - known)
    if unknown:
        raise ValueError(
            f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(sorted(known))}"
        )
    return [run for run in RUNS if run.name in wanted or run.module in wanted]


def command(run: Run, full: bool) -> list[str]:
    return [sys.executable, "-m", f"bench.{run.module}", *(run.full if full else run.quick)]


def execute(run: Run, full: bool, timeout: float) -> dict:
    """Run one benchmark; its JSON object with ``run`` in front, or an error object."""
    env = {**os.environ}
    env.setdefault("OMP_NUM_THREADS", "1")
    error = {"run": run.name, "benchmark": run.module}
    try:
        proc = subprocess.run(
            command(run, full),
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return {**error, "error": f"timed out after {timeout:g} s"}
    if proc.returncode != 0:
        return {**error, "error": f"exited with status {proc.returncode}"}
    lines = proc.stdout.strip().splitlines()
    try:
        if len(lines) != 1:
            raise ValueError(f"printed {len(lines)} lines, not one")
        result = json.loads(lines[0])
        if not isinstance(result, dict):
            raise ValueError("printed JSON that is not an object")
    except ValueError as exc:
        return {**error, "error": f"bad output: {exc}", "stdout_head": proc.stdout[:500]}
    return {"run": run.name, **result}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="comma-separated run or module names")
    parser.add_argument("--full", action="store_true", help="the figure-quality settings")
    parser.add_argument("--list", action="store_true", help="print the runs and exit")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds per run")
    args = parser.parse_args(argv)
    try:
        runs = select(args.only)
    except ValueError as exc:
        parser.error(str(exc))
    if args.list:
        for run in runs:
            print(f"{run.name}: python {shlex.join(command(run, args.full)[1:])}")
        return 0

    failed = 0
    started = time.perf_counter()
    for run in runs:
        shown = shlex.join(command(run, args.full)[1:])
        print(f"bench: {run.name}: python {shown}", file=sys.stderr, flush=True)
        run_started = time.perf_counter()
        result = execute(run, args.full, args.timeout)
        failed += "error" in result
        seconds = time.perf_counter() - run_started
        status = f"FAILED ({result['error']})" if "error" in result else "done"
        print(f"bench: {run.name}: {status} in {seconds:.1f} s", file=sys.stderr, flush=True)
        print(json.dumps(result), flush=True)
    total = time.perf_counter() - started
    print(f"bench: {len(runs)} run(s), {failed} failed, {total:.1f} s", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
