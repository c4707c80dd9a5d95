"""A build of N generated candidates on a local Dask cluster over real HTTP; prints one JSON object.

    .venv/bin/python -m bench.scale_run --n 20000 --workers 2
    .venv/bin/python -m bench.scale_run --n 1000000 --workers 2 --sample-s 10

The candidates are URLs of a local HTTP server (:class:`flows.demo.server.DemoServer`, in a
process of its own) that draws each image when it is asked for: a ``--side``-pixel crop of one
of scikit-image's photos at a position (and mirror) derived from the URL's number, JPEG q90.
Nearby positions give near duplicates and repeated positions byte-identical ones, so the global
dedupe has work to do. The build runs as ``flows.build_flow`` runs it on Dask, without Prefect:
one task per partition (``curation.build.process_partition``) on a ``LocalCluster`` of
``--workers`` single-threaded processes, then ``curation.build.finish_build`` with the global
near-duplicate search on the same cluster (``curation.dedupe_dask.DaskPairSearch``).

Figures: ``candidates_per_s`` (partitions phase: candidates over its wall seconds), the global
dedupe + publish seconds, the per-stage CPU seconds per candidate summed from the partitions'
``_stats.json`` ``stage_seconds`` (when the build records them), and each worker's resident set
(RSS, psutil) sampled every ``--sample-s`` seconds against the candidates done so far:
``rss_slope_mb_per_100k`` is the least-squares slope of a worker's RSS over candidates done in
the second half of the run (after the models and caches are loaded; flat memory is about 0),
``rss_trace`` the samples (thinned to at most 60). ``worker_cpu_ms_per_candidate`` is the
workers' whole CPU time (all threads, Dask's share included) over the candidates: the figure
that sizes a cluster, steady on a shared machine where wall rates are not. The server's CPU is
not the build's: it runs on the same cores, so candidates/s is a lower bound for the build.
"""

from __future__ import annotations

import argparse
import io
import json
import multiprocessing
import tempfile
import threading
import time
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import Report

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry")


class GeneratedImages:
    """``img/<i>.jpg`` -> a JPEG crop drawn from ``i`` (a mapping the demo server reads)."""

    def __init__(self, side: int, small_fraction: float = 0.0, small_side: int = 64) -> None:
        import skimage.data

        self.side = side
        self.small_permille = round(1000 * small_fraction)
        self.small_side = small_side
        self.photos = [getattr(skimage.data, name)() for name in PHOTOS]

    def get(self, name: str, default: bytes | None = None) -> bytes | None:
        from PIL import Image

        stem = name.removeprefix("img/").removesuffix(".jpg")
        if not stem.isdigit() or name != f"img/{stem}.jpg":
            return default
        i = int(stem)
        photo = self.photos[i % len(self.photos)]
        mix = zlib.crc32(stem.encode())  # position and mirror from the number, not random
        # a share of the URLs are too small: rejected from the header, never decoded (in the
        # real funnel about two thirds of the candidates leave before scoring)
        side = self.small_side if (mix >> 20) % 1000 < self.small_permille else self.side
        h, w = photo.shape[:2]
        y = mix % (h - side + 1)
        x = (mix >> 12) % (w - side + 1)
        crop = photo[y : y + side, x : x + side]
        if mix >> 31:
            crop = crop[:, ::-1]
        buffer = io.BytesIO()
        Image.fromarray(np.ascontiguousarray(crop)).convert("RGB").save(buffer, "JPEG", quality=90)
        return buffer.getvalue()

    def __iter__(self):  # noqa: ANN204 - nothing to list: every name is drawn on demand
        return iter(())


def _serve(
    side: int, small_fraction: float, small_side: int, urls: multiprocessing.Queue, stop: Any
) -> None:
    from flows.demo.server import DemoServer

    server = DemoServer({})
    server.files = GeneratedImages(side, small_fraction, small_side)  # type: ignore[assignment]  # drawn on demand
    with server:
        urls.put(server.url)
        stop.wait()


