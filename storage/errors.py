"""Errors the storage layer raises for bad input: each message names the file at fault."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from storage.versions import PublishedVersion


class StorageError(Exception):
    """Base class: a problem with stored bytes or their layout, explained in one line."""


class InvalidKeyError(StorageError, ValueError):
    """A sample key that cannot be used in a WebDataset (dot, slash, empty, duplicate...)."""


class VersionNotFoundError(StorageError, FileNotFoundError):
    """A dataset or version that is not published (or does not exist)."""


class VersionExistsError(StorageError):
    """An attempt to write into a version that is already published (versions are immutable)."""


class CorruptShardError(StorageError):
    """A shard tar that cannot be read (truncated, not a tar, unreadable member)."""


class EmptyVersionError(StorageError, ValueError):
    """A published version with no samples where a dataset is needed (patches, training)."""


def require_samples(version: PublishedVersion, purpose: str) -> None:
    """Refuse a zero-sample version in one line: it is a record of a build, not a dataset."""
    if int(version.entry.get("samples", 1)) == 0:
        raise EmptyVersionError(f"{version.uri}: 0 samples, nothing to {purpose}")
