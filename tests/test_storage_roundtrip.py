"""Write -> publish -> read with webdataset and tarfile: byte-identical images."""

from __future__ import annotations

import hashlib
import json
import tarfile

import duckdb
import pytest
import torch
import webdataset as wds

from storage.errors import InvalidKeyError, VersionNotFoundError
from storage.shards import Sample, webdataset_pipeline
from storage.verify import verify_version
from storage.versions import Dataset
from tests.storage_helpers import make_samples, publish, row_for


def test_round_trip_webdataset_tarfile_duckdb(tmp_path):
    samples = make_samples(10)
    version = publish(Dataset(str(tmp_path), "ird"), samples, max_shard_count=4)
    originals = {s.key: s for s in samples}

    assert version.version == "v1"
    assert len(version.shard_uris()) == 3  # 4 + 4 + 2

    # Plain tarfile: member names are <key>.<ext> and <key>.json, bytes unchanged.
    seen = {}
    for uri in version.shard_uris():
        with tarfile.open(uri) as tar:
            for member in tar.getmembers():
                key, _, ext = member.name.partition(".")
                data = tar.extractfile(member).read()
                if ext == "json":
                    assert json.loads(data) == originals[key].meta
                else:
                    seen[key] = data
                    assert ext == originals[key].ext
    assert seen == {k: s.data for k, s in originals.items()}

    # webdataset's own reader.
    streamed = {s["__key__"]: s for s in wds.WebDataset(version.shard_uris(), shardshuffle=False)}
    assert {k: v[originals[k].ext] for k, v in streamed.items()} == seen

    # The project's training pipeline (shard shuffle on).
    piped = {s["__key__"]: s for s in webdataset_pipeline(version.shard_uris(), seed=3)}
    assert {k: v[originals[k].ext] for k, v in piped.items()} == seen

    # Manifest readable by DuckDB, sha256 matches the bytes.
    manifest_glob = f"{version.uri}/manifest/*.parquet"
    rows = duckdb.sql(f"SELECT key, sha256, shard, bytes FROM '{manifest_glob}' ORDER BY key")
    for key, sha, shard, size in rows.fetchall():
        assert sha == hashlib.sha256(seen[key]).hexdigest()
        assert size == len(seen[key])
        assert shard.startswith("v1/shards/shard-")

    stats = version.stats()
    assert stats["samples"] == 10 and stats["shards"] == 3 and stats["schema_version"] == 1
    card = (tmp_path / "ird" / "v1" / "card.md").read_text()
    assert card.startswith("---\n") and "size_categories:" in card and "samples: 10" in card
    assert verify_version(version).ok


def test_split_by_worker_reads_each_sample_once(tmp_path):
    version = publish(Dataset(str(tmp_path), "ird"), make_samples(12), max_shard_count=3)
    pipeline = webdataset_pipeline(version.shard_uris(), seed=1)
    loader = torch.utils.data.DataLoader(pipeline, num_workers=2, batch_size=None)
    keys = [sample["__key__"] for sample in loader]
    assert sorted(keys) == [f"img-{i:05d}" for i in range(12)]


def test_resampled_stream_keeps_going(tmp_path):
    version = publish(Dataset(str(tmp_path), "ird"), make_samples(4), max_shard_count=2)
    stream = iter(webdataset_pipeline(version.shard_uris(), resample=True, seed=0))
    keys = [next(stream)["__key__"] for _ in range(20)]
    assert len(keys) == 20 and set(keys) <= {f"img-{i:05d}" for i in range(4)}


def test_publish_is_deterministic(tmp_path):
    samples = make_samples(9)
    a = publish(Dataset(str(tmp_path / "a"), "ird"), samples)
    b = publish(Dataset(str(tmp_path / "b"), "ird"), samples)
    for rel in [
        "shards/shard-000000.tar",
        "shards/shard-000002.tar",
        "manifest/part-00000.parquet",
    ]:
        assert (tmp_path / "a/ird/v1" / rel).read_bytes() == (
            tmp_path / "b/ird/v1" / rel
        ).read_bytes()
    assert a.shard_stats().equals(b.shard_stats())


def test_new_version_reuses_old_shards(tmp_path):
    dataset = Dataset(str(tmp_path), "ird")
    v1 = publish(dataset, make_samples(8))
    new = make_samples(3, start=100)
    with dataset.begin_version(parent="v1", max_shard_count=4) as writer:
        assert writer.reuse_shards("v1") == 8
        for sample in new:
            writer.write_sample(sample, row_for(sample))
        v2 = writer.publish()
    assert dataset.versions() == ["v1", "v2"] and dataset.latest() == "v2"
    assert v2.manifest().num_rows == 11
    assert [u for u in v2.shard_uris() if "/v1/" in u] == v1.shard_uris()
    assert not (tmp_path / "ird/v2/shards/shard-000001.tar").exists()  # only the new shard
    assert verify_version(v2).ok and verify_version(v1).ok


def test_object_store_code_path_memory_filesystem():
    """The non-local branch (no rename; commit marker last) on fsspec's memory:// store."""
    dataset = Dataset("memory://bucket/datasets", "ird")
    samples = make_samples(5)
    version = publish(dataset, samples, max_shard_count=2)
    assert version.shard_uris()[0].startswith("memory://")
    assert {s.key: s.data for s in version.iter_samples()} == {s.key: s.data for s in samples}
    assert verify_version(version).ok
    streamed = list(webdataset_pipeline(version.shard_uris(), shuffle_shards=False))
    assert len(streamed) == 5


@pytest.mark.parametrize("bad", ["has.dot", "has/slash", "", "sp ace", "x" * 201])
def test_bad_keys_refused_and_nothing_published(tmp_path, bad):
    dataset = Dataset(str(tmp_path), "ird")
    with pytest.raises(InvalidKeyError, match="invalid sample key"):
        with dataset.begin_version() as writer:
            writer.write_sample(Sample(bad, b"\xff\xd8data", "jpg"), {"sha256": "0"})
    assert dataset.versions() == []


def test_duplicate_key_refused(tmp_path):
    dataset = Dataset(str(tmp_path), "ird")
    sample = make_samples(1)[0]
    with pytest.raises(InvalidKeyError, match="duplicate sample key 'img-00000'"):
        with dataset.begin_version() as writer:
            writer.write_sample(sample, row_for(sample))
            writer.write_sample(sample, row_for(sample))
    assert dataset.versions() == []
    with pytest.raises(VersionNotFoundError, match="no published version"):
        dataset.version()


def test_unknown_manifest_column_is_an_error(tmp_path):
    dataset = Dataset(str(tmp_path), "ird")
    sample = make_samples(1)[0]
    with pytest.raises(ValueError, match="unknown manifest column"):
        with dataset.begin_version() as writer:
            writer.write_sample(sample, {**row_for(sample), "blurr": 1.0})
            writer.publish()
