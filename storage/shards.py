"""WebDataset shards: writing through a local staging directory, reading for training.

A shard is a plain tar: for each sample ``<key>.<ext>`` (the original image bytes, unchanged)
then ``<key>.json`` (its metadata), named and ordered as ``webdataset.TarWriter`` does (sorted
suffixes), in plain USTAR. Shards are written under a temporary name in a staging directory,
hashed while they are written, fsynced, and moved to their final URI only once complete, so a
reader never sees a partial shard under a final name.

Why not ``webdataset.ShardWriter`` itself: on an exception its ``close()`` still finishes the
open shard and hands it to ``post``, so a partial shard would be published; and the shard's
sha256 would need a second read of every file. ``bench/shards.py`` compares the two.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import tarfile
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from storage.atomic import atomic_put_file
from storage.direct_file import DurableFile
from storage.errors import CorruptShardError
from storage.keys import KeyRegistry
from storage.uri import join, open_fs

DEFAULT_SHARD_BYTES = 1_000_000_000  # ~1 GB: large enough for streaming, small enough to retry
DEFAULT_SHARD_COUNT = 100_000
#: A fixed mtime makes shards byte-identical across runs with the same inputs.
SHARD_MTIME = 0.0


@dataclass(frozen=True)
class Sample:
    """One sample to store: original bytes, their extension, and JSON-able metadata."""

    key: str
    data: bytes
    ext: str  # "jpg", "png", "webp"... without the dot
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class WrittenShard:
    name: str  # file name, e.g. "shard-000003.tar"
    uri: str
    samples: int
    bytes: int
    sha256: str
    keys: tuple[str, ...]


class _HashingFile:
    """A write-only file that hashes and counts what passes through it (no second read),
    written through :class:`storage.direct_file.DurableFile` (``O_DIRECT`` where the
    filesystem takes it, background writes, durable at close)."""

    def __init__(self, path: str, digest: bool = True) -> None:
        self._file = DurableFile(path)
        self.digest = hashlib.sha256() if digest else None

    @property
    def size(self) -> int:
        return self._file.size

    def write(self, data: bytes) -> int:
        if self.digest is not None:
            self.digest.update(data)
        return self._file.write(data)

    def tell(self) -> int:
        return self._file.size

    def close(self, durable: bool = True) -> None:
        if durable:
            self._file.close(durable=True)
        else:
            self._file.discard()


class _TarShard:
    """One shard being written: tar members laid out as webdataset's TarWriter does.

    The tar is written here rather than through ``tarfile.TarFile.addfile``, whose copy loop
    reads each body back through a file object: a header from ``TarInfo.tobuf``, the body as
    it is, NUL padding to the 512-byte block, and at the end the two NUL blocks and the
    padding to a 10 KiB record that ``tarfile`` writes (the bytes are the same).
    """

    def __init__(self, path: str, digest: bool = True) -> None:
        self.file = _HashingFile(path, digest)

    def add(self, key: str, members: dict[str, bytes]) -> int:
        total = 0
        for suffix in sorted(members):
            data = members[suffix]
            info = tarfile.TarInfo(f"{key}.{suffix}")
            info.size, info.mtime, info.mode = len(data), int(SHARD_MTIME), 0o444
            info.uname = info.gname = "bigdata"
            self.file.write(info.tobuf(tarfile.USTAR_FORMAT, "utf-8", "surrogateescape"))
            self.file.write(data)
            if padding := -len(data) % tarfile.BLOCKSIZE:
                self.file.write(tarfile.NUL * padding)
            total += len(data)
        return total

    def close(self) -> tuple[int, str]:
        """Finish the tar, fsync it; returns (size, sha256 hex)."""
        end = tarfile.NUL * (2 * tarfile.BLOCKSIZE)
        self.file.write(end + tarfile.NUL * (-(self.file.size + len(end)) % tarfile.RECORDSIZE))
        self.file.close()
        digest = self.file.digest
        return self.file.size, digest.hexdigest() if digest is not None else ""

    def discard(self) -> None:
        try:
            self.file.close(durable=False)
        except OSError:
            pass


def encode_meta(meta: dict[str, Any]) -> bytes:
    return json.dumps(meta, sort_keys=True, separators=(",", ":"), default=str).encode()


class ShardWriter:
    """Split samples into shards of at most ``max_count`` samples / ``max_bytes`` bytes.

    Each finished shard is fsynced in ``staging_dir`` and then moved to ``dest_uri``;
    ``on_shard`` is called with its ``WrittenShard`` (e.g. to record progress). If ``write``
    raises, call ``abort()`` (the context manager does): the open shard is deleted, never
    moved, so only complete shards ever reach ``dest_uri``.
    """

    def __init__(
        self,
        dest_uri: str,
        *,
        prefix: str = "shard",
        max_count: int = DEFAULT_SHARD_COUNT,
        max_bytes: int = DEFAULT_SHARD_BYTES,
        start_index: int = 0,
        staging_dir: str | None = None,
        keys: KeyRegistry | None = None,
        on_shard: Callable[[WrittenShard], None] | None = None,
        digest: bool = True,
    ) -> None:
        if max_count < 1 or max_bytes < 1:
            raise ValueError("shard limits must be positive (max_count, max_bytes)")
        self.dest_uri = dest_uri
        self.prefix = prefix
        self.max_count = max_count
        self.max_bytes = max_bytes
        self.index = start_index
        self.keys = keys if keys is not None else KeyRegistry()
        self.on_shard = on_shard
        self.digest = digest  # False: no sha256 of whole shards (staging shards need none)
        self.written: list[WrittenShard] = []
        self._own_staging = staging_dir is None
        self._staging = staging_dir or tempfile.mkdtemp(prefix="mird-shards-")
        os.makedirs(self._staging, exist_ok=True)
        self._fs, self._dest_path = open_fs(dest_uri)
        self._tar: _TarShard | None = None  # the shard being written
        self._tmp_path: str | None = None
        self._count = 0
        self._size = 0
        self._shard_keys: list[str] = []

    def _open_next(self) -> None:
        name = f"{self.prefix}-{self.index:06d}.tar"
        self._tmp_path = os.path.join(self._staging, f".{name}.partial")
        self._tar = _TarShard(self._tmp_path, self.digest)
        self._count = 0
        self._size = 0
        self._shard_keys = []

    def write(self, sample: Sample) -> None:
        self.keys.add(sample.key)
        ext = sample.ext.lower().lstrip(".")
        if not ext or ext == "json" or "." in ext or "/" in ext:
            raise ValueError(f"invalid extension {sample.ext!r} for sample {sample.key!r}")
        if self._tar is not None and (
            self._count >= self.max_count or self._size + len(sample.data) > self.max_bytes
        ):
            self._finish_current()
        if self._tar is None:
            self._open_next()
        assert self._tar is not None
        size = self._tar.add(sample.key, {ext: sample.data, "json": encode_meta(sample.meta)})
        self._count += 1
        self._size += size
        self._shard_keys.append(sample.key)

    def next_shard(self) -> None:
        """End the current shard here (e.g. to balance shard sizes); no-op if it is empty."""
        if self._tar is not None and self._count:
            self._finish_current()

    def write_all(self, samples: Iterable[Sample]) -> None:
        for sample in samples:
            self.write(sample)

    def _finish_current(self) -> None:
        if self._tar is None:
            return
        size, digest = self._tar.close()
        self._tar = None
        assert self._tmp_path is not None
        name = f"{self.prefix}-{self.index:06d}.tar"
        final_uri = join(self.dest_uri, name)
        atomic_put_file(self._tmp_path, join(self._dest_path, name), self._fs)
        shard = WrittenShard(name, final_uri, self._count, size, digest, tuple(self._shard_keys))
        self.written.append(shard)
        self.index += 1
        self._tmp_path = None
        if self.on_shard is not None:
            self.on_shard(shard)

    def close(self) -> list[WrittenShard]:
        """Finish the last shard and return every shard written."""
        self._finish_current()
        self._cleanup()
        return self.written

    def abort(self) -> None:
        """Drop the shard being written; shards already moved stay where they are."""
        if self._tar is not None:
            self._tar.discard()
            self._tar = None
        if self._tmp_path and os.path.exists(self._tmp_path):
            os.unlink(self._tmp_path)
        self._tmp_path = None
        self._cleanup()

    def _cleanup(self) -> None:
        if self._own_staging and os.path.isdir(self._staging):
            for leftover in os.listdir(self._staging):
                os.unlink(os.path.join(self._staging, leftover))
            os.rmdir(self._staging)

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


# --------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class TarSample:
    key: str
    ext: str
    data: bytes
    meta: dict[str, Any]


def iter_tar_samples(uri: str) -> Iterator[TarSample]:
    """Read a shard with plain ``tarfile`` (no webdataset), one sample at a time.

    Raises CorruptShardError naming the shard for truncated or unreadable tars.
    """
    fs, path = open_fs(uri)
    pending: dict[str, dict[str, bytes]] = {}
    order: list[str] = []
    try:
        with fs.open(path, "rb") as raw, tarfile.open(fileobj=raw, mode="r|") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                key, _, ext = member.name.partition(".")
                handle = tar.extractfile(member)
                assert handle is not None
                if key not in pending:
                    pending[key] = {}
                    order.append(key)
                pending[key][ext] = handle.read()
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise CorruptShardError(f"{uri}: unreadable tar ({exc})") from exc
    for key in order:
        members = pending[key]
        meta_bytes = members.pop("json", b"{}")
        try:
            meta = json.loads(meta_bytes)
        except ValueError as exc:
            raise CorruptShardError(f"{uri}: {key}.json is not valid JSON") from exc
        if len(members) != 1:
            raise CorruptShardError(
                f"{uri}: sample {key!r} has {len(members)} data members ({sorted(members)})"
            )
        ((ext, data),) = members.items()
        yield TarSample(key, ext, data, meta)


def _fsspec_opener(src: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """webdataset pipeline stage: open each shard URL through fsspec (s3://, gs://, local)."""
    for item in src:
        fs, path = open_fs(item["url"])
        stream = fs.open(path, "rb")
        try:
            yield {**item, "stream": stream}
        finally:
            stream.close()


def _drop_private(sample: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in sample.items() if k not in ("__url__", "__local_path__")}


def webdataset_pipeline(
    shard_uris: list[str],
    *,
    shuffle_shards: bool = True,
    resample: bool = False,
    shuffle_samples: int = 0,
    split_by_node: bool = True,
    split_by_worker: bool = True,
    seed: int = 0,
    handler: Callable[[Exception], bool] | None = None,
) -> Any:
    """A training stream over shards: shard shuffling, node/worker splits, resampling.

    Samples come out as webdataset dicts (``__key__``, ``jpg``/``png``..., ``json``: bytes);
    decoding and augmentation are the caller's (``.map``/``.decode`` on the pipeline).
    With ``resample=True`` shards are drawn with replacement forever (no node split needed:
    each node/worker draws its own sequence), the usual choice for multi-epoch training.
    """
    import webdataset as wds

    handler = handler or wds.reraise_exception  # e.g. wds.warn_and_continue to skip bad tars
    if not shard_uris:
        raise ValueError("no shards to read")
    stages: list[Any] = []
    if resample:
        stages.append(wds.ResampledShards(shard_uris, seed=seed, deterministic=True))
    else:
        stages.append(wds.SimpleShardList(shard_uris))
        if split_by_node:
            stages.append(wds.split_by_node)
        if split_by_worker:
            stages.append(wds.split_by_worker)
        if shuffle_shards:
            stages.append(wds.filters.shuffle(len(shard_uris), initial=len(shard_uris), seed=seed))
    stages += [
        _fsspec_opener,
        functools.partial(wds.tariterators.tar_file_expander, handler=handler),
        functools.partial(wds.tariterators.group_by_keys, handler=handler),
    ]
    if shuffle_samples > 0:
        stages.append(wds.filters.shuffle(shuffle_samples, seed=seed))
    stages.append(wds.filters.map(_drop_private))
    return wds.DataPipeline(*stages)


@dataclass(frozen=True)
class MemberLocation:
    uri: str
    offset: int  # of the member's data in the tar
    size: int
    ext: str


def index_tar(uri: str) -> dict[str, MemberLocation]:
    """Map each sample key of a shard to where its data member lies (json members skipped).

    Lets a publisher copy samples in any order with one seek+read each instead of holding a
    whole staging shard in memory.
    """
    fs, path = open_fs(uri)
    index: dict[str, MemberLocation] = {}
    try:
        with fs.open(path, "rb") as raw, tarfile.open(fileobj=raw, mode="r:") as tar:
            for member in tar:
                key, _, ext = member.name.partition(".")
                if member.isfile() and ext != "json":
                    index[key] = MemberLocation(uri, member.offset_data, member.size, ext)
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise CorruptShardError(f"{uri}: unreadable tar ({exc})") from exc
    return index


class MemberReader:
    """Reads tar members by location, keeping one open handle per shard."""

    def __init__(self) -> None:
        self._handles: dict[str, Any] = {}

    def read(self, location: MemberLocation) -> bytes:
        handle = self._handles.get(location.uri)
        if handle is None:
            fs, path = open_fs(location.uri)
            handle = self._handles[location.uri] = fs.open(path, "rb")
        handle.seek(location.offset)
        data = handle.read(location.size)
        if len(data) != location.size:
            raise CorruptShardError(f"{location.uri}: member truncated at {location.offset}")
        return data

    def close(self) -> None:
        for handle in self._handles.values():
            handle.close()
        self._handles.clear()
