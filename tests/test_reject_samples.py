"""Thumbnails of rejected candidates in the published version: which, how many, where, shown.

One real build (folder + URL list, several partitions) of the small demo source plus dark
shots, a flat gradient, a corrupt file and a 404, with at most 2 thumbnails per reason.
"""

from __future__ import annotations

import html
import io
import re
import threading
from collections import defaultdict
from pathlib import Path

import duckdb
import pytest
from PIL import Image

from curation.build import run_build
from curation.config import BuildConfig, RejectSampleConfig
from curation.publish import publish_build
from curation.reasons import describe
from curation.records import Candidate, Reject
from curation.reject_samples import (
    RejectSampler,
    sample_row,
    select_per_reason,
    thumbnail_jpeg,
)
from flows.dashboard import build_dashboard, collect
from flows.demo.source import write_demo_source
from storage.build_area import BuildArea
from storage.verify import verify_version
from storage.versions import Dataset
from tests import curation_images as images
from tests.http_fixtures import (
    FaultServer,
    http_server_fixture,  # noqa: F401 (registers the http_server fixture)
    status,
)
from tests.storage_helpers import make_samples, row_for

PER_REASON = 2
DECODED_STAGES = {"filter", "quality", "dedupe"}  # rejected after the reduced decode


def _config(root: Path, sources: list[dict], per_reason: int | None = PER_REASON) -> BuildConfig:
    return BuildConfig.model_validate(
        {
            "root": str(root),
            "name": "ird",
            "curation": {
                "sources": sources,
                "probe": {"min_side": 256},
                "partition_size": 2,  # three dark shots: the cap has to hold across partitions
                "fetch": {"allow_hosts": ["127.0.0.1"], "retries": 0},
                "reject_samples": {"per_reason": per_reason},
            },
            # NIQE 8 (stricter than the default 10) so that the rocket (NIQE 9.5 on this
            # proxy) gives a quality reject to sample
            "quality": {"max_side": 512, "thresholds": {"niqe": 8.0, "brisque": 85.0}},
        }
    )


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, Dataset]:
    base = tmp_path_factory.mktemp("rejects")
    folder = base / "photos"
    write_demo_source(folder)
    for seed in range(3):
        (folder / f"dark_{seed}.jpg").write_bytes(images.jpeg_bytes(images.dark(480, 360, seed)))
    (folder / "gradient.png").write_bytes(images.png_bytes(images.flat(480, 360)))
    (folder / "broken.jpg").write_bytes(b"<html>not an image</html>")
    server = FaultServer().start()
    try:
        url_list = base / "urls.txt"
        url_list.write_text(server.route("/gone.jpg", status(404)) + "\n")
        run_build(_config(base / "out", [{"uri": str(folder)}, {"uri": str(url_list)}]))
    finally:
        server.stop()
    return base, Dataset(str(base / "out"), "ird")


def _by_reason(rows: list[dict]) -> dict[tuple[str, str], list[str]]:
    out: dict[tuple[str, str], list[str]] = defaultdict(list)
    for row in rows:
        out[(row["stage"], row["reason"])].append(row["candidate_id"])
    return {key: sorted(ids) for key, ids in out.items()}


def test_decoded_rejects_keep_a_thumbnail_up_to_the_cap(built):
    _, dataset = built
    version = dataset.version()
    rejects = version.rejects().to_pylist()
    samples = version.reject_samples().to_pylist()
    rejected = _by_reason(rejects)
    kept = _by_reason(samples)
    reasons = {reason for _, reason in rejected}
    # the build met every kind: filters, quality, dedupe, and rejects before any decode
    assert {"too_dark", "blurry", "graphic", "low_quality:niqe", "duplicate_of"} <= reasons
    assert {"too_small", "http_404"} <= reasons and len(rejected[("filter", "too_dark")]) == 3
    assert ("fetch", "not_an_image") in rejected and ("filter", "flat") in rejected
    # exactly the smallest candidate ids of each decoded reason, at most PER_REASON of them
    expected = {key: ids[:PER_REASON] for key, ids in rejected.items() if key[0] in DECODED_STAGES}
    assert kept == expected
    assert len(kept[("filter", "too_dark")]) == PER_REASON  # 3 dark shots, 2 partitions at least
    assert version.stats()["reject_samples"] == len(samples)
    details = {(r["candidate_id"], r["reason"]): r["detail"] for r in rejects}
    for row in samples:
        thumb = Image.open(io.BytesIO(row["thumbnail"]))
        assert thumb.format == "JPEG" and max(thumb.size) <= 256
        assert thumb.size == (row["thumbnail_width"], row["thumbnail_height"])
        assert len(row["thumbnail"]) < 40_000
        assert row["detail"] == details[(row["candidate_id"], row["reason"])]
        measured = dict(row["measurements"])
        assert measured, row["reason"]
        # what the detail names (the threshold that fired) was measured and kept
        named = set(re.findall(r"([A-Za-z_]\w*)=", row["detail"] or ""))
        if row["stage"] != "dedupe":
            assert named and named <= set(measured), (row["detail"], measured)
    assert verify_version(version).ok


