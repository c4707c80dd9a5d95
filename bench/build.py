"""Benchmark: what a whole build costs per candidate, stage by stage, on high-resolution photos.

Inputs: the real photographs and graphics of ``bench.curation_accuracy`` (the labelled Debian
wallpapers and example images, fetched once into ``~/.cache/million-ird/realphotos`` by that
benchmark's helpers; ``--offline``: scikit-image's images only), plus ``--generated`` 12 MP
JPEGs (``bench.curation_filters.make_jpeg``, cached under ``--cache``) for volume, plus
``--copies`` byte-identical copies of the first inputs (exact duplicates, as URL lists have).

Each ``--mode`` runs ``curation.build.run_build`` end to end (plan, partitions, dedupe,
publish) with the default configuration except ``probe.min_side`` (``--min-side``, so that
scikit-image's 512 px photographs are judged on content): ``folder`` lists the folder,
``http`` serves it from a separate ``python -m http.server`` process on 127.0.0.1 (its CPU is
not ours) and builds from a URL list.

Method. The whole build's CPU is the process's CPU time (``time.process_time``: every
thread of this process, the fetch pool's included) from plan to published version; the IQA
metrics and the compiled loops are built before the clock starts (``setup_cpu_s``, paid once
per process), and an unmeasured folder build of ``--warmup`` inputs runs first (``warmup``:
the first build in a process pays for lazy imports and first-call set-up). The split by
stage comes from the build's own ``stats.json`` (``stage_seconds``): each stage is timed
with ``time.thread_time`` in the thread that runs it, so a stage's CPU counts only its own
thread's work, wherever the pool schedules it; ``unattributed`` is the rest (thread pool
and queue hand-offs, planning, reading partition stats, the interpreter's own overhead).

Prints one JSON object: per mode ``cpu_s_per_candidate``, ``candidates_per_s_per_core``
(candidates per CPU second: one core busy for one second judges this many), ``stage_cpu_s``
(CPU seconds per candidate, by stage), ``stage_cpu_s_total``, wall seconds and the funnel;
at the top level the same three keys for the first mode, and ``target_le_0_1``.

    .venv/bin/python -m bench.build                       # both modes, ~3 min on 2 cores
    .venv/bin/python -m bench.build --offline --generated 2 --modes folder
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import Report

CACHE = Path.home() / ".cache" / "million-ird"
MODES = ("folder", "http")
TARGET_CPU_S_PER_CANDIDATE = 0.1


def generated_jpegs(count: int, cache: Path) -> list[Path]:
    """``count`` 12 MP photo-like JPEGs, made once (a few seconds each) and kept in ``cache``."""
    from bench.curation_filters import make_jpeg

    cache.mkdir(parents=True, exist_ok=True)
    paths = []
    for seed in range(count):
        path = cache / f"gen12mp-{seed:04d}.jpg"
        if not path.exists():
            partial = path.with_suffix(".part")
            partial.write_bytes(make_jpeg(seed))
            partial.rename(path)
        paths.append(path)
    return paths


def place_inputs(args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    """Fill ``folder`` with every input (real files are copied: a build reads bytes, and the
    HTTP server must not follow symlinks out of its root); returns a summary."""
    from bench.curation_accuracy import collect_inputs

    staging = folder.parent / "real"
    staging.mkdir()
    accuracy_args = argparse.Namespace(offline=args.offline, labels=args.labels, cache=args.cache)
    labelled = collect_inputs(accuracy_args, staging)
    real = sorted(staging.iterdir())
    generated = generated_jpegs(args.generated, Path(args.gen_cache))
    inputs = [*real, *generated]
    for path in inputs:
        shutil.copyfile(path, folder / path.name)
    for index, path in enumerate(inputs[: args.copies]):
        shutil.copyfile(path, folder / f"copy{index:03d}-{path.name}")
    sizes = [p.stat().st_size for p in folder.iterdir()]
    return {
        "real": len(real),
        "real_photos": sum(row["label"] == "photo" for row in labelled.values()),
        "real_graphics": sum(row["label"] == "graphic" for row in labelled.values()),
        "generated_12mp": len(generated),
        "exact_copies": min(args.copies, len(inputs)),
        "files": len(sizes),
        "mean_file_mb": round(sum(sizes) / len(sizes) / 1e6, 3),
    }


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def serve(folder: Path) -> tuple[subprocess.Popen, str]:
    """``python -m http.server`` over ``folder`` in its own process; (process, base URL)."""
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
        cwd=folder,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return proc, f"http://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("the HTTP server did not start")


def run_mode(mode: str, folder: Path, out: Path, args: argparse.Namespace) -> dict[str, Any]:
    from curation.build import run_build
    from curation.config import BuildConfig

    server = None
    try:
        if mode == "http":
            server, base = serve(folder)
            url_list = out.parent / f"{mode}-urls.txt"
            names = sorted(p.name for p in folder.iterdir())
            url_list.write_text("".join(f"{base}/{name}\n" for name in names))
            source = {"uri": str(url_list), "name": "bench-http"}
        else:
            source = {"uri": str(folder), "name": "bench-folder"}
        config = BuildConfig.model_validate(
            {
                "root": str(out),
                "name": f"bench-{mode}",
                "curation": {
                    "sources": [source],
                    "probe": {"min_side": args.min_side},
                    "fetch": {"allow_hosts": ["127.0.0.1"], "threads": args.threads},
                    "partition_size": args.partition_size,
                },
                "quality": {"device": args.device},
            }
        )
        wall, cpu = time.perf_counter(), time.process_time()
        version = run_build(config)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    finally:
        if server is not None:
            server.terminate()
            server.wait(10)
    stats = version.stats()
    candidates = stats["funnel"]["candidates"]
    stages = stats.get("stage_seconds", {})
    stage_cpu = {name: float(s["cpu_s"]) for name, s in stages.items()}
    stage_cpu["unattributed"] = max(0.0, cpu - sum(stage_cpu.values()))
    per_candidate = cpu / candidates
    return {
        "candidates": candidates,
        "kept": stats["funnel"]["kept"],
        "rejected_by_stage": {s: sum(r.values()) for s, r in stats["funnel"]["by_stage"].items()},
        "cpu_s": round(cpu, 3),
        "wall_s": round(wall, 3),
        "cpu_s_per_candidate": round(per_candidate, 4),
        "candidates_per_s_per_core": round(1 / per_candidate, 3),
        "stage_cpu_s": {k: round(v / candidates, 4) for k, v in stage_cpu.items()},
        "stage_cpu_s_total": {k: round(v, 3) for k, v in stage_cpu.items()},
        "stage_wall_s_total": {k: round(float(s["wall_s"]), 3) for k, s in stages.items()},
        "stage_count": {k: int(s.get("count", 0)) for k, s in stages.items()},
        "iqa_scored": int(stages.get("iqa", {}).get("count", 0)),
    }


def warm_up(folder: Path, tmp: Path, args: argparse.Namespace) -> dict[str, Any]:
    """An unmeasured folder build of ``args.warmup`` inputs (spread over the sorted list, so
    every format is decoded once) before the measured ones.

    The first build in a process pays once-per-process costs the measured figure should not
    carry: lazy imports (Parquet and shard writers), the decoders' and torch's first-call
    set-up, the allocator's first growth. They cost 0.01-0.02 CPU s per candidate of this
    108-candidate mix (2026-12-02), and nothing per candidate in a worker that runs for hours.
    """
    if args.warmup == 0:
        return {"files": 0, "cpu_s": 0.0}
    files = sorted(folder.iterdir())
    step = max(1, len(files) // args.warmup)
    subset = tmp / "warmup-images"
    subset.mkdir()
    for path in files[::step][: args.warmup]:
        shutil.copyfile(path, subset / path.name)
    result = run_mode("folder", subset, tmp / "out-warmup", args)
    return {"files": result["candidates"], "cpu_s": result["cpu_s"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.build", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--modes", default="folder,http", help="comma-separated: folder, http")
    parser.add_argument("--generated", type=int, default=24, help="12 MP JPEGs added for volume")
    parser.add_argument("--copies", type=int, default=0, help="exact copies of the first inputs")
    parser.add_argument("--offline", action="store_true", help="scikit-image's real images only")
    parser.add_argument("--labels", default=None, help="labelled TSV (bench.curation_accuracy)")
    parser.add_argument("--cache", default=str(CACHE / "realphotos"), help="real-photo cache")
    parser.add_argument("--gen-cache", default=str(CACHE / "bench-build"), help="12 MP JPEGs")
    parser.add_argument("--min-side", type=int, default=256, help="probe.min_side for the run")
    parser.add_argument("--threads", type=int, default=8, help="curation.fetch.threads")
    parser.add_argument("--partition-size", type=int, default=1000, help="candidates per partition")
    parser.add_argument(
        "--device",
        default="cpu",
        help="quality.device: cpu (the fast path) or cuda (pyiqa on the GPU, bench/gpu_build.sh)",
    )
    parser.add_argument(
        "--warmup",
        type=int,
        default=12,
        help="inputs of an unmeasured folder build run first (0: none), as a running worker has",
    )
    args = parser.parse_args(argv)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if not modes or set(modes) - set(MODES):
        parser.error(f"--modes takes {', '.join(MODES)}")
    if args.generated < 0 or args.copies < 0 or args.warmup < 0:
        parser.error("--generated, --copies and --warmup must be >= 0")
    if args.labels is None:
        from bench.curation_accuracy import DEFAULT_LABELS

        args.labels = str(DEFAULT_LABELS)
    from storage.devices import resolve_device

    try:  # before the inputs are gathered: a CUDA request without CUDA is a one-line error
        resolve_device(args.device)
    except ValueError as exc:
        parser.error(f"--device: {exc}")
    report = Report("build", args, packages=("pyiqa", "scikit-image"))
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from bench.curation_accuracy import InputError

    with tempfile.TemporaryDirectory(prefix="mird-bench-build-") as tmp:
        folder = Path(tmp) / "images"
        folder.mkdir()
        try:
            inputs = place_inputs(args, folder)
        except InputError as exc:
            print(f"bench.build: error: {exc}", file=sys.stderr)
            return 2
        from curation import measures
        from curation.build import _scorer
        from curation.quality import QualityConfig

        setup = time.process_time()
        # the metrics, built once per process (the build reuses this scorer); the device was
        # checked before the inputs were gathered
        _scorer(QualityConfig(device=args.device).model_dump_json())
        measures.warm_up()  # the compiled loops of the filters: loaded once per process
        setup = time.process_time() - setup
        warmup = warm_up(folder, Path(tmp), args)
        results = {}
        for mode in modes:
            print(f"bench.build: {mode} build of {inputs['files']} files", file=sys.stderr)
            results[mode] = run_mode(mode, folder, Path(tmp) / f"out-{mode}", args)
    first = results[modes[0]]
    report.emit(
        {
            "inputs": inputs,
            "setup_cpu_s": round(setup, 3),
            "warmup": warmup,
            "cpu_s_per_candidate": first["cpu_s_per_candidate"],
            "candidates_per_s_per_core": first["candidates_per_s_per_core"],
            "stage_cpu_s": first["stage_cpu_s"],
            "modes": results,
            "target_le_0_1": first["cpu_s_per_candidate"] <= TARGET_CPU_S_PER_CANDIDATE,
        }
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
