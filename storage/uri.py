"""Locations as fsspec URIs: local paths, ``file://``, ``s3://``, ``gs://``... alike.

No code path assumes a local disk except through an explicit staging directory: everything
else goes through the filesystem object returned here.
"""

from __future__ import annotations

import posixpath
from typing import Any

import fsspec
from fsspec.implementations.local import LocalFileSystem


def open_fs(uri: str, **storage_options: Any) -> tuple[fsspec.AbstractFileSystem, str]:
    """Return the filesystem for ``uri`` and the path inside it (protocol stripped)."""
    fs, path = fsspec.core.url_to_fs(str(uri), **storage_options)
    return fs, path


def is_local(fs: fsspec.AbstractFileSystem) -> bool:
    return isinstance(fs, LocalFileSystem)


def join(uri: str, *parts: str) -> str:
    """Join path parts onto a URI with forward slashes, keeping the protocol."""
    uri = str(uri)
    if "://" in uri:
        protocol, rest = uri.split("://", 1)
        return f"{protocol}://{posixpath.join(rest, *parts)}"
    return posixpath.join(uri, *parts)


def unstrip(fs: fsspec.AbstractFileSystem, path: str) -> str:
    """Turn a protocol-less path of ``fs`` back into a full URI (local paths stay plain)."""
    if is_local(fs):
        return path
    return fs.unstrip_protocol(path)