def test_readable_with_duckdb_as_the_readme_says(built):
    _, dataset = built
    files = f"{dataset.version().uri}/reject_samples/*.parquet"
    rows = duckdb.sql(
        f"SELECT reason, count(*), max(octet_length(thumbnail)), "
        f"bool_and(cardinality(measurements) > 0) FROM '{files}' GROUP BY 1 ORDER BY 1"
    ).fetchall()
    assert ("too_dark", PER_REASON) in [(r, n) for r, n, *_ in rows]
    assert all(0 < size < 40_000 and has for _, _, size, has in rows)


def test_dashboard_shows_thumbnails_per_reason(built, tmp_path):
    _, dataset = built
    data = collect(dataset)
    groups = {g.label: g for g in data.reject_groups}
    samples = dataset.version().reject_samples().to_pylist()
    for key, ids in _by_reason(samples).items():
        group = groups["/".join(key)]
        assert [s.candidate_id for s in group.samples] == ids and group.stored == len(ids)
        assert all(s.image.startswith("data:image/jpeg;base64,") and s.measurements
                   for s in group.samples)  # fmt: skip
    assert groups["filter/too_dark"].count == 3 and groups["filter/too_dark"].thresholds
    assert groups["fetch/http_404"].samples == [] and groups["probe/too_small"].samples == []
    text = Path(build_dashboard(dataset, str(tmp_path))).read_text(encoding="utf-8")
    section = text.split('<section id="rejected">', 1)[1].split("</section>", 1)[0]
    assert section.count('<img src="data:image/jpeg;base64,') >= len(samples)
    for label, group in groups.items():
        assert f"<h3>{label} <span" in section.replace("&lt;", "<")
        assert f"· {group.count:,} rejected</span></h3>" in section
    # each reason says what it means and whether the next build retries it (curation.reasons)
    assert html.escape(describe("too_dark") + " (lasting)") in section
    assert html.escape(describe("http_404") + " (lasting)") in section
    assert 'class="fired"' in section


def test_incremental_build_leaves_the_older_thumbnails(built):
    base, dataset = built
    v1_dir = Path(dataset.path) / "v1" / "reject_samples"
    before = {p.name: p.read_bytes() for p in v1_dir.iterdir()}
    more = base / "more"
    more.mkdir()
    (more / "dark_new.jpg").write_bytes(images.jpeg_bytes(images.dark(480, 360, 9)))
    chelsea = Image.open(base / "photos" / "chelsea.jpg")  # a new photograph to keep
    chelsea.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(more / "chelsea_flipped.jpg")
    config = _config(base / "out", [{"uri": str(base / "photos")}, {"uri": str(more)}])
    v2 = run_build(config)
    assert v2.version == "v2"
    assert [(r["reason"], r["url"]) for r in v2.reject_samples().to_pylist()] == [
        ("too_dark", str(more / "dark_new.jpg"))
    ]
    assert {p.name: p.read_bytes() for p in v1_dir.iterdir()} == before  # immutable
    assert dataset.version("v1").reject_samples().num_rows > 1
    assert verify_version(dataset.version("v1")).ok and verify_version(v2).ok


# ------------------------------------------------------------------------ units, no build


def _reject(i: int, reason: str = "too_dark", stage: str = "filter") -> Reject:
    candidate = Candidate(id=f"{i:04x}", url=f"file:///{i}.jpg", source="s")
    return Reject(candidate, stage, reason, f"mean_luma={i} < 40", {"mean_luma": float(i)})


