"""A Million-IRD build, Prefect-free: plan -> partitions -> dedupe -> publish.

The Prefect flow (``flows/build_flow.py``) and ``run_build`` below call the same functions;
the flow only fans partitions out to a task runner (threads or Dask) and reports.

One partition: fetch -> probe -> sha256 -> reduced decode -> content filters
(``curation.partition``), then, per accepted record, perceptual hashes + IQA on the proxy
(:class:`StagingSink`), and the record's original bytes go to the partition's staging shard.
The partition's stats file, written last, marks it done; a rerun skips it.

Gates by cost: a copy of a sample the parent version holds (same sha256) is rejected as
``duplicate_of`` it before any decode; a copy of a record this build already hashed and
scored (in this process) reuses its hashes, scores and verdict instead of scoring again;
IQA runs only on what passed every cheaper gate. stats.json's ``stage_seconds`` adds up the
partitions' per-stage CPU and wall seconds (``curation.partition.StageTimes``) and the
``dedupe`` and ``publish`` phases (process CPU: they run alone, after every partition).
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curation.config import BuildConfig, DedupeConfig, FetchConfig
from curation.copies import PreparedMemo, PublishedDigests, prepared_memo, published_digests
from curation.decontaminate import TestSetIndex, test_set_index
from curation.dedupe import PairSearch, dedupe
from curation.fetch import Fetcher, host_policy_for
from curation.hashing import perceptual_hash64, phash256, sha256_hex
from curation.host_policy import HostPolicy, shared_policy
from curation.host_signals import HostSignals
from curation.partition import DUPLICATE_URL, StageTimes, run_partition
from curation.publish import EXTRA_COLUMNS_FILE, build_stats, publish_build
from curation.quality import QualityConfig, QualityScorer, metric_info
from curation.reasons import is_transient
from curation.records import AcceptedRecord, Partition, Reject, Rejection
from curation.sources import iter_all_partitions
from curation.urls import redact_url
from storage.atomic import atomic_write_bytes
from storage.build_area import MANIFEST_FILE, SAMPLES_PREFIX, BuildArea
from storage.devices import usable_cores
from storage.schemas import (
    IQA_COLUMNS,
    MANIFEST_SCHEMA,
    MEASUREMENT_COLUMNS,
    REJECTS_SCHEMA,
    parquet_bytes,
    table_from_rows,
)
from storage.shards import Sample, ShardWriter
from storage.uri import join
from storage.versions import Dataset


class NoCandidatesError(ValueError):
    """The sources of a first (or full) build list no candidate at all: nothing to build."""


class NothingKeptError(RuntimeError):
    """Every candidate of the build was rejected: nothing is published (unless
    ``publish.allow_empty``) and the build area, with the rejects, is kept for inspection.

    ``funnel`` is the funnel stats.json would have held; ``area`` the build area's URI.
    """

    def __init__(self, message: str, funnel: dict[str, Any] | None = None, area: str = "") -> None:
        super().__init__(message)
        self.funnel = funnel or {}
        self.area = area

    def __reduce__(self):  # noqa: ANN204 - pickles with its funnel (Prefect may store it)
        return type(self), (str(self), self.funnel, self.area)


@dataclass
class BuildPlan:
    dataset: Dataset
    area: BuildArea
    parent: str | None
    partitions: list[Partition]
    skipped_known: int  # candidates already published or finally rejected by the parent

    @property
    def nothing_new(self) -> bool:
        """An incremental build whose every candidate is known: it would publish a copy."""
        return self.parent is not None and not self.partitions

    def nothing_new_message(self) -> str:
        """What a build with nothing new says instead of publishing (CLI and flow alike)."""
        return f"no new candidates: {self.dataset.name} stays at {self.parent}"

    def known_message(self) -> str:
        return f"{self.skipped_known:,} candidates already known, skipped"


def build_id(config: BuildConfig, parent: str | None) -> str:
    """Same configuration on the same parent -> same id -> a rerun resumes the same area.

    ``publish.allow_empty`` is left out: rerunning a build that kept nothing with
    ``--allow-empty`` publishes the area already built instead of fetching everything again.
    """
    settings = config.model_dump(mode="json", exclude={"publish": {"allow_empty"}})
    payload = json.dumps({"config": settings, "parent": parent}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def known_candidates(dataset: Dataset, parent: str) -> set[str]:
    """Candidates an incremental build on ``parent`` does not fetch again: the samples the
    parent holds, and every candidate rejected for a lasting reason by the parent or any of
    its ancestors (a version's rejects table lists only its own build's candidates, so the
    chain of parents is walked down to the last full build)."""
    known = set(dataset.version(parent).manifest().column("key").to_pylist())
    version: str | None = parent
    while version is not None:
        current = dataset.version(version)
        for row in current.rejects().select(["candidate_id", "reason"]).to_pylist():
            if not is_transient(row["reason"]):
                known.add(row["candidate_id"])
        version = current.entry.get("parent")
    return known


def plan_build(config: BuildConfig) -> BuildPlan:
    dataset = Dataset(config.root, config.name)
    parent = dataset.latest() if config.incremental else None
    known = known_candidates(dataset, parent) if parent is not None else set()
    partitions: list[Partition] = []
    skipped = 0
    for partition in iter_all_partitions(config.curation.sources, config.curation.partition_size):
        fresh = tuple(c for c in partition.candidates if c.id not in known)
        skipped += len(partition.candidates) - len(fresh)
        if fresh:
            partitions.append(Partition(partition.id, partition.source, partition.index, fresh))
    if not partitions and parent is None and not config.publish.allow_empty:
        uris = ", ".join(source.uri for source in config.curation.sources)
        raise NoCandidatesError(f"no candidates in {uris}: nothing to build, nothing published")
    if config.dedupe.test_sets:
        test_set_index(config.dedupe.test_sets)  # a missing or empty test set fails here
    area = BuildArea(dataset, build_id(config, parent))
    return BuildPlan(dataset, area, parent, partitions, skipped)


_SCORER_LOCK = threading.Lock()


def _scorer(quality_json: str) -> QualityScorer:
    """One scorer per process and configuration: building pyiqa metrics costs seconds, and
    must happen on one thread at a time (it patches pyiqa's download hooks while building)."""
    with _SCORER_LOCK:
        return _cached_scorer(quality_json)


@functools.lru_cache(maxsize=4)
def _cached_scorer(quality_json: str) -> QualityScorer:
    return QualityScorer(QualityConfig.model_validate_json(quality_json))


class StagingSink:
    """Hashes and scores each accepted record, then stages its bytes and manifest row.

    ``prepare`` runs in the partition's worker threads (hashing releases the GIL, so it runs
    in parallel); IQA scoring there is bounded by a semaphore so that torch's own threads do
    not oversubscribe the cores. ``accept`` runs on one thread and only writes.
    ``published`` (the parent version's digests) turns copies of its samples into rejects
    before they are decoded; ``memo`` (shared by a build's partitions) spares copies within
    the build a second scoring.
    """

    def __init__(
        self,
        area: BuildArea,
        partition_id: str,
        quality: QualityConfig,
        test_sets: tuple[TestSetIndex, int] | None = None,
        published: PublishedDigests | None = None,
        memo: PreparedMemo | None = None,
    ) -> None:
        self.test_sets = test_sets  # (index, distance): copies of test images are rejected
        import torch

        self.scorer = _scorer(quality.model_dump_json())
        self.published = published
        self.memo = memo if memo is not None else PreparedMemo()
        self.times = StageTimes()
        self.rows: list[dict[str, Any]] = []
        self.shard = area.staging_shard(partition_id)
        self.partition_uri = area.partition_uri(partition_id)
        self.writer = ShardWriter(
            self.partition_uri,
            prefix=SAMPLES_PREFIX,
            max_count=10**9,
            max_bytes=1 << 62,
            digest=False,  # staging shards: each sample's sha256 is in the manifest
        )
        slots = max(1, usable_cores() // max(1, torch.get_num_threads()))
        self._scoring = threading.BoundedSemaphore(slots)
        self._lock = threading.Lock()
        self._prepared: dict[str, dict[str, Any]] = {}
        self._counts = {"published_copies": 0, "prepared_reused": 0}
        # key -> the source's keep_columns values; the manifest has no column for them, so
        # they travel in a side file that publish puts into each sample's .json member
        self.extra_columns: dict[str, dict[str, Any]] = {}

    def published_copy(self, sha256: str) -> str | None:
        """The parent's key for these bytes (the partition runner rejects the candidate)."""
        if self.published is None:
            return None
        key = self.published.key_of(sha256)
        if key is not None:
            with self._lock:
                self._counts["published_copies"] += 1
        return key

    def prepare(self, record: AcceptedRecord) -> Reject | None:
        if record.image is None:
            raise ValueError("hashing and scoring need the reduced decode (filters enabled)")
        sha = record.sha256
        if sha is None:
            with self.times.time("hashes", count=0):
                sha = sha256_hex(record.data)
        first, entry = self.memo.claim(sha)
        value = None
        if not first:
            entry.ready.wait()
            value = entry.value  # None: the first copy failed; do the work here
            if value is not None:
                with self._lock:
                    self._counts["prepared_reused"] += 1
        if value is None:
            try:
                value = self._hash_and_score(record, sha)
            finally:
                if first:
                    self.memo.settle(sha, entry, value)
        hashes, scores, rejected = value
        if rejected is not None:
            stage, reason, detail = rejected
            return Reject(record.candidate, stage, reason, detail, scores or {})
        with self._lock:
            self._prepared[record.id] = {"hashes": hashes, "scores": scores}
        return None

    def _hash_and_score(self, record: AcceptedRecord, sha: str):  # noqa: ANN202 - memo value
        """(hashes, scores or None, (stage, reason, detail) or None) of one record."""
        with self.times.time("hashes"):
            gray = record.image.convert("L")  # both phashes start from the same grey image
            hashes = {"sha256": sha, "phash": perceptual_hash64(gray), "phash256": phash256(gray)}
        if self.test_sets is not None:
            index, distance = self.test_sets
            try:
                index.check(hashes["phash"], distance)
            except Rejection as rejection:
                return hashes, None, (rejection.stage, rejection.reason, rejection.detail)
        with self._scoring, self.times.time("iqa"):
            scores = self.scorer.score([record.image])[0]
        failed = self.scorer.rejects({record.id: scores})
        if failed:
            first = failed[0]
            return hashes, scores, (first["stage"], first["reason"], first["detail"])
        return hashes, scores, None

    def accept(self, record: AcceptedRecord) -> Reject | None:
        with self._lock:
            prepared = self._prepared.pop(record.id, None)
        if prepared is None:  # a runner without the prepare hook: do it here
            late_reject = self.prepare(record)
            if late_reject is not None:
                return late_reject
            with self._lock:
                prepared = self._prepared.pop(record.id)
        scores = prepared["scores"]
        extra = {m: float(v) for m, v in scores.items() if m not in IQA_COLUMNS}
        row: dict[str, Any] = {
            "key": record.id,
            "shard": self.shard,
            "source": record.candidate.source,
            "url": record.candidate.url,
            "caption": record.candidate.caption,
            "license": record.candidate.license,
            **prepared["hashes"],
            "width": record.width,
            "height": record.height,
            "format": record.format,
            "bytes": len(record.data),
            "iqa_extra": extra or None,
            **{f"iqa_{m}": float(scores[m]) for m in IQA_COLUMNS if m in scores},
            **{k: v for k, v in record.measurements.items() if k in MEASUREMENT_COLUMNS},
        }
        meta = {"key": record.id, "url": record.candidate.url, "source": record.candidate.source}
        self.writer.write(Sample(record.id, record.data, record.format, meta))
        self.rows.append(row)
        if record.candidate.extra:
            self.extra_columns[record.id] = record.candidate.extra
        return None

    def finish(self) -> dict[str, Any]:
        self.writer.close()
        self.rows.sort(key=lambda row: row["key"])
        table = table_from_rows(self.rows, MANIFEST_SCHEMA)
        atomic_write_bytes(join(self.partition_uri, MANIFEST_FILE), parquet_bytes(table))
        if self.extra_columns:
            text = json.dumps(self.extra_columns, sort_keys=True, default=str)
            atomic_write_bytes(join(self.partition_uri, EXTRA_COLUMNS_FILE), text.encode())
        return {"staged": len(self.rows), **self._counts, "stage_seconds": self.times.to_dict()}

    def abort(self) -> None:
        self.writer.abort()


def build_host_policy(fetch: FetchConfig, area_uri: str) -> HostPolicy:
    """The host policy of a build in this process; its Retry-After pauses and open breakers
    are shared with the build's other processes (Dask workers) through the build area."""
    policy = host_policy_for(fetch)
    policy.share(HostSignals(join(area_uri, "_hosts")))
    return policy


def process_partition(
    partition: Partition,
    config: BuildConfig,
    area: BuildArea,
    progress: Callable[[int, int], None] | None = None,
    parent: str | None = None,
) -> dict[str, Any]:
    """Run one partition into the build area (skipped when its marker exists). ``parent``:
    the version an incremental build adds to (copies of its samples are rejected early)."""
    dedupe_config = config.dedupe
    test_sets = None
    if dedupe_config.test_sets:
        test_sets = (test_set_index(dedupe_config.test_sets), dedupe_config.test_set_distance)
    published = None
    if parent is not None:
        published = published_digests(area.dataset.root, area.dataset.name, parent)
    memo = prepared_memo(area.build_id, dedupe_config.copies_memo_entries)
    sink = StagingSink(area, partition.id, config.quality, test_sets, published, memo)
    # The build's partitions in this process share their hosts' turns, pauses and breakers;
    # pauses and open breakers also reach its other processes (build_host_policy).
    fetch = config.curation.fetch
    hosts = shared_policy(area.build_id, functools.partial(build_host_policy, fetch, area.uri))
    try:
        with Fetcher(fetch, hosts=hosts) as fetcher:
            result = run_partition(
                partition,
                sink.partition_uri,
                config.curation,
                fetcher=fetcher,
                sink=sink,
                progress=progress,
            )
    except BaseException:
        sink.abort()
        raise
    if result.skipped:
        sink.abort()
    return {**result.stats, "skipped": result.skipped}


def drop_repeated_keys(staged: pa.Table) -> tuple[pa.Table, list[dict[str, Any]]]:
    """(staged with one row per key, reject rows for the others). A URL listed in two
    partitions is fetched in both (a partition drops only its own repeats): the first row of
    each key (the earliest partition) stays, the others are rejected as ``duplicate_url``."""
    n = staged.num_rows
    if n == 0 or len(pc.unique(staged.column("key"))) == n:
        return staged, []
    indexed = staged.select(["key"]).append_column("row", pa.array(np.arange(n)))
    firsts = indexed.group_by("key").aggregate([("row", "min")]).column("row_min").to_numpy()
    first = np.zeros(n, dtype=bool)
    first[firsts] = True
    repeats = staged.filter(pa.array(~first)).select(["key", "url", "source"]).to_pylist()
    rejects = [
        {
            "candidate_id": row["key"],
            "url": row["url"],
            "source": row["source"],
            "stage": "source",
            "reason": DUPLICATE_URL,
            "detail": "listed earlier, in another partition",
        }
        for row in repeats
    ]
    return staged.filter(pa.array(first)), rejects


def find_duplicates(
    staged: pa.Table,
    parent: str | None,
    dataset: Dataset,
    config: BuildConfig,
    pair_search: PairSearch | None = None,
) -> tuple[dict[str, dict[str, Any]], int]:
    """Global dedupe over the staged samples (``BuildArea.manifest()``) and the parent's
    index: returns key -> reject row, and the number of near-duplicate pairs.
    ``pair_search`` runs the hash search elsewhere (a Dask cluster); default: this process."""
    previous = None
    if parent is not None:
        previous = dataset.version(parent).manifest().select(["key", "phash", "sha256", "phash256"])
        previous = previous.filter(pc.is_valid(previous.column("phash")))
    # phash256 confirms each 64-bit match: no chance collisions at millions of samples
    columns = ["key", "url", "source", "sha256", "phash", "phash256", "width", "height"]
    candidates = staged.select(columns)
    metric = config.dedupe.keeper_metric
    if f"iqa_{metric}" in staged.column_names:
        values = staged.column(f"iqa_{metric}").to_numpy(zero_copy_only=False).astype(float)
        quality = -values if metric_info(metric).get("lower_better", False) else values
        candidates = candidates.append_column("quality", pa.array(quality))
    result = dedupe(candidates, previous, d=config.dedupe.distance, pair_search=pair_search)
    dropped = {row["candidate_id"]: row for row in result.rejects.to_pylist()}
    return dropped, result.pairs


def quality_thresholds(config: QualityConfig) -> dict[str, dict[str, float]]:
    """Thresholds as the dashboard draws them: metric -> {"max": x} or {"min": x}."""
    return {
        metric: {"max" if metric_info(metric).get("lower_better", False) else "min": limit}
        for metric, limit in config.thresholds.items()
        if math.isfinite(limit)
    }


def run_build(
    config: BuildConfig,
    progress: Callable[[str, int, int], None] | None = None,
):
    """The whole build in this process (tests, small runs); returns the PublishedVersion:
    the new one, or the unchanged latest when nothing is new (``plan.nothing_new``)."""
    plan = plan_build(config)
    if plan.nothing_new:
        return plan.dataset.version(plan.parent)
    for done, partition in enumerate(plan.partitions, start=1):
        process_partition(partition, config, plan.area, parent=plan.parent)
        if progress is not None:
            progress("partitions", done, len(plan.partitions))
    return finish_build(config, plan, progress=progress)


def nothing_kept(
    plan: BuildPlan, staged: pa.Table, dropped: dict[str, dict[str, Any]]
) -> NothingKeptError:
    """The error of a build that kept nothing, with the funnel its version would have had."""
    rejects = table_from_rows([*plan.area.rejects().to_pylist(), *dropped.values()], REJECTS_SCHEMA)
    funnel = build_stats(staged.slice(0, 0), rejects, plan.area.partition_stats())["funnel"]
    candidates = funnel["candidates"]
    message = (
        f"nothing kept: all {candidates:,} {'new ' if plan.parent else ''}candidates of "
        f"{plan.dataset.name} were rejected; nothing published"
    )
    return NothingKeptError(message, funnel, plan.area.uri)


def decontamination_summary(config: DedupeConfig, plan: BuildPlan) -> dict[str, Any]:
    """What stats.json and the card say about test sets: those checked, and whether the
    samples an incremental build reuses from its parent were checked against them too."""
    if not config.test_sets:
        return {"checked": [], "distance": None, "reused_samples_matching": 0}
    index = test_set_index(config.test_sets)
    matching = 0
    if plan.parent is not None:  # reused samples were curated before: check them now
        reused = plan.dataset.version(plan.parent).manifest().column("phash").to_pylist()
        for phash in reused:
            found = index.nearest(int(phash))
            matching += found is not None and found[1] <= config.test_set_distance
    return {
        "checked": index.summary(),
        "distance": config.test_set_distance,
        "reused_samples_matching": matching,
    }


def _without_credentials(settings: dict[str, Any]) -> dict[str, Any]:
    """A dumped BuildConfig whose source URIs carry no user-info (it goes into stats.json)."""
    for source in settings.get("curation", {}).get("sources", []):
        source["uri"] = redact_url(source["uri"])
    return settings


def finish_build(
    config: BuildConfig, plan: BuildPlan, *, progress=None, pair_search: PairSearch | None = None
):
    """Dedupe, publish and clean up once every partition is done.

    ``pair_search`` (see :func:`curation.dedupe.dedupe`) runs the near-duplicate search
    elsewhere, e.g. :class:`curation.dedupe_dask.DaskPairSearch`; stats.json records where
    as ``dedupe_backend`` (the search's ``backend`` attribute, ``in-process`` by default).
    """
    cpu, wall = time.process_time(), time.perf_counter()
    staged = plan.area.manifest()  # read once: dedupe and publish both need it
    staged, repeated = drop_repeated_keys(staged)
    dropped, pairs = find_duplicates(staged, plan.parent, plan.dataset, config, pair_search)
    # dedupe runs alone in this process (every partition is done): its process CPU is its own
    dedupe_times = StageTimes()
    dedupe_times.add("dedupe", time.process_time() - cpu, time.perf_counter() - wall, len(staged))
    if staged.num_rows == len(dropped) and not config.publish.allow_empty:
        raise nothing_kept(plan, staged, dropped)
    backend = "in-process" if pair_search is None else getattr(pair_search, "backend", "custom")
    version = publish_build(
        plan.dataset,
        plan.area,
        staged=staged,
        dropped=dropped,
        parent=plan.parent,
        max_shard_bytes=config.publish.max_shard_bytes,
        max_shard_count=config.publish.max_shard_count,
        license=config.publish.license,
        reject_samples=config.curation.reject_samples,
        extra_rejects=repeated,
        extra_stats={
            "build_id": plan.area.build_id,
            "near_duplicate_pairs": pairs,
            "dedupe_backend": backend,
            "skipped_known_candidates": plan.skipped_known,
            "quality_thresholds": quality_thresholds(config.quality),
            "config": _without_credentials(config.model_dump(mode="json")),
            "test_sets": decontamination_summary(config.dedupe, plan),
            "stage_seconds": dedupe_times.to_dict(),
        },
        progress=(lambda i, n: progress("publish", i, n)) if progress else None,
    )
    if not config.publish.keep_build_area:
        plan.area.remove()
    return version
