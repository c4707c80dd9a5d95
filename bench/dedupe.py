"""Benchmark the exact near-duplicate search on synthetic 64-bit hashes; prints one JSON object.

    .venv/bin/python -m bench.dedupe --n 2000000 --d 4
    .venv/bin/python -m bench.dedupe --n 10000000 --d 4 --dask-local 2
    .venv/bin/python -m bench.dedupe --n 100000000 --d 4 --workers 2 --queries 20
    .venv/bin/python -m bench.dedupe --n 2000000 --d 4 --stage   # the whole dedupe stage

A fraction of the hashes are planted copies of others at Hamming distances 0..d+2 (so some
are just outside the radius). ``seconds`` (wall clock) times the search only (collapse of
identical hashes, all tables, expansion to item pairs), not the data generation or the recall
check; ``cpu_seconds`` is the CPU time of that search in this process plus, with
``--dask-local``, in the workers, which is steadier than wall time on a shared machine.
``recall`` compares, for a sample of query hashes (half of them planted), the pairs found with
a brute-force scan of the query against all n hashes; ``precision`` checks that every reported
pair is within d; ``planted_recall`` checks every planted pair within d (not a sample).
``peak_rss_mb`` is this process's peak resident set (ru_maxrss), which includes the generated
data; with ``--dask-local`` the workers' peaks are listed separately. ``--workers W`` searches
in W forked processes; ``peak_pss_total_mb`` is then the peak (sampled during the search) of
this process's and its workers' summed proportional set sizes (shared pages counted once), the
memory the search really holds, and ``driver_cpu_seconds`` the serial part (collapse and
expansion).
"""

from __future__ import annotations

import argparse
import resource
import threading
import time

import numpy as np

