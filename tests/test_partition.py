"""A partition end to end: outputs, the done marker, skipping, and a redo after a kill."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from curation.config import CurationConfig, FetchConfig, ProbeConfig, SourceConfig
from curation.partition import REJECTS_FILE, STATS_FILE, read_stats, run_partition
from curation.records import AcceptedRecord, Candidate, Partition, Reject
from curation.sources import candidate_id, iter_partitions
from storage.build_area import REJECT_SAMPLES_FILE
from storage.schemas import REJECTS_SCHEMA
from tests import curation_images as images
from tests.http_fixtures import (
    FaultServer,
    body,
    http_server_fixture,  # noqa: F401 (registers the http_server fixture)
    status,
)

REPO = Path(__file__).resolve().parents[1]
CONFIG = CurationConfig(
    fetch=FetchConfig(threads=4, retries=0, read_timeout_s=2, allow_hosts=["127.0.0.1"]),
    probe=ProbeConfig(min_side=256),
)


def _candidate(url: str) -> Candidate:
    return Candidate(id=candidate_id(url), url=url, source="web")


def _mixed_partition(server: FaultServer, n_photos: int = 4) -> Partition:
    urls = [
        server.route(f"/p{i}.jpg", body(images.jpeg_bytes(images.photo_like(480, 360, seed=i))))
        for i in range(n_photos)
    ]
    urls.append(server.route("/dark.jpg", body(images.jpeg_bytes(images.dark(480, 360)))))
    urls.append(server.route("/gone.jpg", status(410)))
    urls.append(urls[0])  # listed twice
    return Partition("web-000000", "web", 0, tuple(_candidate(u) for u in urls))


def test_outputs_and_marker(http_server: FaultServer, tmp_path: Path) -> None:
    partition = _mixed_partition(http_server)
    out = tmp_path / "web-000000"
    result = run_partition(partition, str(out), CONFIG)

    assert not result.skipped
    assert [r.candidate.url for r in result.accepted] == [c.url for c in partition.candidates[:4]]
    assert sorted(r.reason for r in result.rejects) == ["duplicate_url", "http_410", "too_dark"]
    table = pq.read_table(out / REJECTS_FILE)
    assert table.schema.equals(REJECTS_SCHEMA, check_metadata=False)
    assert table.num_rows == 3
    assert set(table.column("stage").to_pylist()) == {"source", "fetch", "filter"}
    stats = json.loads((out / STATS_FILE).read_text())
    assert stats["candidates"] == 7
    assert stats["accepted"] == 4 and stats["rejected"] == 3
    assert stats["fetched"] == 5  # 4 photos + the dark one; not the 410, not the duplicate
    assert stats["rejects_by_reason"] == {"duplicate_url": 1, "http_410": 1, "too_dark": 1}
    assert stats["bytes_accepted"] == sum(len(r.data) for r in result.accepted)
    assert stats["bytes_fetched"] > stats["bytes_accepted"] > 0
    assert stats["seconds"] >= 0
    # no temp files left; the dark photo (rejected after its decode) has a thumbnail
    assert sorted(os.listdir(out)) == sorted([STATS_FILE, REJECTS_FILE, REJECT_SAMPLES_FILE])
    samples = pq.read_table(out / REJECT_SAMPLES_FILE)
    assert samples.column("reason").to_pylist() == ["too_dark"] and stats["reject_samples"] == 1


def test_done_partition_is_skipped(http_server: FaultServer, tmp_path: Path) -> None:
    partition = _mixed_partition(http_server)
    first = run_partition(partition, str(tmp_path), CONFIG)
    hits = sum(http_server.hits.values())
    again = run_partition(partition, str(tmp_path), CONFIG)
    assert again.skipped and again.stats == first.stats
    assert sum(http_server.hits.values()) == hits  # nothing fetched again


def test_changed_candidates_are_redone(http_server: FaultServer, tmp_path: Path) -> None:
    partition = _mixed_partition(http_server)
    run_partition(partition, str(tmp_path), CONFIG)
    shorter = Partition(partition.id, partition.source, 0, partition.candidates[:2])
    redone = run_partition(shorter, str(tmp_path), CONFIG)
    assert not redone.skipped and redone.stats["candidates"] == 2
    assert read_stats(str(tmp_path))["candidates"] == 2


class CollectingSink:
    """Keeps ids only; turns one chosen record into a late reject, like a quality gate."""

    def __init__(self, reject_url: str) -> None:
        self.ids: list[str] = []
        self.reject_url = reject_url

    def accept(self, record: AcceptedRecord) -> Reject | None:
        if record.candidate.url == self.reject_url:
            return Reject(record.candidate, "quality", "low_quality", "test gate")
        self.ids.append(record.id)
        return None

    def finish(self) -> dict:
        return {"kept": len(self.ids)}


def test_sink_streams_records_and_can_reject(http_server: FaultServer, tmp_path: Path) -> None:
    partition = _mixed_partition(http_server)
    sink = CollectingSink(partition.candidates[1].url)
    result = run_partition(partition, str(tmp_path), CONFIG, sink=sink)
    assert result.accepted == []  # streamed to the sink, not held
    assert sorted(sink.ids) == sorted(
        c.id for i, c in enumerate(partition.candidates[:4]) if i != 1
    )
    assert result.stats["accepted"] == 3
    assert result.stats["rejects_by_reason"]["low_quality"] == 1
    assert result.stats["downstream"] == {"kept": 3}


def test_folder_source_partition(tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(3):
        (folder / f"{i}.jpg").write_bytes(images.jpeg_bytes(images.photo_like(400, 300, seed=i)))
    (folder / "3.png").write_bytes(b"<html>oops</html>")
    (partition,) = iter_partitions(SourceConfig(uri=str(folder)), partition_size=10)
    result = run_partition(partition, str(tmp_path / "out"), CONFIG)
    assert len(result.accepted) == 3
    assert [r.reason for r in result.rejects] == ["not_an_image"]


_KILLED_WORKER = """
import json, sys, time
sys.path.insert(0, {repo!r})
from curation.config import CurationConfig
from curation.partition import run_partition
from curation.records import Candidate, Partition

