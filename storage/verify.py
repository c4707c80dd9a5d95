"""Integrity verification of published versions: manifest <-> shards, both ways.

Every sample is re-hashed; a problem is a record (what, where, detail), never an exception,
so one run lists them all.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field

from storage.errors import CorruptShardError, StorageError
from storage.shards import iter_tar_samples
from storage.uri import join
from storage.versions import Dataset, PublishedVersion


@dataclass(frozen=True)
class Problem:
    kind: str  # missing_shard, unreadable_shard, shard_checksum, missing_sample, extra_sample,
    #            sha256_mismatch, size_mismatch, extra_shard, bad_metadata, manifest_error,
    #            reject_samples_error
    where: str  # a shard or file URI
    key: str | None = None
    detail: str = ""

    def __str__(self) -> str:
        key = f" [{self.key}]" if self.key else ""
        return f"{self.kind}: {self.where}{key}{': ' + self.detail if self.detail else ''}"


@dataclass
class VerifyReport:
    version: str
    samples_checked: int = 0
    shards_checked: int = 0
    bytes_checked: int = 0
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _sha256_of(fs, path: str) -> str:  # noqa: ANN001 - fsspec filesystem
    digest = hashlib.sha256()
    with fs.open(path, "rb") as handle:
        while chunk := handle.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


def verify_version(
    version: PublishedVersion,
    *,
    on_shard: Callable[[str], None] | None = None,
) -> VerifyReport:
    report = VerifyReport(version=version.uri)
    fs = version.dataset.fs
    try:
        manifest = version.manifest()
        shard_table = version.shard_stats()
    except (OSError, StorageError, ValueError) as exc:
        report.problems.append(Problem("manifest_error", version.uri, detail=str(exc)))
        return report

    expected: dict[str, dict[str, tuple[str, int]]] = {}
    for key, shard, sha, size in zip(
        manifest.column("key").to_pylist(),
        manifest.column("shard").to_pylist(),
        manifest.column("sha256").to_pylist(),
        manifest.column("bytes").to_pylist(),
        strict=True,
    ):
        expected.setdefault(shard, {})[key] = (sha, size)
    listed = {row["shard"]: row for row in shard_table.to_pylist()}
    for shard in sorted(set(expected) - set(listed)):
        report.problems.append(
            Problem(
                "manifest_error", join(version.dataset.uri, shard), detail="not in shards.parquet"
            )
        )

    for shard in sorted(set(expected) | set(listed)):
        uri = join(version.dataset.uri, shard)
        path = join(version.dataset.path, shard)
        wanted = dict(expected.get(shard, {}))
        if on_shard is not None:
            on_shard(uri)
        if not fs.exists(path):
            report.problems.append(Problem("missing_shard", uri, detail=f"{len(wanted)} samples"))
            continue
        report.shards_checked += 1
        row = listed.get(shard)
        if row is not None and _sha256_of(fs, path) != row["sha256"]:
            report.problems.append(Problem("shard_checksum", uri, detail="tar sha256 differs"))
        try:
            for sample in iter_tar_samples(uri):
                report.bytes_checked += len(sample.data)
                if sample.key not in wanted:
                    report.problems.append(
                        Problem(
                            "extra_sample", uri, sample.key, f"member {sample.key}.{sample.ext}"
                        )
                    )
                    continue
                sha, size = wanted.pop(sample.key)
                report.samples_checked += 1
                if len(sample.data) != size:
                    report.problems.append(
                        Problem("size_mismatch", uri, sample.key, f"{len(sample.data)} != {size}")
                    )
                if hashlib.sha256(sample.data).hexdigest() != sha:
                    report.problems.append(Problem("sha256_mismatch", uri, sample.key))
        except CorruptShardError as exc:
            report.problems.append(Problem("unreadable_shard", uri, detail=str(exc)))
        for key in sorted(wanted):
            report.problems.append(Problem("missing_sample", uri, key))

    # Tars sitting in this version's shards/ that nothing lists: extra files.
    own_dir = join(version.dataset.path, version.version, "shards")
    if fs.exists(own_dir):
        for path in sorted(fs.ls(own_dir, detail=False)):
            name = path.rsplit("/", 1)[-1]
            if name.endswith(".tar") and f"{version.version}/shards/{name}" not in listed:
                report.problems.append(
                    Problem("extra_shard", join(version.uri, "shards", name), detail="not listed")
                )
    report.problems.extend(_check_reject_samples(version))
    return report


def _check_reject_samples(version: PublishedVersion) -> list[Problem]:
    """The reject thumbnails (if the version has them) read with their schema, and each
    belongs to a reject of the version's rejects table."""
    where = join(version.uri, "reject_samples")
    try:
        samples = version.reject_samples().column("candidate_id").to_pylist()
        if not samples:
            return []
        rejected = set(version.rejects().column("candidate_id").to_pylist())
    except (OSError, StorageError, ValueError) as exc:
        message = (str(exc).splitlines() or [type(exc).__name__])[0]
        return [Problem("reject_samples_error", where, detail=message)]
    return [
        Problem("reject_samples_error", where, key, "not in the rejects table")
        for key in sorted(set(samples) - rejected)
    ]


def resolve_target(target: str) -> tuple[Dataset, list[str]]:
    """``ROOT/NAME`` (every published version) or ``ROOT/NAME/vN`` (that one)."""
    target = target.rstrip("/")
    head, _, tail = target.rpartition("/")
    if head and tail.startswith("v") and tail[1:].isdigit():
        root, _, name = head.rpartition("/")
        dataset = Dataset(root or ".", name)
        dataset.version(tail)  # raises a clear error if not published
        return dataset, [tail]
    root, _, name = target.rpartition("/")
    dataset = Dataset(root or ".", name)
    if not dataset.fs.exists(dataset.path):
        raise FileNotFoundError(f"{target}: no such dataset")
    versions = dataset.versions()
    if not versions:
        raise StorageError(f"{target}: no published version (versions.json missing or empty)")
    return dataset, versions
