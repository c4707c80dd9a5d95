"""The working area of one build: partition outputs that survive a crash.

``ROOT/NAME/_builds/<build_id>/partitions/<partition_id>/`` holds, per partition::

    samples-000000.tar   staging shard of the accepted samples (original bytes)
    manifest.parquet     their manifest rows (MANIFEST_SCHEMA; ``shard`` relative to ROOT/NAME)
    rejects.parquet      the partition's rejects (REJECTS_SCHEMA)
    reject_samples.parquet  thumbnails of some of them (REJECT_SAMPLES_SCHEMA; may be absent)
    _stats.json          counts and timings: written LAST, it is the done marker

A partition whose marker exists is done and skipped on rerun; one without a marker (killed
mid-way) is cleared and redone whole, so it never contributes a sample twice. The area is
removed after a successful publish unless asked to keep it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any

import pyarrow as pa

from storage.atomic import atomic_write_bytes, atomic_write_json
from storage.schemas import (
    MANIFEST_SCHEMA,
    REJECT_SAMPLES_SCHEMA,
    REJECTS_SCHEMA,
    parquet_bytes,
    read_parquet_files,
    table_from_rows,
)
from storage.shards import Sample, ShardWriter
from storage.uri import join
from storage.versions import Dataset

#: File names inside a partition directory (curation.partition writes the same ones).
STATS_FILE = "_stats.json"  # the done marker, written last
REJECTS_FILE = "rejects.parquet"
REJECT_SAMPLES_FILE = "reject_samples.parquet"
MANIFEST_FILE = "manifest.parquet"
SAMPLES_PREFIX = "samples"
SAMPLES_SHARD = f"{SAMPLES_PREFIX}-000000.tar"  # one staging shard per partition


class BuildArea:
    def __init__(self, dataset: Dataset, build_id: str) -> None:
        self.dataset = dataset
        self.build_id = build_id
        self.rel = f"_builds/{build_id}"
        self.path = join(dataset.path, self.rel)
        self.uri = join(dataset.uri, self.rel)

    @property
    def fs(self):  # noqa: ANN201 - fsspec filesystem
        return self.dataset.fs

    def _partition_path(self, partition_id: str) -> str:
        return join(self.path, "partitions", partition_id)

    def partition_uri(self, partition_id: str) -> str:
        return join(self.uri, "partitions", partition_id)

    def staging_shard(self, partition_id: str) -> str:
        """The partition's staging shard, relative to the dataset root (the manifest's form)."""
        return f"{self.rel}/partitions/{partition_id}/{SAMPLES_SHARD}"

    def is_done(self, partition_id: str) -> bool:
        return self.fs.exists(join(self._partition_path(partition_id), STATS_FILE))

    def done_partitions(self) -> list[str]:
        base = join(self.path, "partitions")
        if not self.fs.exists(base):
            return []
        return sorted(
            p.rstrip("/").rsplit("/", 1)[-1]
            for p in self.fs.ls(base, detail=False)
            if self.fs.exists(join(p, STATS_FILE))
        )

    def write_partition(
        self,
        partition_id: str,
        samples: Iterable[tuple[Sample, dict[str, Any]]],
        rejects: Iterable[dict[str, Any]],
        stats: dict[str, Any],
        reject_samples: Iterable[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """Write one partition's outputs; the stats marker goes last. Returns the stats.

        ``reject_samples``: REJECT_SAMPLES_SCHEMA rows (thumbnails of some rejects), if any."""
        path = self._partition_path(partition_id)
        if self.fs.exists(path):  # remains of a killed attempt: redo the partition whole
            self.fs.rm(path, recursive=True)
        self.fs.makedirs(path, exist_ok=True)
        rows: list[dict[str, Any]] = []
        with ShardWriter(
            self.partition_uri(partition_id),
            prefix=SAMPLES_PREFIX,
            max_count=10**9,
            max_bytes=1 << 62,
            digest=False,  # staging shards: each sample's sha256 is in the manifest already
        ) as writer:
            for sample, row in samples:
                writer.write(sample)
                rows.append(
                    {
                        **row,
                        "key": sample.key,
                        "shard": self.staging_shard(partition_id),
                        "bytes": len(sample.data),
                        "format": sample.ext,
                    }
                )
        atomic_write_bytes(
            join(path, MANIFEST_FILE),
            parquet_bytes(table_from_rows(rows, MANIFEST_SCHEMA)),
            self.fs,
        )
        atomic_write_bytes(
            join(path, REJECTS_FILE),
            parquet_bytes(table_from_rows(list(rejects), REJECTS_SCHEMA)),
            self.fs,
        )
        if reject_samples is not None:
            atomic_write_bytes(
                join(path, REJECT_SAMPLES_FILE),
                parquet_bytes(table_from_rows(list(reject_samples), REJECT_SAMPLES_SCHEMA)),
                self.fs,
            )
        stats = {**stats, "partition": partition_id, "accepted": len(rows)}
        atomic_write_json(join(path, STATS_FILE), stats, self.fs)
        return stats

    def _read_all(self, name: str, schema: pa.Schema) -> pa.Table:
        paths = [join(self._partition_path(p), name) for p in self.done_partitions()]
        return read_parquet_files(self.fs, paths, schema)

    def manifest(self) -> pa.Table:
        """Accepted samples of every finished partition."""
        return self._read_all(MANIFEST_FILE, MANIFEST_SCHEMA)

    def rejects(self) -> pa.Table:
        return self._read_all(REJECTS_FILE, REJECTS_SCHEMA)

    def iter_reject_samples(self) -> Iterator[pa.Table]:
        """Each finished partition's reject thumbnails, one table at a time (partitions
        without the file, e.g. written before thumbnails existed, have none)."""
        for partition_id in self.done_partitions():
            path = join(self._partition_path(partition_id), REJECT_SAMPLES_FILE)
            if self.fs.exists(path):
                yield read_parquet_files(self.fs, [path], REJECT_SAMPLES_SCHEMA)

    def partition_stats(self) -> list[dict[str, Any]]:
        stats = []
        for partition_id in self.done_partitions():
            with self.fs.open(join(self._partition_path(partition_id), STATS_FILE)) as handle:
                stats.append(json.load(handle))
        return stats

    def remove(self) -> None:
        if self.fs.exists(self.path):
            self.fs.rm(self.path, recursive=True)
        parent = join(self.dataset.path, "_builds")
        if self.fs.exists(parent) and not self.fs.ls(parent, detail=False):
            self.fs.rm(parent, recursive=True)
