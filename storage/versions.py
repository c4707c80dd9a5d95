"""Dataset versions: ``ROOT/NAME/vN/`` published atomically, immutable once visible.

Layout of a version::

    ROOT/NAME/versions.json          the index: written atomically, LAST (the commit)
    ROOT/NAME/vN/shards/*.tar        WebDataset shards (kept samples only)
    ROOT/NAME/vN/manifest/*.parquet  one row per sample (storage.schemas.MANIFEST_SCHEMA)
    ROOT/NAME/vN/rejects/*.parquet   one row per rejected candidate
    ROOT/NAME/vN/reject_samples/*.parquet  thumbnails of a bounded sample of the rejects
    ROOT/NAME/vN/shards.parquet      per-shard sample count, size and sha256
    ROOT/NAME/vN/stats.json          counts and whatever the builder adds
    ROOT/NAME/vN/card.md             the dataset card

A version exists for readers only once ``versions.json`` lists it; the directory of an
interrupted write is invisible garbage that the next writer clears. The manifest's ``shard``
column holds a path relative to ``ROOT/NAME``, so a new version can list shards of an older one
without copying them. One writer per dataset at a time (the build flow has concurrency 1).
"""

from __future__ import annotations

import datetime as _dt
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from storage.atomic import atomic_write_bytes, atomic_write_json
from storage.card import render_card
from storage.errors import StorageError, VersionExistsError, VersionNotFoundError
from storage.keys import KeyRegistry
from storage.schemas import (
    MANIFEST_SCHEMA,
    REJECT_SAMPLES_SCHEMA,
    REJECTS_SCHEMA,
    SCHEMA_VERSION,
    SHARD_STATS_SCHEMA,
    parquet_bytes,
    read_parquet_files,
    table_from_rows,
)
from storage.shards import DEFAULT_SHARD_BYTES, DEFAULT_SHARD_COUNT, Sample, ShardWriter
from storage.uri import join, open_fs

VERSIONS_FILE = "versions.json"
_VERSION_RE = re.compile(r"^v([1-9][0-9]*)$")
MANIFEST_PART_ROWS = 200_000


def version_number(version: str) -> int:
    match = _VERSION_RE.match(version)
    if not match:
        raise ValueError(f"invalid version name {version!r}: expected v1, v2, ...")
    return int(match.group(1))


