"""Per-stage timings of a real build (stats.json, partition stats, the dashboard rendered in
Chromium) and the order of the gates by cost: an exact copy is never scored twice, and a copy
of a published sample is rejected before it is decoded."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
from PIL import Image

from curation.build import run_build
from curation.config import BuildConfig
from curation.partition import STAGES
from flows.dashboard import build_dashboard
from flows.demo.source import write_demo_source
from storage.versions import Dataset
from tests.browser import PAGE_CHECKS, Page, chromium

PARTITION_STAGES = ("fetch", "probe_decode", "filters", "hashes", "iqa", "staging_write")


def _config(root: Path, folders: list[Path]) -> BuildConfig:
    return BuildConfig.model_validate(
        {
            "root": str(root),
            "name": "ird",
            "curation": {
                "sources": [{"uri": str(folder)} for folder in folders],
                "probe": {"min_side": 256},
                "partition_size": 4,  # several partitions: the copies land in different ones
            },
            "quality": {"max_side": 512},
            "publish": {"keep_build_area": True},
        }
    )


@pytest.fixture(scope="module")
def first_build(tmp_path_factory):
    """The demo folder (5 photographs, a near copy, an exact copy, 4 rejects) built once."""
    tmp = tmp_path_factory.mktemp("timing")
    folder = tmp / "demo"
    expected = write_demo_source(folder)
    version = run_build(_config(tmp / "out", [folder]))
    return tmp, folder, expected, version


def _partition_stats(version) -> list[dict]:
    builds = Path(version.dataset.path) / "_builds"
    return [json.loads(p.read_text()) for p in sorted(builds.glob("*/partitions/*/_stats.json"))]


def test_stats_json_has_cpu_and_wall_seconds_per_stage(first_build):
    _, _, expected, version = first_build
    stats = version.stats()
    stages = stats["stage_seconds"]
    assert sorted(stages) == sorted(STAGES)  # every stage (stats.json sorts its keys)
    for name, figures in stages.items():
        assert set(figures) == {"cpu_s", "wall_s", "count"}
        assert figures["cpu_s"] > 0, name
        if name in PARTITION_STAGES:  # one thread's CPU never exceeds its wall time
            assert figures["wall_s"] >= figures["cpu_s"] * 0.99, name
    outcomes = list(expected.values())
    too_small = outcomes.count("too_small")
    kept, exact = outcomes.count("keep"), outcomes.count("duplicate_of")
    near = outcomes.count("near_duplicate_of")
    assert stages["fetch"]["count"] == len(expected) == stats["funnel"]["candidates"]
    assert stages["probe_decode"]["count"] == len(expected) - too_small  # decoded once each
    assert stages["filters"]["count"] == len(expected) - too_small
    # the exact copy reuses its original's hashes and scores: neither is computed twice
    assert stages["hashes"]["count"] == stages["iqa"]["count"] == kept + near
    assert stages["staging_write"]["count"] == kept + near + exact
    assert stages["dedupe"]["count"] == kept + near + exact
    assert stages["publish"]["count"] == kept == stats["new_samples"]

    # stats.json's partition stages are the sum of the partitions' own figures
    partitions = _partition_stats(version)
    assert len(partitions) == 3
    for name in PARTITION_STAGES:
        counts = sum(p["stage_seconds"].get(name, {}).get("count", 0) for p in partitions)
        cpu = sum(p["stage_seconds"].get(name, {}).get("cpu_s", 0.0) for p in partitions)
        assert counts == stages[name]["count"]
        assert cpu == pytest.approx(stages[name]["cpu_s"], abs=1e-3)
    reused = sum(p["downstream"]["prepared_reused"] for p in partitions)
    assert reused == exact


def test_a_duplicate_is_not_scored_twice(first_build):
    """An exact copy in the same build is scored once (its copy reuses the verdict, dedupe
    still drops it); a copy of a sample of the parent version is rejected as its duplicate
    before any decode, and the incremental build scores only what is new."""
    tmp, folder, _, v1 = first_build
    astronaut = (folder / "astronaut.jpg").read_bytes()
    rejects = {r["url"].rsplit("/", 1)[-1]: r for r in v1.rejects().to_pylist()}
    by_sha = {r["sha256"]: r["key"] for r in v1.manifest().to_pylist()}
    original = by_sha[hashlib.sha256(astronaut).hexdigest()]
    # of the two byte-identical files, dedupe keeps the smaller key (keys hash the path)
    [copy] = [rejects[n] for n in ("astronaut.jpg", "astronaut_exact.png") if n in rejects]
    assert (copy["reason"], copy["detail"]) == ("duplicate_of", original)

    more = tmp / "more"
    more.mkdir()
    (more / "astronaut_again.jpg").write_bytes(astronaut)  # a new URL, the same bytes
    Image.open(folder / "chelsea.jpg").transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(
        more / "chelsea_flipped.jpg", quality=92
    )
    v2 = run_build(_config(tmp / "out", [folder, more]))
    assert v2.version == "v2" and v2.stats()["new_samples"] == 1
    [reject] = v2.rejects().to_pylist()
    assert reject["url"].endswith("astronaut_again.jpg")
    assert (reject["stage"], reject["reason"], reject["detail"]) == (
        "dedupe",
        "duplicate_of",
        original,
    )
    stages = v2.stats()["stage_seconds"]
    assert stages["fetch"]["count"] == 2
    assert stages["probe_decode"]["count"] == 1  # the copy was never decoded
    assert stages["iqa"]["count"] == 1  # nor scored
    partitions = [p for p in _partition_stats(v2) if p["index"] >= 0 and p["source"] == "more"]
    assert sum(p["downstream"]["published_copies"] for p in partitions) == 1


def test_the_copies_memo_is_bounded_by_its_configuration(first_build):
    """dedupe.copies_memo_entries bounds the memo (oldest dropped); at 0 it remembers nothing,
    so the exact copy is hashed and scored again, and the global dedupe still drops it."""
    from curation.copies import PreparedMemo, prepared_memo

    memo = PreparedMemo(capacity=2)
    for sha in ("a", "b", "c"):
        first, entry = memo.claim(sha)
        assert first
        memo.settle(sha, entry, ({"sha": sha}, None, None))
    assert memo.claim("a")[0]  # dropped as the oldest: a first copy again
    first, entry = memo.claim("c")
    assert not first and entry.value == ({"sha": "c"}, None, None)
    assert prepared_memo("build-x", 7).capacity == 7
    assert prepared_memo("build-x", 9) is prepared_memo("build-x")  # made once per build

    tmp, folder, expected, v1 = first_build
    config = _config(tmp / "no-memo", [folder]).model_copy(deep=True)
    config.dedupe.copies_memo_entries = 0
    version = run_build(config)
    outcomes = list(expected.values())
    kept, exact = outcomes.count("keep"), outcomes.count("duplicate_of")
    near = outcomes.count("near_duplicate_of")
    stages = version.stats()["stage_seconds"]
    assert stages["hashes"]["count"] == stages["iqa"]["count"] == kept + near + exact
    assert sum(p["downstream"]["prepared_reused"] for p in _partition_stats(version)) == 0
    assert sorted(r["sha256"] for r in version.manifest().to_pylist()) == sorted(
        r["sha256"] for r in v1.manifest().to_pylist()
    )


@pytest.mark.skipif(chromium() is None, reason="needs chromium")
def test_dashboard_shows_throughput_per_stage_in_chromium(first_build, tmp_path):
    _, _, _, version = first_build
    dataset = Dataset(version.dataset.root, version.dataset.name)
    path = Path(build_dashboard(dataset, str(tmp_path / "site"), version=version.version))
    stages = version.stats()["stage_seconds"]
    with Page(path, tmp_path / "profile") as page:
        checks = page.evaluate(PAGE_CHECKS)
        rows = page.evaluate("""(() => Array.from(
            document.querySelectorAll('#stages tbody tr')).map(tr => ({
                stage: tr.dataset.stage,
                cells: Array.from(tr.querySelectorAll('td.num')).map(td => Number(td.dataset.v)),
                visible: tr.getBoundingClientRect().height > 0,
            })))()""")
        sorted_by_cpu = page.evaluate("""(() => {
            const th = Array.from(document.querySelectorAll('#stages th'))
                            .find(h => h.textContent === 'CPU s');
            th.click(); th.click();
            return Array.from(document.querySelectorAll('#stages tbody tr'))
                        .map(tr => tr.dataset.stage);
        })()""")
        errors = page.errors()
    assert errors == [] and checks["ready"] == "1"
    assert [row["stage"] for row in rows] == list(STAGES)
    candidates = version.stats()["funnel"]["candidates"]
    for row in rows:
        items, cpu, per_candidate, per_cpu_s, wall, share = row["cells"]
        figures = stages[row["stage"]]
        assert row["visible"]
        assert items == figures["count"] and cpu == pytest.approx(figures["cpu_s"])
        assert per_candidate == pytest.approx(figures["cpu_s"] / candidates)
        assert per_cpu_s == pytest.approx(figures["count"] / figures["cpu_s"])
        assert wall == pytest.approx(figures["wall_s"]) and 0 < share < 1
    assert sorted(sorted_by_cpu) == sorted(STAGES)  # the table sorts, rows intact
    shutil.rmtree(tmp_path / "profile", ignore_errors=True)