def _rss_sampler(  # noqa: ANN202
    pids: dict[str, int],
    trace: list,
    done: list[int],
    every_s: float,
    stop,  # noqa: ANN001 - a threading.Event
    trace_file: Path | None = None,
):
    import psutil

    processes = {name: psutil.Process(pid) for name, pid in pids.items()}
    start = time.perf_counter()
    while not stop.wait(every_s):
        row = [round(time.perf_counter() - start, 1), done[0]]
        for process in processes.values():
            try:
                row.append(round(process.memory_info().rss / 2**20))
            except psutil.Error:
                row.append(None)
        trace.append(row)
        if trace_file is not None:  # a long run leaves its trace even when it is stopped
            with trace_file.open("a") as out:
                out.write(json.dumps(row) + "\n")


def _slope_mb_per_100k(trace: list, column: int) -> float | None:
    half = [row for row in trace[len(trace) // 2 :] if row[column] is not None]
    if len(half) < 3 or half[-1][1] == half[0][1]:
        return None
    done = np.array([row[1] for row in half], dtype=float)
    rss = np.array([row[column] for row in half], dtype=float)
    return round(float(np.polyfit(done, rss, 1)[0] * 100_000), 1)


def _stage_cpu(stats: list[dict]) -> dict[str, float]:
    total: dict[str, float] = {}
    for one in stats:
        for stage, times in (one.get("stage_seconds") or {}).items():
            total[stage] = total.get(stage, 0.0) + float(times.get("cpu_s", 0.0))
    return total


def _process(partition, config, build_id):  # noqa: ANN001, ANN202 - runs on a Dask worker
    from curation.build import process_partition
    from storage.build_area import BuildArea
    from storage.versions import Dataset

    area = BuildArea(Dataset(config.root, config.name), build_id)
    stats = process_partition(partition, config, area)
    return {k: v for k, v in stats.items() if k != "downstream"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20_000, help="candidates")
    parser.add_argument("--workers", type=int, default=2, help="Dask worker processes")
    parser.add_argument("--partition-size", type=int, default=1000)
    parser.add_argument("--side", type=int, default=160, help="side of the generated images")
    parser.add_argument("--fetch-threads", type=int, default=8)
    parser.add_argument("--sample-s", type=float, default=5.0, help="RSS sampling period")
    parser.add_argument("--root", default=None, help="build root (default: a temp folder)")
    parser.add_argument(
        "--small-fraction",
        type=float,
        default=0.0,
        help="share of the URLs served as --small-side images (rejected from the header)",
    )
    parser.add_argument("--small-side", type=int, default=64)
    parser.add_argument(
        "--trace-file", type=Path, default=None, help="append each RSS sample as a JSON line"
    )
    parser.add_argument(
        "--memo-entries",
        type=int,
        default=None,
        help="dedupe.copies_memo_entries (default: the configuration's, 50,000)",
    )
    args = parser.parse_args()
    report = Report("scale_run", args, packages=("dask", "distributed", "psutil"))

    from distributed import Client, LocalCluster, as_completed

    from curation.build import finish_build, plan_build
    from curation.config import BuildConfig
    from curation.dedupe_dask import DaskPairSearch

    result: dict[str, Any] = {"n": args.n, "workers": args.workers}
    ctx = multiprocessing.get_context("spawn")
    urls, stop_server = ctx.Queue(), ctx.Event()
    server = ctx.Process(
        target=_serve,
        args=(args.side, args.small_fraction, args.small_side, urls, stop_server),
        daemon=True,
    )
    server.start()
    with tempfile.TemporaryDirectory(dir=args.root) as tmp:
        try:
            base = urls.get(timeout=120)
            url_list = Path(tmp) / "urls.txt"
            url_list.write_text("".join(f"{base}/img/{i}.jpg\n" for i in range(args.n)))
            config = BuildConfig.model_validate(
                {
                    "root": str(Path(tmp) / "root"),
                    "name": "scale",
                    "curation": {
                        "sources": [{"uri": str(url_list)}],
                        "probe": {"min_side": args.side},
                        "partition_size": args.partition_size,
                        "fetch": {
                            "allow_hosts": ["127.0.0.1"],
                            "retries": 0,
                            "threads": args.fetch_threads,
                        },
                    },
                    "quality": {"max_side": 128},
                    "publish": {"allow_empty": True},
                    **(
                        {"dedupe": {"copies_memo_entries": args.memo_entries}}
                        if args.memo_entries is not None
                        else {}
                    ),
                }
            )
            start = time.perf_counter()
            plan = plan_build(config)
            result["plan_seconds"] = round(time.perf_counter() - start, 2)
            result["partitions"] = len(plan.partitions)
            with (
                LocalCluster(
                    n_workers=args.workers,
                    threads_per_worker=1,
                    processes=True,
                    dashboard_address=":0",
                    memory_limit=0,
                ) as cluster,
                Client(cluster) as client,
            ):
                pids = client.run(lambda: __import__("os").getpid())
                trace: list = []
                done = [0]
                stop = threading.Event()
                sampler = threading.Thread(
                    target=_rss_sampler,
                    args=(pids, trace, done, args.sample_s, stop, args.trace_file),
                    daemon=True,
                )
                sampler.start()
                cpu_before = client.run(time.process_time)
                start = time.perf_counter()
                futures = [
                    client.submit(_process, p, config, plan.area.build_id, pure=False)
                    for p in plan.partitions
                ]
                stats = []
                for future in as_completed(futures):
                    one = future.result()
                    future.release()
                    stats.append(one)
                    done[0] += int(one.get("candidates", 0))
                partitions_s = time.perf_counter() - start
                cpu_after = client.run(time.process_time)
                worker_cpu = sum(cpu_after[w] - cpu_before[w] for w in cpu_after)
                start = time.perf_counter()
                version = finish_build(
                    config, plan, pair_search=DaskPairSearch(cluster.scheduler_address)
                )
                finish_s = time.perf_counter() - start
                stop.set()
                sampler.join()
            built = version.stats()
        finally:
            stop_server.set()
            server.join(timeout=30)
    candidates = done[0]
    result["candidates"] = candidates
    result["partitions_seconds"] = round(partitions_s, 1)
    result["candidates_per_s"] = round(candidates / partitions_s, 1)
    result["finish_seconds"] = round(finish_s, 1)  # global dedupe + publish
    result["kept"] = built.get("samples")
    result["near_duplicate_pairs"] = built.get("near_duplicate_pairs")
    result["dedupe_backend"] = built.get("dedupe_backend")
    funnel = built.get("funnel", {})
    result["rejected"] = funnel.get("rejected")
    result["rejects_by_stage"] = {
        stage: sum(reasons.values()) for stage, reasons in funnel.get("by_stage", {}).items()
    }
    # all the workers' CPU (every thread, Dask's own work included) per candidate, which is
    # what sizes a cluster; the stages' share of it shows what the stage timers miss
    result["worker_cpu_s"] = round(worker_cpu, 1)
    result["worker_cpu_ms_per_candidate"] = round(1000 * worker_cpu / max(candidates, 1), 2)
    stage_cpu = _stage_cpu(stats)
    if stage_cpu:
        result["stage_cpu_ms_per_candidate"] = {
            stage: round(1000 * s / max(candidates, 1), 3) for stage, s in stage_cpu.items()
        }
        result["stage_share_of_worker_cpu"] = round(sum(stage_cpu.values()) / worker_cpu, 3)
    names = list(pids)
    result["rss_slope_mb_per_100k"] = [_slope_mb_per_100k(trace, 2 + k) for k in range(len(names))]
    last = trace[-1] if trace else None
    result["rss_final_mb"] = last[2:] if last else None
    result["rss_peak_mb"] = (
        [max((row[2 + k] or 0) for row in trace) for k in range(len(names))] if trace else None
    )
    step = max(1, len(trace) // 60)
    result["rss_trace"] = {
        "columns": ["seconds", "candidates_done", *[f"worker{k}_mb" for k in range(len(names))]],
        "rows": trace[::step],
    }
    report.emit(result)


if __name__ == "__main__":
    main()
