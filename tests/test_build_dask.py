"""The global dedupe on a Dask cluster: same result as in-process, and a Dask build uses it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from curation.build import run_build
from curation.config import BuildConfig
from curation.dedupe import (
    REASON_DUPLICATE,
    REASON_NEAR_DUPLICATE,
    DedupeError,
    near_duplicate_pairs,
)
from curation.dedupe import (
    dedupe_columns as dedupe,
)
from curation.dedupe_dask import DaskPairSearch
from storage.verify import verify_version
from storage.versions import Dataset
from tests.bench_runner import bench
from tests.build_sources import served_demo_source, small_build_config

REPO = Path(__file__).resolve().parents[1]


def _flip(values: np.ndarray, bits: Any, rng: np.random.Generator) -> np.ndarray:
    """Each value with ``bits`` (one count, or one per value) random bits of its 64 flipped."""
    flips = rng.random((len(values), 64)).argsort(axis=1) < np.reshape(bits, (-1, 1))
    return values ^ np.packbits(flips, axis=1).view(">u8").ravel().astype(np.uint64)


def _synthetic(n: int = 3_000, n_prev: int = 600, seed: int = 5) -> tuple[dict, pa.Table]:
    """Candidates and a previous index with planted byte copies and near copies.

    Among the candidates: byte-identical copies (same sha256 and hash) of other candidates and
    of previous samples, near copies (1..4 bits off) of both, copies of copies (chains), and a
    few near copies whose 256-bit hash is far (chance collisions the verification splits).
    """
    rng = np.random.default_rng(seed)
    hashes = rng.integers(0, 2**64 - 1, n_prev + n, dtype=np.uint64, endpoint=True)
    long = rng.integers(0, 2**64 - 1, (n_prev + n, 4), dtype=np.uint64, endpoint=True)
    sha = [f"s{i}" for i in range(n_prev + n)]
    cand = np.arange(n_prev, n_prev + n)
    picks = rng.permutation(cand)
    byte_copies, near_copies, chains, collisions = np.split(picks[:900], [200, 600, 700])
    sources = rng.choice(n_prev + n // 2, 900)  # previous samples and early candidates
    sources = np.where(np.isin(sources, picks[:900]), sources % n_prev, sources)
    for targets, origin in (
        (byte_copies, sources[:200]),
        (near_copies, sources[200:600]),
        (chains, near_copies[:100]),
        (collisions, sources[700:900]),
    ):
        near = targets is not byte_copies
        bits = rng.integers(1, 5, len(targets))  # 1..4, all within the default d = 4
        hashes[targets] = _flip(hashes[origin], bits, rng) if near else hashes[origin]
        if targets is not collisions:
            long[targets] = long[origin]
            if near:  # a few bits off in the long hash too, well within the verify distance
                long[targets, 0] = _flip(long[origin, 0], 6, rng)
        for t, o in zip(targets, origin, strict=True):
            if not near:
                sha[t] = sha[o]
    keys = [f"k{i:05d}" for i in range(n_prev + n)]
    previous = pa.table(
        {
            "key": keys[:n_prev],
            "sha256": sha[:n_prev],
            "phash": pa.array(hashes[:n_prev], pa.uint64()),
            "phash256": [row.astype(">u8").tobytes() for row in long[:n_prev]],
        }
    )
    candidates = {
        "keys": keys[n_prev:],
        "sha256": sha[n_prev:],
        "hashes": hashes[n_prev:],
        "quality": rng.normal(size=n),
        "width": rng.integers(500, 3000, n),
        "height": rng.integers(500, 3000, n),
        "verify": [row.astype(">u8").tobytes() for row in long[n_prev:]],
    }
    return candidates, previous


@pytest.fixture(scope="module")
def scheduler() -> Iterator[str]:
    from distributed import LocalCluster

    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
    ) as cluster:
        yield cluster.scheduler_address


def _rows(result) -> list[tuple]:
    return sorted(tuple(row.values()) for row in result.rejects.to_pylist())


@pytest.mark.integration
def test_dedupe_on_dask_equals_in_process(scheduler: str) -> None:
    candidates, previous = _synthetic()
    local = dedupe(**candidates, previous=previous)
    on_dask = dedupe(**candidates, previous=previous, pair_search=DaskPairSearch(scheduler))
    split = dedupe(
        **candidates,
        previous=previous,
        pair_search=DaskPairSearch(scheduler, parts_per_table=4),
    )
    reasons = set(local.rejects.column("reason").to_pylist())
    assert reasons == {REASON_DUPLICATE, REASON_NEAR_DUPLICATE}
    details = set(local.rejects.column("detail").to_pylist())
    assert any(key < candidates["keys"][0] for key in details), "no candidate hit a previous one"
    assert local.pairs > 300
    for result in (on_dask, split):
        assert result.pairs == local.pairs
        assert _rows(result) == _rows(local)
        assert np.array_equal(result.keep, local.keep)
    # the verification ran on the Dask pairs too: without it more pairs survive
    unverified = dedupe(**{**candidates, "verify": None}, previous=previous)
    assert unverified.pairs > on_dask.pairs


def test_pair_search_contract_is_checked() -> None:
    with pytest.raises(DedupeError, match="m tunes the in-process pair search"):
        dedupe(["a"], ["1"], [1], m=5, pair_search=near_duplicate_pairs)
    with pytest.raises(DedupeError, match=r"pair search returned shape \(3,\)"):
        dedupe(["a", "b"], ["1", "2"], [1, 1], pair_search=lambda h, d: np.zeros(3))


# ----------------------------------------------------------------------- the real flow


@pytest.mark.integration
def test_a_local_cluster_lives_as_long_as_the_build() -> None:
    from distributed import Client

    from flows.build_flow import _dask_scheduler

    with _dask_scheduler(None, 0) as scheduler:
        assert scheduler is None  # no Dask: the dedupe runs in the flow's process
    with _dask_scheduler("tcp://10.0.0.1:8786", 4) as scheduler:
        assert scheduler == "tcp://10.0.0.1:8786"  # a given cluster wins, and is not closed
    with pytest.raises(RuntimeError, match="partition failed"):
        with _dask_scheduler(None, 1) as scheduler:
            with Client(scheduler, set_as_default=False) as client:
                assert len(client.scheduler_info()["workers"]) == 1
            raise RuntimeError("partition failed")
    with pytest.raises(OSError):  # closed although the build failed
        Client(scheduler, timeout=1, set_as_default=False)


@pytest.fixture(scope="module")
def url_list(tmp_path_factory) -> Iterator[Path]:
    with served_demo_source(tmp_path_factory.mktemp("http")) as (path, _expected):
        yield path


def _rejects(version) -> list[tuple]:
    return sorted(
        (r["candidate_id"], r["stage"], r["reason"], r["detail"])
        for r in version.rejects().to_pylist()
    )


@pytest.mark.slow
@pytest.mark.integration
def test_dask_build_runs_its_dedupe_on_the_cluster(tmp_path: Path, url_list: Path) -> None:
    local_config = small_build_config(tmp_path / "local", url_list, partition_size=2)
    local = run_build(BuildConfig.model_validate(local_config))
    assert local.stats()["dedupe_backend"] == "in-process"

    config = tmp_path / "dask.json"
    config.write_text(json.dumps(small_build_config(tmp_path / "dask", url_list, partition_size=2)))
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect-home")}
    build = subprocess.run(
        [sys.executable, "-m", "flows.cli", "build", "--config", str(config)]
        + ["--dask-local", "2", "--verbose"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert build.returncode == 0, build.stderr[-3000:]
    logs = build.stdout + build.stderr
    assert "global dedupe: near-duplicate search on the Dask cluster at tcp://" in logs
    on_dask = Dataset(str(tmp_path / "dask"), "ird").version()
    assert verify_version(on_dask).ok
    stats = on_dask.stats()
    assert stats["dedupe_backend"] == "dask"
    assert stats["near_duplicate_pairs"] == local.stats()["near_duplicate_pairs"] > 0
    assert (
        on_dask.manifest().column("key").to_pylist() == local.manifest().column("key").to_pylist()
    )
    assert _rejects(on_dask) == _rejects(local)
    assert {r[2] for r in _rejects(local)} >= {REASON_DUPLICATE, REASON_NEAR_DUPLICATE}


@pytest.mark.slow
@pytest.mark.integration
def test_scale_run_bench_builds_generated_images_on_dask(tmp_path) -> None:
    """bench.scale_run at its tiniest: a Dask build of generated images over HTTP, a share of
    them too small (rejected from the header), with the global dedupe on the cluster and a
    memory trace per worker, also appended to a file as it is sampled."""
    trace_file = tmp_path / "trace.jsonl"
    result = bench(
        "scale_run", "--n", "120", "--partition-size", "40", "--sample-s", "1",
        "--fetch-threads", "4", "--small-fraction", "0.5", "--memo-entries", "10",
        "--trace-file", str(trace_file), timeout=900,
    )  # fmt: skip
    assert result["candidates"] == 120 and result["partitions"] == 3
    assert result["candidates_per_s"] > 0 and result["dedupe_backend"] == "dask"
    assert result["kept"] + result["rejected"] == 120
    assert 30 <= result["rejects_by_stage"]["probe"] <= 90  # about half are too small
    trace = result["rss_trace"]
    assert trace["columns"][:2] == ["seconds", "candidates_done"]
    assert trace["rows"] and all(len(row) == 4 for row in trace["rows"])
    assert len(result["rss_slope_mb_per_100k"]) == 2
    lines = [json.loads(line) for line in trace_file.read_text().splitlines()]
    assert len(lines) >= len(trace["rows"]) and all(len(row) == 4 for row in lines)


# ------------------------------------------------------------- partitions on GPU workers


@pytest.mark.integration
def test_partition_resources_need_a_worker_offering_them(scheduler: str) -> None:
    from flows.build_flow import check_worker_resources

    with pytest.raises(ValueError, match="none of the 2 Dask worker") as info:
        check_worker_resources(scheduler, {"GPU": 1})
    assert "\n" not in str(info.value) and "--resources GPU=1" in str(info.value)


@pytest.mark.integration
def test_annotated_submissions_wait_for_a_worker_with_the_resource(scheduler: str) -> None:
    """What process_partitions does around its submissions: a task asking for a resource no
    worker offers is never run; the same task without the annotation runs at once."""
    from distributed import Client, TimeoutError, wait

    from flows.build_flow import _annotated

    with Client(scheduler) as client:
        with _annotated({"GPU": 1}):
            restricted = client.submit(sum, [1, 2], pure=False)
        free = client.submit(sum, [3, 4], pure=False)
        assert free.result(timeout=60) == 7
        with pytest.raises(TimeoutError):
            wait(restricted, timeout=3)
        assert restricted.status == "pending"
        restricted.cancel()


@pytest.mark.slow
@pytest.mark.integration
def test_dask_local_build_with_partition_resources(tmp_path: Path, url_list: Path) -> None:
    """`partition_resources.GPU=1` (a KEY=VALUE setting) on a --dask-local cluster: its workers
    offer the resource, the build checks it and runs every partition there."""
    config = tmp_path / "dask.json"
    config.write_text(json.dumps(small_build_config(tmp_path / "out", url_list, partition_size=2)))
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect-home")}
    build = subprocess.run(
        [sys.executable, "-m", "flows.cli", "build", "--config", str(config)]
        + ["--dask-local", "1", "--verbose", "partition_resources.GPU=1"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert build.returncode == 0, build.stderr[-3000:]
    assert "partitions need GPU=1: 1 of 1 Dask workers offer it" in build.stdout + build.stderr
    version = Dataset(str(tmp_path / "out"), "ird").version()
    assert verify_version(version).ok and version.stats()["samples"] > 0