def test_sampler_keeps_the_smallest_ids_whatever_the_thread_order():
    image = Image.new("RGB", (640, 480), (20, 20, 20))
    ids = list(range(40))
    results = []
    for order in (ids, ids[::-1], ids[1::2] + ids[::2]):
        sampler = RejectSampler(RejectSampleConfig(per_reason=3, max_side=64))
        threads = [threading.Thread(target=sampler.offer, args=(_reject(i), image)) for i in order]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        results.append([r["candidate_id"] for r in sampler.rows()])
    assert results[0] == results[1] == results[2] == ["0000", "0001", "0002"]
    rows = RejectSampler(RejectSampleConfig(per_reason=3, max_side=64))
    rows.offer(_reject(5), image)
    (row,) = rows.rows()
    assert row["measurements"] == {"mean_luma": 5.0} and row["thumbnail_width"] == 64


def test_sampler_limits_none_zero_and_images_without_pixels():
    image = Image.new("RGB", (300, 100), (20, 20, 20))
    everything = RejectSampler(RejectSampleConfig(per_reason=None))
    nothing = RejectSampler(RejectSampleConfig(per_reason=0))
    for i in range(5):
        everything.offer(_reject(i), image)
        nothing.offer(_reject(i), image)
    assert len(everything.rows()) == 5 and nothing.rows() == []
    assert not everything.offer(_reject(9), None)  # rejected before the decode: no pixels


def test_thumbnail_is_bounded_and_never_upscaled():
    data, width, height = thumbnail_jpeg(Image.new("RGB", (1024, 300), "red"), 256, 75)
    assert (width, height) == (256, 75) and Image.open(io.BytesIO(data)).size == (256, 75)
    _, width, height = thumbnail_jpeg(Image.new("L", (100, 40)), 256, 75)
    assert (width, height) == (100, 40)


def test_select_per_reason_trims_the_union_of_partitions():
    thumb = (b"jpg", 1, 1)
    parts = [
        [sample_row(_reject(i).to_row(), thumb, {}) for i in (7, 3, 9)],
        [sample_row(_reject(i).to_row(), thumb, {}) for i in (1, 8)],
        [sample_row(_reject(i, "blurry").to_row(), thumb, {}) for i in (5,)],
    ]
    chosen = select_per_reason(iter(parts), 2)
    assert [(r["reason"], r["candidate_id"]) for r in chosen] == [
        ("blurry", "0005"),
        ("too_dark", "0001"),
        ("too_dark", "0003"),
    ]


def _area_with_samples(dataset: Dataset, build_id: str, samples: list[dict]) -> BuildArea:
    area = BuildArea(dataset, build_id)
    items = make_samples(2)
    rejects = [{**_reject(i).to_row()} for i in range(4)]
    area.write_partition("p0", [(s, row_for(s)) for s in items], rejects, {}, samples)
    return area


def test_publish_without_thumbnails_and_older_versions_read_empty(tmp_path):
    dataset = Dataset(str(tmp_path), "ird")
    image = Image.new("RGB", (64, 48), (10, 10, 10))
    rows = [sample_row(_reject(i), thumbnail_jpeg(image, 256, 75), {}) for i in range(4)]
    area = _area_with_samples(dataset, "a", rows)
    none = publish_build(dataset, area, reject_samples=RejectSampleConfig(per_reason=0))
    assert none.reject_samples().num_rows == 0 and none.stats()["reject_samples"] == 0
    capped = publish_build(dataset, area, reject_samples=RejectSampleConfig(per_reason=1))
    assert capped.reject_samples().column("candidate_id").to_pylist() == ["0000"]
    # a version written without the table (older builders) reads as an empty one
    with dataset.begin_version() as writer:
        old = writer.publish()
    assert not (Path(dataset.path) / old.version / "reject_samples").exists()
    assert old.reject_samples().num_rows == 0 and verify_version(old).ok


def test_verify_reports_a_thumbnail_of_no_reject(tmp_path):
    dataset = Dataset(str(tmp_path), "ird")
    image = Image.new("RGB", (64, 48), (10, 10, 10))
    stray = sample_row(_reject(99), thumbnail_jpeg(image, 256, 75), {})
    with dataset.begin_version() as writer:
        writer.add_rejects([_reject(1).to_row()])
        writer.add_reject_samples([stray])
        version = writer.publish()
    report = verify_version(version)
    assert [(p.kind, p.key) for p in report.problems] == [("reject_samples_error", "0063")]
