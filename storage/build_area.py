"""The working area of one build: partition outputs that survive a crash.

``ROOT/NAME/_builds/<build_id>/partitions/<partition_id>/`` holds, per partition::

    samples-000000.tar   staging shard of the accepted samples (original bytes)
    manifest.parquet     their manifest rows (MANIFEST_SCHEMA; ``shard`` relative to ROOT/NAME)
    rejects.parquet      the partition's rejects (REJECTS_SCHEMA)
    _stats.json          counts and timings: written LAST, it is the done marker

A partition whose marker exists is done and skipped on rerun; one without a marker (killed
mid-way) is cleared and redone whole, so it never contributes a sample twice. The area is
removed after a successful publish unless asked to keep it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from storage.atomic import atomic_write_bytes, atomic_write_json
from storage.schemas import MANIFEST_SCHEMA, REJECTS_SCHEMA, table_from_rows
from storage.shards import Sample, ShardWriter
from storage.uri import join
from storage.versions import Dataset, _parquet_bytes

STATS_MARKER = "_stats.json"


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

    def is_done(self, partition_id: str) -> bool:
        return self.fs.exists(join(self._partition_path(partition_id), STATS_MARKER))

    def done_partitions(self) -> list[str]:
        base = join(self.path, "partitions")
        if not self.fs.exists(base):
            return []
        return sorted(
            p.rstrip("/").rsplit("/", 1)[-1]
            for p in self.fs.ls(base, detail=False)
            if self.fs.exists(join(p, STATS_MARKER))
        )

    def write_partition(
        self,
        partition_id: str,
        samples: Iterable[tuple[Sample, dict[str, Any]]],
        rejects: Iterable[dict[str, Any]],
        stats: dict[str, Any],
    ) -> dict[str, Any]:
        """Write one partition's outputs; the stats marker goes last. Returns the stats."""
        path = self._partition_path(partition_id)
        if self.fs.exists(path):  # remains of a killed attempt: redo the partition whole
            self.fs.rm(path, recursive=True)
        self.fs.makedirs(path, exist_ok=True)
        rows: list[dict[str, Any]] = []
        shard_rel = f"{self.rel}/partitions/{partition_id}"
        with ShardWriter(
            join(self.uri, "partitions", partition_id),
            prefix="samples",
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
                        "shard": f"{shard_rel}/samples-000000.tar",
                        "bytes": len(sample.data),
                        "format": sample.ext,
                    }
                )
        atomic_write_bytes(
            join(path, "manifest.parquet"),
            _parquet_bytes(table_from_rows(rows, MANIFEST_SCHEMA)),
            self.fs,
        )
        atomic_write_bytes(
            join(path, "rejects.parquet"),
            _parquet_bytes(table_from_rows(list(rejects), REJECTS_SCHEMA)),
            self.fs,
        )
        stats = {**stats, "partition": partition_id, "accepted": len(rows)}
        atomic_write_json(join(path, STATS_MARKER), stats, self.fs)
        return stats

    def _read_all(self, name: str, schema: pa.Schema) -> pa.Table:
        tables = []
        for partition_id in self.done_partitions():
            with self.fs.open(join(self._partition_path(partition_id), name), "rb") as handle:
                tables.append(pq.read_table(handle, schema=schema))
        return pa.concat_tables(tables) if tables else schema.empty_table()

    def manifest(self) -> pa.Table:
        """Accepted samples of every finished partition."""
        return self._read_all("manifest.parquet", MANIFEST_SCHEMA)

    def rejects(self) -> pa.Table:
        return self._read_all("rejects.parquet", REJECTS_SCHEMA)

    def partition_stats(self) -> list[dict[str, Any]]:
        stats = []
        for partition_id in self.done_partitions():
            with self.fs.open(join(self._partition_path(partition_id), STATS_MARKER)) as handle:
                stats.append(json.load(handle))
        return stats

    def remove(self) -> None:
        if self.fs.exists(self.path):
            self.fs.rm(self.path, recursive=True)
        parent = join(self.dataset.path, "_builds")
        if self.fs.exists(parent) and not self.fs.ls(parent, detail=False):
            self.fs.rm(parent, recursive=True)