spec = json.load(open(sys.argv[1]))
config = CurationConfig.model_validate(spec["config"])
partition = Partition("web-000000", "web", 0, tuple(Candidate(**c) for c in spec["candidates"]))

class SlowSink:
    def accept(self, record):
        open(spec["progress"], "a").write(record.id + "\\n")
        time.sleep(0.5)  # slow downstream: the kill lands mid-partition
    def finish(self):
        return {{}}

run_partition(partition, spec["out"], config, sink=SlowSink())
"""


@pytest.mark.slow
def test_killed_partition_is_redone_whole(http_server: FaultServer, tmp_path: Path) -> None:
    partition = _mixed_partition(http_server, n_photos=8)
    out = tmp_path / "out"
    progress = tmp_path / "progress.txt"
    spec = {
        "config": CONFIG.model_dump(mode="json"),
        "candidates": [
            {"id": c.id, "url": c.url, "source": c.source} for c in partition.candidates
        ],
        "out": str(out),
        "progress": str(progress),
    }
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    (tmp_path / "worker.py").write_text(_KILLED_WORKER.format(repo=str(REPO)))
    worker = subprocess.Popen(
        [sys.executable, str(tmp_path / "worker.py"), str(tmp_path / "spec.json")]
    )
    try:
        deadline = time.monotonic() + 60
        while not (progress.exists() and progress.read_text().strip()):
            assert worker.poll() is None, "worker ended before it was killed"
            assert time.monotonic() < deadline, "worker made no progress"
            time.sleep(0.05)
        os.kill(worker.pid, signal.SIGKILL)
    finally:
        worker.wait(timeout=30)
    assert worker.returncode == -signal.SIGKILL
    assert read_stats(str(out)) is None  # not marked done
    assert not (out / REJECTS_FILE).exists()

    result = run_partition(partition, str(out), CONFIG)
    assert not result.skipped
    rejects = pq.read_table(out / REJECTS_FILE).to_pylist()
    ids = [row["candidate_id"] for row in rejects] + [r.id for r in result.accepted]
    # Every listed candidate exactly once (the duplicate URL as its duplicate_url reject).
    assert sorted(ids) == sorted(c.id for c in partition.candidates)
    stats = read_stats(str(out))
    assert stats["accepted"] + stats["rejected"] == stats["candidates"] == 11


class PreparingSink(CollectingSink):
    """``prepare`` runs in the worker threads: hashes there, rejects one record there."""

    def __init__(self, reject_url: str) -> None:
        super().__init__(reject_url="")
        self.prepare_reject_url = reject_url
        self.threads: set[str] = set()

    def prepare(self, record: AcceptedRecord) -> Reject | None:
        import hashlib
        import threading

        self.threads.add(threading.current_thread().name)
        record.provenance["sha256"] = hashlib.sha256(record.data).hexdigest()
        if record.candidate.url == self.prepare_reject_url:
            return Reject(record.candidate, "hash", "test_reject", "from prepare")
        return None


def test_sink_prepare_runs_in_worker_threads(http_server: FaultServer, tmp_path: Path) -> None:
    partition = _mixed_partition(http_server)
    sink = PreparingSink(partition.candidates[2].url)
    result = run_partition(partition, str(tmp_path), CONFIG, sink=sink)
    assert sink.threads and all(name.startswith("curate") for name in sink.threads)
    assert len(sink.ids) == 3
    assert result.stats["rejects_by_reason"]["test_reject"] == 1
    assert result.stats["rejects_by_stage"]["hash"] == 1


def test_empty_partition_still_gets_its_marker(tmp_path: Path) -> None:
    result = run_partition(Partition("none-000000", "none", 0, ()), str(tmp_path), CONFIG)
    assert result.stats["candidates"] == 0 and read_stats(str(tmp_path)) is not None
    assert pq.read_table(tmp_path / REJECTS_FILE).num_rows == 0


def test_failing_sink_leaves_no_marker(http_server: FaultServer, tmp_path: Path) -> None:
    class Broken:
        def accept(self, record):
            raise OSError("disk full")

        def finish(self):
            return {}

    with pytest.raises(OSError, match="disk full"):
        run_partition(_mixed_partition(http_server), str(tmp_path), CONFIG, sink=Broken())
    assert read_stats(str(tmp_path)) is None


class OverlapSink(CollectingSink):
    """``prepare`` sleeps a little and records how many calls overlapped at most."""

    def __init__(self) -> None:
        super().__init__(reject_url="")
        import threading

        self._lock = threading.Lock()
        self.running = self.most = 0

    def prepare(self, record: AcceptedRecord) -> Reject | None:
        with self._lock:
            self.running += 1
            self.most = max(self.most, self.running)
        time.sleep(0.05)
        with self._lock:
            self.running -= 1
        return None


@pytest.mark.parametrize("slots", [1, 3])
def test_cpu_slots_bound_candidates_past_the_header(tmp_path: Path, slots: int) -> None:
    """Decoding, filtering and preparing run ``cpu_slots`` candidates at a time, with a fetch
    pool wider than that (8 threads): no more overlap, and with 3 slots some overlap."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(8):
        (folder / f"{i}.jpg").write_bytes(images.jpeg_bytes(images.photo_like(320, 256, seed=i)))
    (partition,) = iter_partitions(SourceConfig(uri=str(folder)), partition_size=10)
    config = CONFIG.model_copy(
        update={"cpu_slots": slots, "fetch": CONFIG.fetch.model_copy(update={"threads": 8})}
    )
    sink = OverlapSink()
    result = run_partition(partition, str(tmp_path / "out"), config, sink=sink)
    assert result.stats["accepted"] == 8
    assert sink.most <= slots
    if slots > 1:
        assert sink.most > 1  # the slots are used, not a single lane
