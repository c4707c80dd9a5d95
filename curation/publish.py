"""Publish a build: kept samples from the staging area into balanced final shards.

Input: the build area (every partition's accepted samples and rejects), the keys dropped by
global dedupe (with their reject rows), and optionally a parent version whose shards the new
version lists unchanged (incremental builds). Output: a published, immutable version, with the
thumbnails of a bounded sample of its rejects (``curation.reject_samples``).

Deterministic: samples are written in key order, rejects sorted by candidate id, no clock or
host enters a manifest or shard, so the same inputs and config give byte-identical files.
"""

from __future__ import annotations

import itertools
import json
import math
import time
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curation.config import RejectSampleConfig
from curation.partition import StageTimes, merge_stage_seconds
from curation.reject_samples import dropped_samples, select_per_reason
from storage.build_area import BuildArea
from storage.schemas import IQA_COLUMNS, REJECTS_SCHEMA, table_from_rows
from storage.shards import DEFAULT_SHARD_BYTES, DEFAULT_SHARD_COUNT, MemberReader, Sample, index_tar
from storage.uri import join
from storage.versions import Dataset, PublishedVersion

#: Manifest columns copied into each sample's ``.json`` member (cheap to read in a DataLoader).
META_COLUMNS = ("key", "source", "url", "sha256", "width", "height", "license", "caption")
#: Beside a partition's staging manifest: key -> the source's ``keep_columns`` values (JSON).
#: The manifest has no column for them; publish puts them into the sample's ``.json`` member
#: under ``extra``.
EXTRA_COLUMNS_FILE = "extra_columns.json"


def staged_extra_columns(dataset: Dataset, shards: Iterable[str]) -> dict[str, dict[str, Any]]:
    """key -> kept source columns, from the side files of the partitions of ``shards``."""
    found: dict[str, dict[str, Any]] = {}
    for shard in shards:
        path = join(dataset.path, shard.rsplit("/", 1)[0], EXTRA_COLUMNS_FILE)
        if dataset.fs.exists(path):
            with dataset.fs.open(path, "rb") as handle:
                found.update(json.load(handle))
    return found


