"""Errors the storage layer raises for bad input: each message names the file at fault."""

from __future__ import annotations


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
