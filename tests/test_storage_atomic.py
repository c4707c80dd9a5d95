"""An interrupted write at any point leaves no visible version, and the rerun completes."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

import storage.atomic
import storage.shards
import storage.versions
from storage.errors import VersionNotFoundError
from storage.verify import verify_version
from storage.versions import Dataset
from tests.storage_helpers import make_samples, publish, row_for


class Boom(RuntimeError):
    pass


def _tree_digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _count_calls(monkeypatch, module, name: str, fail_at: int | None) -> list[int]:
    """Wrap module.name; raise Boom on call number ``fail_at`` (1-based)."""
    original = getattr(module, name)
    calls = [0]

    def wrapper(*args, **kwargs):
        calls[0] += 1
        if fail_at is not None and calls[0] == fail_at:
            raise Boom(f"{name} call {calls[0]}")
        return original(*args, **kwargs)

    monkeypatch.setattr(module, name, wrapper)
    return calls


def _write(dataset: Dataset, samples, fail_after_samples: int | None = None):
    with dataset.begin_version(max_shard_count=3) as writer:
        for i, sample in enumerate(samples):
            if fail_after_samples is not None and i == fail_after_samples:
                raise Boom("interrupted between samples")
            writer.write_sample(sample, row_for(sample))
        return writer.publish()


@pytest.mark.parametrize("fail_after_samples", [0, 1, 3, 4, 7])
def test_interrupted_while_writing_samples(tmp_path, fail_after_samples):
    dataset = Dataset(str(tmp_path), "ird")
    v1 = publish(dataset, make_samples(4))
    before = _tree_digest(tmp_path / "ird" / "v1")
    samples = make_samples(8, start=50)
    with pytest.raises(Boom):
        _write(dataset, samples, fail_after_samples)
    assert dataset.versions() == ["v1"]
    with pytest.raises(VersionNotFoundError):
        dataset.version("v2")
    assert _tree_digest(tmp_path / "ird" / "v1") == before  # published data untouched
    # No partial shard ever sits under a final name.
    for tar in (tmp_path / "ird").rglob("*.tar"):
        assert not tar.name.startswith(".")
    v2 = _write(dataset, samples)
    assert dataset.versions() == ["v1", "v2"]
    assert verify_version(v2).ok and verify_version(v1).ok
    assert v2.manifest().num_rows == 8


def test_every_write_of_publish_can_fail(tmp_path, monkeypatch):
    """Raise inside each atomic write / shard move of a publish in turn (all of them)."""
    samples = make_samples(7)
    # Count how many file writes one clean publish makes.
    probe_dir = tmp_path / "probe"
    writes = _count_calls(monkeypatch, storage.versions, "atomic_write_bytes", None)
    moves = _count_calls(monkeypatch, storage.shards, "atomic_put_file", None)
    _write(Dataset(str(probe_dir), "ird"), samples)
    total_writes, total_moves = writes[0], moves[0]
    monkeypatch.undo()
    assert total_writes == 4 and total_moves == 3  # manifest, rejects, shards, card

    for target, name, total in [
        (storage.versions, "atomic_write_bytes", total_writes),
        (storage.versions, "atomic_write_json", 2),  # stats.json, then versions.json
        (storage.shards, "atomic_put_file", total_moves),
    ]:
        for fail_at in range(1, total + 1):
            root = tmp_path / f"{name}-{fail_at}"
            dataset = Dataset(str(root), "ird")
            _count_calls(monkeypatch, target, name, fail_at)
            with pytest.raises(Boom):
                _write(dataset, samples)
            monkeypatch.undo()
            assert dataset.versions() == [], (name, fail_at)
            assert not (root / "ird" / "versions.json").exists()
            version = _write(dataset, samples)  # the rerun completes
            assert dataset.versions() == ["v1"]
            report = verify_version(version)
            assert report.ok and report.samples_checked == 7, (name, fail_at, report.problems)


def test_atomic_write_failure_keeps_old_file(tmp_path):
    target = tmp_path / "f.json"
    storage.atomic.atomic_write_bytes(str(target), b"old")
    with pytest.raises(Boom):
        with storage.atomic.atomic_open(str(target)) as handle:
            handle.write(b"half of the new")
            raise Boom("crash mid-write")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.json"]  # no temp file left behind