def balanced_boundaries(sizes: list[int], max_bytes: int, max_count: int) -> list[int]:
    """Indices where a new shard starts so that shards are about equal in bytes.

    The number of shards is the least that respects both limits; then each sample goes to the
    shard its cumulative byte midpoint falls in (shards differ by at most one sample's size).
    """
    if not sizes:
        return []
    total = sum(sizes)
    shards = max(1, math.ceil(total / max_bytes), math.ceil(len(sizes) / max_count))
    while True:
        target = total / shards
        starts, cumulative, current = [], 0, 0
        for i, size in enumerate(sizes):
            slot = min(int((cumulative + size / 2) // target), shards - 1)
            if i == 0:
                current = slot
            elif slot != current:
                starts.append(i)
                current = slot
            cumulative += size
        bounds = [0, *starts, len(sizes)]
        counts = [b - a for a, b in zip(bounds, bounds[1:], strict=False)]
        too_big = any(
            sum(sizes[a:b]) > max_bytes and b - a > 1
            for a, b in zip(bounds, bounds[1:], strict=False)
        )
        if max(counts) <= max_count and not too_big:
            return starts
        shards += 1


def _histogram(values: np.ndarray, bins: int = 20) -> dict[str, list[float]]:
    values = values[np.isfinite(values)]
    if values.size == 0:
        return {"edges": [], "counts": []}
    counts, edges = np.histogram(values, bins=bins)
    return {"edges": [round(float(e), 4) for e in edges], "counts": counts.tolist()}


def build_stats(
    manifest: pa.Table,
    rejects: pa.Table,
    partition_stats: list[dict[str, Any]],
) -> dict[str, Any]:
    """Funnel counts per stage and reason, score and resolution summaries, per-source counts."""
    reasons = Counter(
        zip(rejects.column("stage").to_pylist(), rejects.column("reason").to_pylist(), strict=True)
    )
    by_stage: dict[str, dict[str, int]] = {}
    for (stage, reason), count in sorted(reasons.items()):
        # low_quality:niqe and friends group under their family for the funnel
        by_stage.setdefault(stage, {})[reason] = count
    candidates = sum(int(s.get("candidates", 0)) for s in partition_stats)
    scores = {}
    for name in IQA_COLUMNS:
        column = manifest.column(f"iqa_{name}").to_numpy(zero_copy_only=False).astype(float)
        if np.isfinite(column).any():
            finite = column[np.isfinite(column)]
            scores[name] = {
                "median": round(float(np.median(finite)), 4),
                "p10": round(float(np.percentile(finite, 10)), 4),
                "p90": round(float(np.percentile(finite, 90)), 4),
                "histogram": _histogram(finite),
            }
    width = manifest.column("width").to_numpy(zero_copy_only=False).astype(float)
    height = manifest.column("height").to_numpy(zero_copy_only=False).astype(float)
    megapixels = width * height / 1e6
    sources = Counter(manifest.column("source").to_pylist())
    reject_sources = Counter(rejects.column("source").to_pylist())
    return {
        "funnel": {
            "candidates": candidates,
            "rejected": rejects.num_rows,
            "kept": manifest.num_rows,
            "by_stage": by_stage,
        },
        "per_source": {
            str(s): {"kept": sources.get(s, 0), "rejected": reject_sources.get(s, 0)}
            for s in sorted(set(sources) | set(reject_sources), key=str)
        },
        "scores": scores,
        "resolution": {
            "megapixels": _histogram(megapixels),
            "median_megapixels": round(float(np.median(megapixels)), 3) if megapixels.size else 0,
            "shorter_side_min": int(np.minimum(width, height).min()) if width.size else 0,
        },
    }


def publish_build(
    dataset: Dataset,
    area: BuildArea,
    *,
    dropped: dict[str, dict[str, Any]] | None = None,
    extra_rejects: list[dict[str, Any]] | None = None,
    parent: str | None = None,
    max_shard_bytes: int = DEFAULT_SHARD_BYTES,
    max_shard_count: int = DEFAULT_SHARD_COUNT,
    license: str = "other",
    extra_stats: dict[str, Any] | None = None,
    progress: Callable[[int, int], None] | None = None,
    staged: pa.Table | None = None,
    reject_samples: RejectSampleConfig | None = None,
) -> PublishedVersion:
    """Write the kept samples of ``area`` (minus ``dropped``: key -> reject row) as a version;
    ``extra_rejects`` (reject rows, e.g. a URL listed in two partitions) join its rejects.

    With ``parent``, the new version first lists every shard of that version unchanged and
    then adds the new samples (dedupe must already have dropped those the parent holds).
    ``staged`` is ``area.manifest()`` when the caller has read it already.
    ``reject_samples`` bounds the rejects' thumbnails (the partitions' and dedupe's).

    stats.json's ``stage_seconds`` sums the partitions' and ``extra_stats``'s (dedupe) with
    this function's own ``publish`` phase (process CPU: it runs alone, after the partitions).
    """
    cpu, wall = time.process_time(), time.perf_counter()
    dropped = dropped or {}
    staged = area.manifest() if staged is None else staged
    keep_mask = pc.invert(pc.is_in(staged.column("key"), pa.array(list(dropped), pa.string())))
    kept = staged.filter(keep_mask)
    kept = kept.take(pc.sort_indices(kept, sort_keys=[("key", "ascending")]))

    locations = {}
    staging_shards = sorted(set(kept.column("shard").to_pylist()))
    for shard in staging_shards:
        locations.update(index_tar(join(dataset.uri, shard)))
    extra_columns = staged_extra_columns(dataset, staging_shards)

    rows = kept.to_pylist()
    sizes = [row["bytes"] for row in rows]
    starts = set(balanced_boundaries(sizes, max_shard_bytes, max_shard_count))
    reader = MemberReader()
    rejects = [*area.rejects().to_pylist(), *dropped.values(), *(extra_rejects or [])]
    rejects.sort(key=lambda r: (r["candidate_id"], r["stage"], r["reason"]))
    try:
        with dataset.begin_version(
            parent=parent, max_shard_bytes=1 << 62, max_shard_count=10**12
        ) as writer:
            reused = writer.reuse_shards(parent) if parent else 0
            for i, row in enumerate(rows):
                if i in starts:
                    writer.next_shard()
                location = locations[row["key"]]
                data = reader.read(location)
                meta = {k: row[k] for k in META_COLUMNS if row.get(k) is not None}
                meta.update(
                    {
                        f"iqa_{m}": row[f"iqa_{m}"]
                        for m in IQA_COLUMNS
                        if row[f"iqa_{m}"] is not None
                    }
                )
                if row["key"] in extra_columns:
                    meta["extra"] = extra_columns[row["key"]]
                row = {k: v for k, v in row.items() if k not in ("shard", "bytes", "format")}
                writer.write_sample(Sample(meta["key"], data, location.ext, meta), row)
                if progress is not None:
                    progress(i + 1, len(rows))
            writer.add_rejects(rejects)
            writer.add_reject_samples(
                _reject_samples(dataset, area, staged, dropped, reject_samples)
            )
            # The funnel describes this build's candidates (reused samples were counted
            # in the parent's stats); `samples` in stats.json counts the whole version.
            rejects_table = table_from_rows(rejects, REJECTS_SCHEMA)
            partition_stats = area.partition_stats()
            stats = build_stats(kept, rejects_table, partition_stats)
            stats["new_samples"] = len(rows)
            stats["reused_samples"] = reused
            stats.update(extra_stats or {})
            publish_times = StageTimes()
            publish_times.add(
                "publish", time.process_time() - cpu, time.perf_counter() - wall, len(rows)
            )
            stats["stage_seconds"] = merge_stage_seconds(
                [
                    *(s.get("stage_seconds") for s in partition_stats),
                    (extra_stats or {}).get("stage_seconds"),
                    publish_times.to_dict(),
                ]
            )
            return writer.publish(stats=stats, license=license)
    finally:
        reader.close()


def _reject_samples(
    dataset: Dataset,
    area: BuildArea,
    staged: pa.Table,
    dropped: dict[str, dict[str, Any]],
    config: RejectSampleConfig | None,
) -> list[dict[str, Any]]:
    """The version's reject thumbnails: the partitions' and those of dedupe's drops, trimmed
    to ``per_reason`` per stage and reason (smallest candidate ids first)."""
    config = config or RejectSampleConfig()
    partitions = (table.to_pylist() for table in area.iter_reject_samples())  # one at a time
    dedupe = dropped_samples(dataset.uri, staged, dropped, config)
    return select_per_reason(itertools.chain(partitions, [dedupe]), config.per_reason)
