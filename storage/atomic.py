"""Atomic writes: a reader never sees a half-written file under its final name.

Locally: write a temporary file in the same directory, fsync, then ``os.replace``.
On object stores a PUT of a finished object is atomic already (the object appears whole or not
at all); what needs care there is a *set* of objects, which callers commit by writing a marker
last (see ``storage.versions``).
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from collections.abc import Iterator
from typing import IO, Any

import fsspec

from storage.uri import is_local, open_fs


def _local_tmp_name(path: str) -> str:
    directory, name = os.path.split(path)
    return os.path.join(directory, f".{name}.tmp-{uuid.uuid4().hex[:12]}")


def _resolve(uri: str, fs: fsspec.AbstractFileSystem | None) -> tuple[Any, str]:
    """The filesystem and path of ``uri`` (a plain path when ``fs`` is given), parent made."""
    if fs is None:
        fs, path = open_fs(uri)
    else:
        path = uri
    parent = path.rsplit("/", 1)[0] if "/" in path else ""
    if parent:
        fs.makedirs(parent, exist_ok=True)
    return fs, path


@contextlib.contextmanager
def atomic_open(uri: str, fs: fsspec.AbstractFileSystem | None = None) -> Iterator[IO[bytes]]:
    """Open ``uri`` for binary writing; it becomes visible only if the block succeeds."""
    fs, path = _resolve(uri, fs)
    if is_local(fs):
        tmp = _local_tmp_name(path)
        try:
            with open(tmp, "wb") as handle:
                yield handle
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    else:
        # Object stores: the upload is committed when the file closes without error; on an
        # exception we abort (fsspec discards buffered multipart uploads on discard()).
        handle = fs.open(path, "wb")
        try:
            yield handle
        except BaseException:
            with contextlib.suppress(Exception):
                handle.discard() if hasattr(handle, "discard") else None
            raise
        else:
            handle.close()


def atomic_write_bytes(uri: str, data: bytes, fs: fsspec.AbstractFileSystem | None = None) -> None:
    with atomic_open(uri, fs) as handle:
        handle.write(data)


def atomic_write_json(uri: str, obj: Any, fs: fsspec.AbstractFileSystem | None = None) -> None:
    data = json.dumps(obj, indent=2, sort_keys=True, default=str).encode() + b"\n"
    atomic_write_bytes(uri, data, fs)


def atomic_put_file(local_path: str, uri: str, fs: fsspec.AbstractFileSystem | None = None) -> None:
    """Move/upload a finished local file (e.g. from a staging dir) to ``uri`` atomically."""
    fs, path = _resolve(uri, fs)
    if is_local(fs):
        try:
            os.replace(local_path, path)  # same filesystem: an atomic rename
            return
        except OSError:
            pass  # across devices: copy to a temp name, then rename
        tmp = _local_tmp_name(path)
        try:
            with open(local_path, "rb") as src, open(tmp, "wb") as dst:
                while chunk := src.read(1 << 22):
                    dst.write(chunk)
                dst.flush()
                os.fsync(dst.fileno())
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        os.unlink(local_path)
    else:
        fs.put_file(local_path, path)
        os.unlink(local_path)