class Dataset:
    """A named dataset under a root URI: its published versions and how to add one."""

    def __init__(self, root: str, name: str) -> None:
        if not re.match(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", name):
            raise ValueError(f"invalid dataset name {name!r}")
        self.root = str(root).rstrip("/")
        self.name = name
        self.uri = join(self.root, name)
        self.fs, self.path = open_fs(self.uri)

    # ---------------------------------------------------------------- the index
    def index(self) -> dict[str, Any]:
        index_path = join(self.path, VERSIONS_FILE)
        if not self.fs.exists(index_path):
            return {"name": self.name, "versions": [], "latest": None}
        try:
            with self.fs.open(index_path, "rb") as handle:
                return json.load(handle)
        except ValueError as exc:
            raise StorageError(f"{join(self.uri, VERSIONS_FILE)}: not valid JSON ({exc})") from exc

    def versions(self) -> list[str]:
        return [entry["version"] for entry in self.index()["versions"]]

    def latest(self) -> str | None:
        return self.index().get("latest")

    def version(self, version: str | None = None) -> PublishedVersion:
        """A published version (the latest when ``version`` is None)."""
        index = self.index()
        if not index["versions"]:
            raise VersionNotFoundError(f"{self.uri}: no published version ({VERSIONS_FILE})")
        version = version or index["latest"]
        entry = next((e for e in index["versions"] if e["version"] == version), None)
        if entry is None:
            published = ", ".join(e["version"] for e in index["versions"])
            raise VersionNotFoundError(
                f"{join(self.uri, str(version))}: not a published version (published: {published})"
            )
        return PublishedVersion(self, entry["version"], entry)

    # ---------------------------------------------------------------- writing
    def next_version(self) -> str:
        published = [version_number(v) for v in self.versions()]
        return f"v{max(published, default=0) + 1}"

    def begin_version(
        self,
        *,
        parent: str | None = None,
        max_shard_count: int = DEFAULT_SHARD_COUNT,
        max_shard_bytes: int = DEFAULT_SHARD_BYTES,
        staging_dir: str | None = None,
    ) -> VersionWriter:
        """Start writing the next version; leftovers of an interrupted attempt are cleared."""
        version = self.next_version()
        if parent is not None and parent not in self.versions():
            raise VersionNotFoundError(f"{join(self.uri, parent)}: parent is not published")
        version_path = join(self.path, version)
        if self.fs.exists(version_path):
            # Not in the index, hence never published: the remains of an interrupted write.
            self.fs.rm(version_path, recursive=True)
        return VersionWriter(
            self,
            version,
            parent=parent,
            max_shard_count=max_shard_count,
            max_shard_bytes=max_shard_bytes,
            staging_dir=staging_dir,
        )

    def _commit(self, entry: dict[str, Any]) -> None:
        index = self.index()
        if any(e["version"] == entry["version"] for e in index["versions"]):
            raise VersionExistsError(f"{join(self.uri, entry['version'])}: already published")
        index["versions"].append(entry)
        index["latest"] = entry["version"]
        index["schema_version"] = SCHEMA_VERSION
        atomic_write_json(join(self.path, VERSIONS_FILE), index, self.fs)


class VersionWriter:
    """Collects shards, manifest rows and rejects of one version, then publishes it.

    Use as a context manager: leaving the block with an exception publishes nothing.
    """

    def __init__(
        self,
        dataset: Dataset,
        version: str,
        *,
        parent: str | None,
        max_shard_count: int,
        max_shard_bytes: int,
        staging_dir: str | None,
    ) -> None:
        self.dataset = dataset
        self.version = version
        self.parent = parent
        self.path = join(dataset.path, version)
        self.keys = KeyRegistry()
        self._manifest_rows: list[dict[str, Any]] = []
        self._manifest_parts = 0
        self._rejects: list[dict[str, Any]] = []
        self._reject_samples: list[dict[str, Any]] | None = None  # None: no table written
        self._shard_rows: list[dict[str, Any]] = []
        self._published = False
        self._shards = ShardWriter(
            join(dataset.uri, version, "shards"),
            max_count=max_shard_count,
            max_bytes=max_shard_bytes,
            staging_dir=staging_dir,
            keys=self.keys,
            on_shard=lambda shard: self._shard_rows.append(
                {
                    "shard": f"{version}/shards/{shard.name}",
                    "samples": shard.samples,
                    "bytes": shard.bytes,
                    "sha256": shard.sha256,
                }
            ),
        )
        self._pending_rows: dict[str, dict[str, Any]] = {}
        self._settled_shards = 0

    @property
    def fs(self):  # noqa: ANN201 - fsspec filesystem
        return self.dataset.fs

    def write_sample(self, sample: Sample, row: dict[str, Any]) -> None:
        """Write one sample's bytes to the current shard; ``row`` is its manifest row.

        ``key``, ``shard``, ``bytes`` and ``format`` are filled in here.
        """
        shards_before = len(self._shards.written)
        self._shards.write(sample)
        row = {**row, "key": sample.key, "bytes": len(sample.data), "format": sample.ext}
        self._pending_rows[sample.key] = row
        if len(self._shards.written) != shards_before:
            self._settle_rows()

    def next_shard(self) -> None:
        """Close the current shard now; the next sample starts a new one."""
        self._shards.next_shard()
        self._settle_rows()

    def write_samples(self, items: Iterable[tuple[Sample, dict[str, Any]]]) -> None:
        for sample, row in items:
            self.write_sample(sample, row)

    def _settle_rows(self) -> None:
        """Give rows their shard name once that shard is final."""
        for shard in self._shards.written[self._settled_shards :]:
            self._settled_shards += 1
            for key in shard.keys:
                row = self._pending_rows.pop(key, None)
                if row is not None:
                    row["shard"] = f"{self.version}/shards/{shard.name}"
                    self._add_manifest_row(row)

    def _add_manifest_row(self, row: dict[str, Any]) -> None:
        self._manifest_rows.append(row)
        if len(self._manifest_rows) >= MANIFEST_PART_ROWS:
            self._flush_manifest()

    def _flush_manifest(self) -> None:
        if not self._manifest_rows:
            return
        table = table_from_rows(self._manifest_rows, MANIFEST_SCHEMA)
        name = f"part-{self._manifest_parts:05d}.parquet"
        atomic_write_bytes(join(self.path, "manifest", name), parquet_bytes(table), self.fs)
        self._manifest_parts += 1
        self._manifest_rows = []

    def reuse_shards(self, from_version: str, shards: Iterable[str] | None = None) -> int:
        """List shards of an older published version in this one, without copying them.

        ``shards`` are paths relative to the dataset root as the older manifest holds them
        (all of that version's shards when None). Returns the number of samples reused.
        """
        older = self.dataset.version(from_version)
        wanted = None if shards is None else set(shards)
        manifest = older.manifest()
        stats = older.shard_stats()
        reused = 0
        for row in stats.to_pylist():
            if wanted is not None and row["shard"] not in wanted:
                continue
            self._shard_rows.append(row)
        for row in manifest.to_pylist():
            if wanted is not None and row["shard"] not in wanted:
                continue
            self.keys.add(row["key"])
            self._add_manifest_row(row)
            reused += 1
        return reused

    def add_rejects(self, rows: Iterable[dict[str, Any]]) -> None:
        self._rejects.extend(rows)

    def add_reject_samples(self, rows: Iterable[dict[str, Any]]) -> None:
        """Thumbnail rows (REJECT_SAMPLES_SCHEMA); once called, the version has the table,
        empty or not. Written in the order given: the caller sorts them."""
        if self._reject_samples is None:
            self._reject_samples = []
        self._reject_samples.extend(rows)

    def publish(
        self,
        *,
        stats: dict[str, Any] | None = None,
        license: str = "other",
        description: str = "",
    ) -> PublishedVersion:
        """Finish shards and tables, write stats and card, then commit ``versions.json``."""
        if self._published:
            raise VersionExistsError(f"{join(self.dataset.uri, self.version)}: already published")
        self._shards.close()
        self._settle_rows()
        if self._pending_rows:  # pragma: no cover - a shard always settles its keys
            raise StorageError(f"{self.version}: {len(self._pending_rows)} rows without a shard")
        self._flush_manifest()
        if self._manifest_parts == 0:  # an empty version still has a readable manifest
            atomic_write_bytes(
                join(self.path, "manifest", "part-00000.parquet"),
                parquet_bytes(MANIFEST_SCHEMA.empty_table()),
                self.fs,
            )
        rejects = table_from_rows(self._rejects, REJECTS_SCHEMA)
        atomic_write_bytes(
            join(self.path, "rejects", "part-00000.parquet"), parquet_bytes(rejects), self.fs
        )
        if self._reject_samples is not None:
            atomic_write_bytes(
                join(self.path, "reject_samples", "part-00000.parquet"),
                parquet_bytes(table_from_rows(self._reject_samples, REJECT_SAMPLES_SCHEMA)),
                self.fs,
            )
        shard_table = table_from_rows(
            sorted(self._shard_rows, key=lambda r: r["shard"]), SHARD_STATS_SCHEMA
        )
        atomic_write_bytes(join(self.path, "shards.parquet"), parquet_bytes(shard_table), self.fs)
        samples = int(sum(r["samples"] for r in self._shard_rows))
        full_stats = {
            **(stats or {}),
            "name": self.dataset.name,
            "version": self.version,
            "parent": self.parent,
            "schema_version": SCHEMA_VERSION,
            "samples": samples,
            "shards": len(self._shard_rows),
            "bytes": int(sum(r["bytes"] for r in self._shard_rows)),
            "rejects": rejects.num_rows,
            "reject_samples": len(self._reject_samples or ()),
        }
        atomic_write_json(join(self.path, "stats.json"), full_stats, self.fs)
        card = render_card(
            name=self.dataset.name,
            version=self.version,
            samples=samples,
            shards=len(self._shard_rows),
            rejects=rejects.num_rows,
            license=license,
            description=description,
            parent=self.parent,
            test_sets=full_stats.get("test_sets"),
        )
        atomic_write_bytes(join(self.path, "card.md"), card.encode(), self.fs)
        entry = {
            "version": self.version,
            "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            "samples": samples,
            "shards": len(self._shard_rows),
            "parent": self.parent,
        }
        self.dataset._commit(entry)  # the commit: written last
        self._published = True
        return self.dataset.version(self.version)

    def abort(self) -> None:
        self._shards.abort()

    def __enter__(self) -> VersionWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()


@dataclass
class PublishedVersion:
    dataset: Dataset
    version: str
    entry: dict[str, Any]

    @property
    def uri(self) -> str:
        return join(self.dataset.uri, self.version)

    @property
    def ref(self) -> VersionRef:
        return VersionRef(self.dataset.root, self.dataset.name, self.version)

    def _read_parquet_dir(self, sub: str, schema: pa.Schema) -> pa.Table:
        fs, base = self.dataset.fs, join(self.dataset.path, self.version, sub)
        if not fs.exists(base):
            raise VersionNotFoundError(f"{join(self.uri, sub)}: missing")
        parts = sorted(p for p in fs.ls(base, detail=False) if p.endswith(".parquet"))
        return read_parquet_files(fs, parts, schema)

    def manifest(self) -> pa.Table:
        return self._read_parquet_dir("manifest", MANIFEST_SCHEMA)

    def rejects(self) -> pa.Table:
        return self._read_parquet_dir("rejects", REJECTS_SCHEMA)

    def reject_samples(self) -> pa.Table:
        """Thumbnails of sampled rejects (REJECT_SAMPLES_SCHEMA); empty for a version
        published without them (older builders, patches datasets)."""
        if not self.dataset.fs.exists(join(self.dataset.path, self.version, "reject_samples")):
            return REJECT_SAMPLES_SCHEMA.empty_table()
        return self._read_parquet_dir("reject_samples", REJECT_SAMPLES_SCHEMA)

    def shard_stats(self) -> pa.Table:
        path = join(self.dataset.path, self.version, "shards.parquet")
        with self.dataset.fs.open(path, "rb") as handle:
            return pq.read_table(handle, schema=SHARD_STATS_SCHEMA)

    def stats(self) -> dict[str, Any]:
        with self.dataset.fs.open(join(self.dataset.path, self.version, "stats.json")) as h:
            return json.load(h)

    def shard_uris(self) -> list[str]:
        """Full URIs of every shard this version lists (some may belong to older versions)."""
        return [join(self.dataset.uri, s) for s in self.shard_stats().column("shard").to_pylist()]

    def iter_samples(self) -> Iterator[Any]:
        from storage.shards import iter_tar_samples

        for uri in self.shard_uris():
            yield from iter_tar_samples(uri)


@dataclass(frozen=True)
class VersionRef:
    """Which published version: what a flow returns. Plain strings, so that a flow run's
    result serialises (a :class:`PublishedVersion` holds a filesystem); :meth:`open` reads it."""

    root: str
    name: str
    version: str

    @property
    def uri(self) -> str:
        return join(self.root, self.name, self.version)

    def open(self) -> PublishedVersion:
        return Dataset(self.root, self.name).version(self.version)
