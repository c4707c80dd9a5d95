"""`verify` catches each corruption: flipped byte, deleted shard, truncated tar, extra member."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from storage.verify import verify_version
from storage.versions import Dataset
from tests.storage_helpers import make_samples, publish

MIRD = [sys.executable, "-m", "flows.cli"]


@pytest.fixture
def published(tmp_path):
    dataset = Dataset(str(tmp_path), "ird")
    version = publish(dataset, make_samples(9), max_shard_count=3)
    return dataset, version, tmp_path / "ird" / "v1" / "shards"


def kinds(version) -> set[str]:
    return {p.kind for p in verify_version(version).problems}


def _data_offset(shard: Path) -> int:
    with tarfile.open(shard) as tar:
        member = next(m for m in tar.getmembers() if not m.name.endswith(".json"))
        return member.offset_data + member.size // 2


def test_clean_version_verifies(published):
    _, version, _ = published
    report = verify_version(version)
    assert report.ok and report.samples_checked == 9 and report.shards_checked == 3


def test_flipped_byte_in_image(published):
    _, version, shards = published
    shard = shards / "shard-000001.tar"
    data = bytearray(shard.read_bytes())
    data[_data_offset(shard)] ^= 0x01
    shard.write_bytes(bytes(data))
    problems = verify_version(version).problems
    assert {p.kind for p in problems} == {"sha256_mismatch", "shard_checksum"}
    assert all("shard-000001.tar" in p.where for p in problems)


def test_deleted_shard(published):
    _, version, shards = published
    os.unlink(shards / "shard-000002.tar")
    assert kinds(version) == {"missing_shard"}


def test_truncated_tar(published):
    _, version, shards = published
    shard = shards / "shard-000000.tar"
    shard.write_bytes(shard.read_bytes()[: _data_offset(shard)])
    assert "unreadable_shard" in kinds(version)


def test_extra_member(published):
    _, version, shards = published
    with tarfile.open(shards / "shard-000000.tar", "a") as tar:
        payload = b"not in the manifest"
        info = tarfile.TarInfo("intruder.jpg")
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    problems = verify_version(version).problems
    assert {p.kind for p in problems} == {"extra_sample", "shard_checksum"}
    assert any(p.key == "intruder" for p in problems)


def test_extra_shard_file(published):
    _, version, shards = published
    (shards / "shard-000099.tar").write_bytes((shards / "shard-000000.tar").read_bytes())
    assert kinds(version) == {"extra_shard"}


def test_manifest_names_a_missing_shard(published):
    dataset, version, shards = published
    import pyarrow.parquet as pq

    manifest = shards.parent / "manifest" / "part-00000.parquet"
    table = pq.read_table(manifest)
    renamed = [s.replace("shard-000002", "shard-000042") for s in table.column("shard").to_pylist()]
    pq.write_table(
        table.set_column(table.schema.get_field_index("shard"), "shard", [renamed]), manifest
    )
    found = kinds(version)
    assert "manifest_error" in found and "missing_shard" in found


def _run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*MIRD, *args], capture_output=True, text=True, timeout=120)


def test_cli_verify_ok_and_failures(published, tmp_path):
    _, _, shards = published
    ok = _run_cli("verify", str(tmp_path / "ird"))
    assert ok.returncode == 0, ok.stderr
    assert "OK: 9 samples, 3 shards" in ok.stdout

    os.unlink(shards / "shard-000002.tar")
    bad = _run_cli("verify", str(tmp_path / "ird" / "v1"))
    assert bad.returncode == 1
    assert "FAILED (1 problems)" in bad.stdout and "missing_shard" in bad.stdout


@pytest.mark.parametrize(
    "target, message",
    [
        ("does/not/exist", "no such dataset"),
        ("{root}/ird/v7", "not a published version"),
        ("{root}/empty", "no published version"),
    ],
)
def test_cli_verify_bad_input_is_one_line(published, tmp_path, target, message):
    (tmp_path / "empty").mkdir()
    result = _run_cli("verify", target.format(root=tmp_path))
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_cli_help_everywhere():
    for args in (["--help"], ["verify", "--help"], ["demo", "--help"]):
        result = _run_cli(*args)
        assert result.returncode == 0 and "Usage" in result.stdout