from bench.common import Report
from curation.dedupe import dedupe_columns as dedupe
from curation.dedupe import near_duplicate_pairs, plan_blocks


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class TreeMemory:
    """Peak proportional set size (PSS) of this process and its children, sampled every
    ``every_s``: forked workers share the parent's pages copy-on-write, so their own RSS
    counts those pages again; PSS splits shared pages between the processes that map them,
    and the sum is what the search really holds."""

    def __init__(self, every_s: float = 0.25) -> None:
        import psutil

        self.every_s = every_s
        self.process = psutil.Process()
        self.peak_mb = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> float:
        total = 0
        for process in [self.process, *self.process.children(recursive=True)]:
            try:
                total += process.memory_full_info().pss
            except Exception:  # noqa: BLE001 - a worker that just exited
                pass
        return total / 2**20

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            self.peak_mb = max(self.peak_mb, self._sample())

    def __enter__(self) -> TreeMemory:
        self.peak_mb = self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def synthetic_hashes(
    n: int, d: int, planted_fraction: float, seed: int, planted_pairs: list | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Random hashes with ``planted_fraction`` of them planted copies; also some planted indices.

    ``planted_pairs``, if given, receives every planted (source, target) pair within ``d``.
    """
    rng = np.random.default_rng(seed)
    hashes = rng.integers(0, np.iinfo(np.uint64).max, n, dtype=np.uint64, endpoint=True)
    k = int(n * planted_fraction) // 2
    chosen = rng.choice(n, 2 * k, replace=False)
    sources, targets = chosen[:k], chosen[k:]
    distance = rng.integers(0, d + 3, k)
    masks = np.empty(k, dtype=np.uint64)
    for start in range(0, k, 1 << 18):  # bounded memory for the (k, 64) bit matrix
        stop = min(start + (1 << 18), k)
        flips = rng.random((stop - start, 64)).argsort(axis=1) < distance[start:stop, None]
        masks[start:stop] = np.packbits(flips, axis=1).view(">u8").ravel()
    hashes[targets] = hashes[sources] ^ masks
    if planted_pairs is not None:
        within = distance <= d
        planted_pairs.append(np.stack([sources[within], targets[within]], axis=1))
    return hashes, np.concatenate([sources[: 1 << 16], targets[: 1 << 16]])


def planted_recall(n: int, pairs: np.ndarray, planted: np.ndarray) -> float:
    """Share of the planted pairs within d (all of them, not a sample) that ``pairs`` holds."""
    if not len(planted):
        return 1.0
    found = np.sort(pairs[:, 0] * np.int64(n) + pairs[:, 1])
    low, high = planted.min(axis=1), planted.max(axis=1)
    wanted = low.astype(np.int64) * np.int64(n) + high
    at = np.minimum(np.searchsorted(found, wanted), max(len(found) - 1, 0))
    hit = found[at] == wanted if len(found) else np.zeros(len(wanted), bool)
    return float(np.mean(hit))


def recall_on_sample(
    hashes: np.ndarray, pairs: np.ndarray, d: int, queries: np.ndarray
) -> tuple[float, int]:
    """Share of the true neighbours of ``queries`` (brute force) that ``pairs`` contains."""
    found = set()
    query_set = np.zeros(len(hashes), dtype=bool)
    query_set[queries] = True
    for i, j in pairs[query_set[pairs[:, 0]] | query_set[pairs[:, 1]]].tolist():
        found.add((i, j))
    truth = 0
    hit = 0
    for q in queries.tolist():
        neighbours = np.flatnonzero(np.bitwise_count(hashes ^ hashes[q]) <= d)
        for j in neighbours.tolist():
            if j == q:
                continue
            truth += 1
            hit += (min(q, j), max(q, j)) in found
    return (hit / truth if truth else 1.0), truth


def run_stage(
    hashes: np.ndarray, args: argparse.Namespace, queries: np.ndarray, result: dict
) -> None:
    """Time :func:`dedupe` on Arrow columns; recall: true pairs of which at most one is kept."""
    import pyarrow as pa

    rng = np.random.default_rng(args.seed + 2)
    n = len(hashes)
    keys = pa.array(np.char.add("img/", np.arange(n).astype(str)))
    sha = np.char.add("sha-", np.arange(n).astype(str))
    copies = rng.choice(n, 2 * (n // 2000), replace=False).reshape(2, -1)  # 0.1 % byte copies
    sha[copies[1]] = sha[copies[0]]
    hashes = hashes.copy()
    hashes[copies[1]] = hashes[copies[0]]
    quality = rng.random(n)
    width, height = rng.integers(500, 6000, n), rng.integers(500, 6000, n)

    start, cpu_start = time.perf_counter(), time.process_time()
    out = dedupe(
        keys, pa.array(sha), hashes, quality=quality, width=width, height=height, d=args.d, m=args.m
    )
    result["seconds"] = round(time.perf_counter() - start, 2)
    result["cpu_seconds"] = round(time.process_time() - cpu_start, 2)
    result["peak_rss_mb"] = round(_peak_rss_mb())
    result["pairs"] = out.pairs
    result["rejects"] = out.rejects.num_rows
    truth = resolved = 0
    for q in queries.tolist():
        for j in np.flatnonzero(np.bitwise_count(hashes ^ hashes[q]) <= args.d).tolist():
            if j != q:
                truth += 1
                resolved += not (out.keep[q] and out.keep[j])
    result["recall"] = resolved / truth if truth else 1.0
    result["recall_true_pairs"] = truth


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2_000_000)
    parser.add_argument("--d", type=int, default=4)
    parser.add_argument("--m", type=int, default=None, help="blocks (default: cost model)")
    parser.add_argument("--planted-fraction", type=float, default=0.1)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=1, help="forked search processes")
    parser.add_argument("--dask-local", type=int, default=0, help="LocalCluster worker count")
    parser.add_argument("--parts-per-table", type=int, default=1)
    parser.add_argument(
        "--stage",
        action="store_true",
        help="time the whole dedupe stage (keys, sha256, quality, keeper policy, rejects)",
    )
    args = parser.parse_args()
    if args.stage and args.dask_local:
        parser.error("--stage runs single-process; drop --dask-local")
    if args.n < max(args.queries, 2):
        parser.error("--n must be at least --queries (and 2)")
    packages = ("dask", "distributed") if args.dask_local else ()
    report = Report("dedupe", args, packages=packages)

    planted_pairs: list[np.ndarray] = []
    hashes, planted = synthetic_hashes(
        args.n, args.d, args.planted_fraction, args.seed, planted_pairs
    )
    rng = np.random.default_rng(args.seed + 1)
    half = args.queries // 2
    queries = np.unique(
        np.concatenate(
            [rng.choice(planted, half, replace=False), rng.choice(args.n, half, replace=False)]
        )
    )
    plan = plan_blocks(args.n, args.d, args.m)
    result: dict[str, object] = {"n": args.n, "d": args.d, "m": plan.m, "tables": len(plan.tables)}

    if args.dask_local:
        from distributed import Client, LocalCluster

        from curation.dedupe_dask import near_duplicate_pairs_dask

        start = time.perf_counter()
        with (
            LocalCluster(
                n_workers=args.dask_local,
                threads_per_worker=1,
                processes=True,
                dashboard_address=":0",
            ) as cluster,
            Client(cluster) as client,
        ):
            result["cluster_start_seconds"] = round(time.perf_counter() - start, 2)
            cpu_before = client.run(time.process_time)
            start, cpu_start = time.perf_counter(), time.process_time()
            pairs = near_duplicate_pairs_dask(
                hashes, client, args.d, m=args.m, parts_per_table=args.parts_per_table
            )
            seconds = time.perf_counter() - start
            driver_cpu = time.process_time() - cpu_start
            cpu_after = client.run(time.process_time)
            worker_rss = client.run(_peak_rss_mb)
        worker_cpu = sum(cpu_after[w] - cpu_before[w] for w in cpu_after)
        result["cpu_seconds"] = round(driver_cpu + worker_cpu, 2)
        result["driver_cpu_seconds"] = round(driver_cpu, 2)
        result["dask_workers"] = args.dask_local
        result["worker_peak_rss_mb"] = sorted(round(v) for v in worker_rss.values())
    elif args.stage:
        run_stage(hashes, args, queries, result)
        report.emit(result)
        return
    else:
        start, cpu_start = time.perf_counter(), time.process_time()
        with TreeMemory() as memory:
            pairs = near_duplicate_pairs(hashes, args.d, m=args.m, workers=args.workers)
        seconds = time.perf_counter() - start
        result["peak_pss_total_mb"] = round(memory.peak_mb)
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        driver_cpu = time.process_time() - cpu_start
        result["cpu_seconds"] = round(driver_cpu + children.ru_utime + children.ru_stime, 2)
        result["driver_cpu_seconds"] = round(driver_cpu, 2)  # collapse, expansion: serial
        result["workers"] = args.workers
        if args.workers > 1:  # the largest worker's peak, shared pages included
            result["worker_peak_rss_mb"] = round(children.ru_maxrss / 1024)

    result["seconds"] = round(seconds, 2)
    result["peak_rss_mb"] = round(_peak_rss_mb())
    result["pairs"] = len(pairs)
    distances = np.bitwise_count(hashes[pairs[:, 0]] ^ hashes[pairs[:, 1]])
    result["precision"] = float(np.mean(distances <= args.d)) if len(pairs) else 1.0
    result["planted_recall"] = planted_recall(args.n, pairs, planted_pairs[0])
    result["planted_pairs"] = len(planted_pairs[0])
    recall, truth = recall_on_sample(hashes, pairs, args.d, queries)
    result["recall"] = recall
    result["recall_queries"] = len(queries)
    result["recall_true_pairs"] = truth
    report.emit(result)


if __name__ == "__main__":
    main()
