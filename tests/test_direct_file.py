"""storage.direct_file: exact bytes through O_DIRECT and through the buffered fallback, errors
of the background writer reach the caller, and a shard written through it reads back."""

from __future__ import annotations

import errno
import hashlib
import os
import random
import tarfile

import pytest

import storage.direct_file as direct_file
from storage.direct_file import BLOCK, BUFFER_BYTES, DurableFile
from storage.shards import Sample, ShardWriter, iter_tar_samples

SIZES = [0, 1, BLOCK - 1, BLOCK, BLOCK + 1, BUFFER_BYTES - 1, BUFFER_BYTES, 2 * BUFFER_BYTES + 7]


def _pieces(total: int, seed: int) -> list[bytes]:
    """``total`` random bytes cut into uneven pieces (some larger than a buffer)."""
    rng = random.Random(seed)
    data = rng.randbytes(total)
    pieces, start = [], 0
    while start < total:
        step = rng.choice([1, 511, 4096, 70_000, BUFFER_BYTES + 3])
        pieces.append(data[start : start + step])
        start += step
    return pieces


@pytest.mark.parametrize("direct", [True, False], ids=["o_direct", "buffered"])
@pytest.mark.parametrize("total", SIZES)
def test_bytes_written_are_exact(tmp_path, direct, total):
    pieces = _pieces(total, seed=total)
    path = tmp_path / "out.bin"
    out = DurableFile(str(path), direct=direct)
    for piece in pieces:
        assert out.write(piece) == len(piece)
    assert out.tell() == total
    out.close()
    assert path.read_bytes() == b"".join(pieces)
    assert path.stat().st_size == total


def test_falls_back_to_buffered_when_o_direct_is_refused(tmp_path, monkeypatch):
    real_open = os.open

    def refuse_direct(path, flags, *args):
        if flags & getattr(os, "O_DIRECT", 0):
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_open(path, flags, *args)

    monkeypatch.setattr(direct_file, "_DIRECT_FLAG", getattr(os, "O_DIRECT", 0) or 0o40000)
    monkeypatch.setattr(os, "open", refuse_direct)
    path = tmp_path / "fallback.bin"
    out = DurableFile(str(path))
    assert out.direct is False
    out.write(b"abc" * 5000)
    out.close()
    assert path.read_bytes() == b"abc" * 5000


@pytest.mark.skipif(not hasattr(os, "O_DIRECT"), reason="no O_DIRECT on this platform")
def test_a_failed_background_write_is_raised_not_lost(tmp_path, monkeypatch):
    path = tmp_path / "full.bin"
    out = DurableFile(str(path))
    if not out.direct:
        out.discard()
        pytest.skip("this filesystem does not take O_DIRECT")

    def disk_full(fd, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", disk_full)
    out.write(b"x" * (BUFFER_BYTES + 1))  # fills one buffer: its write fails in the background
    with pytest.raises(OSError, match="No space left"):
        out.close()
    assert out._fd == -1  # released even so


def test_discard_releases_without_writing_the_tail(tmp_path):
    path = tmp_path / "discarded.bin"
    out = DurableFile(str(path))
    out.write(b"y" * 1000)
    out.discard()
    out.discard()  # twice is harmless
    assert path.exists() and path.stat().st_size == 0


def test_shards_written_through_it_are_plain_tars(tmp_path):
    members = {f"k{i:03d}": os.urandom(100 + 37_003 * i) for i in range(12)}
    dest = tmp_path / "shards"
    with ShardWriter(str(dest), max_count=5, staging_dir=str(tmp_path / "stage")) as writer:
        for key, body in members.items():
            writer.write(Sample(key, body, "jpg", {"key": key}))
    written = writer.written
    assert [shard.samples for shard in written] == [5, 5, 2]
    read = {}
    for shard in written:
        path = dest / shard.name
        assert path.stat().st_size == shard.bytes
        assert shard.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
        assert path.stat().st_size % tarfile.RECORDSIZE == 0
        with tarfile.open(path) as tar:  # the standard library reads it
            names = tar.getnames()
        assert names[:2] == [f"{shard.keys[0]}.jpg", f"{shard.keys[0]}.json"]
        for sample in iter_tar_samples(str(path)):
            assert sample.ext == "jpg" and sample.meta == {"key": sample.key}
            read[sample.key] = sample.data
    assert read == members
