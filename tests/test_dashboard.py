"""The data team's dashboard: content from a real published build, CLI, headless Chromium."""

from __future__ import annotations

import base64
import hashlib
import io
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pytest
from PIL import Image
from typer.testing import CliRunner

from curation.publish import publish_build
from curation.reject_samples import sample_row, thumbnail_jpeg
from flows.dashboard import DashboardError, build_dashboard, collect
from flows.demo.data import encode, photo_like
from storage.build_area import BuildArea
from storage.errors import VersionNotFoundError
from storage.shards import Sample
from storage.versions import Dataset
from tests.browser import PAGE_CHECKS, Page, chromium

THRESHOLDS = {"niqe": {"max": 8.0}, "brisque": {"max": 60.0}, "musiq": {"min": 41.0}}
SIZES = [(240, 160), (64, 96), (120, 80), (80, 80), (128, 72), (150, 225)]


def _sample(key: str, seed: int, size: tuple[int, int], quality: int = 90) -> Sample:
    return Sample(key, encode(photo_like(*size, seed=seed), "JPEG", quality=quality), "jpg")


def _row(sample: Sample, source: str, i: int) -> dict:
    image = Image.open(io.BytesIO(sample.data))
    return {
        "source": source,
        "url": f"http://127.0.0.1/{sample.key}.jpg",
        "sha256": hashlib.sha256(sample.data).hexdigest(),
        "width": image.width,
        "height": image.height,
        "iqa_niqe": 3.0 + 0.4 * (i % 10),
        "iqa_brisque": 20.0 + 3.0 * (i % 12),
        "iqa_extra": {"musiq": 42.0 + i % 7},  # a metric without its own column
    }


def _build(dataset: Dataset, build_id: str, start: int, n: int, parent: str | None) -> None:
    """Two sources, partition rejects of several stages, and dropped duplicates whose bytes
    stay in the staging area (as global dedupe leaves them)."""
    area = BuildArea(dataset, build_id)
    dropped: dict[str, dict] = {}
    for p, source in enumerate(("web", "folder")):
        items = []
        for i in range(start + p, start + n, 2):
            sample = _sample(f"{build_id}-{i:04d}", i, SIZES[i % len(SIZES)])
            items.append((sample, _row(sample, source, i)))
        keeper = items[0][0]
        near = _sample(f"{build_id}-near{p}", start + p, SIZES[(start + p) % len(SIZES)], 60)
        exact = Sample(f"{build_id}-copy{p}", keeper.data, "jpg")
        for dup, reason in ((near, "near_duplicate_of"), (exact, "duplicate_of")):
            items.append((dup, _row(dup, source, 0)))
            dropped[dup.key] = {
                "candidate_id": dup.key,
                "source": source,
                "stage": "dedupe",
                "reason": reason,
                "detail": keeper.key,
            }
        rejects = [
            {"candidate_id": f"{build_id}-404-{p}", "source": source, "url": "http://x/a.jpg",
             "stage": "fetch", "reason": "http_404", "detail": "404 Not Found"},
            {"candidate_id": f"{build_id}-small-{p}", "source": source, "stage": "probe",
             "reason": "too_small", "detail": "300x200, shorter side < 512"},
            {"candidate_id": f"{build_id}-blur-{p}", "source": source, "stage": "filter",
             "reason": "blurry", "detail": "blur_laplacian_var=3.1 < 40"},
            {"candidate_id": f"{build_id}-lq-{p}", "source": source, "stage": "quality",
             "reason": "low_quality:niqe", "detail": f"niqe={9.5 + p:.4g} > 8; brisque=71 > 60"},
        ]  # fmt: skip
        # the filter and quality rejects were decoded: the partition kept their thumbnails
        measured = [{"blur_laplacian_var": 3.1, "mean_luma": 118.0},
                    {"niqe": 9.5 + p, "brisque": 71.0, "mean_luma": 120.0}]  # fmt: skip
        thumbs = [
            sample_row(r, thumbnail_jpeg(Image.fromarray(photo_like(300, 200, i)), 256, 75), m)
            for i, (r, m) in enumerate(zip(rejects[2:], measured, strict=True))
        ]
        area.write_partition(
            f"{source}-{p:06d}",
            items,
            rejects,
            {"candidates": len(items) + len(rejects)},
            reject_samples=thumbs,
        )
    publish_build(
        dataset,
        area,
        dropped=dropped,
        parent=parent,
        max_shard_bytes=40_000,
        extra_stats={"quality_thresholds": THRESHOLDS, "build_id": build_id},
    )


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Dataset:
    root = tmp_path_factory.mktemp("dash")
    dataset = Dataset(str(root), "ird")
    _build(dataset, "b1", 0, 14, None)
    _build(dataset, "b2", 100, 8, "v1")
    return dataset


class _Page(HTMLParser):
    """Collects what the tests look at: element ids, images, external references, text."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()
        self.images: list[str] = []
        self.external: list[str] = []
        self.figures: list[dict] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "id" in attrs:
            self.ids.add(attrs["id"])
        for name in ("src", "href"):
            value = attrs.get(name) or ""
            if value and not value.startswith(("data:", "#")):
                self.external.append(value)
        if tag == "img":
            self.images.append(attrs["src"])
        if tag == "figure":
            self.figures.append(attrs)
        if tag in ("link", "iframe", "object", "embed"):
            self.external.append(tag)

    def handle_data(self, data):
        self.text.append(data)


def _parse(path: str) -> tuple[str, _Page]:
    text = Path(path).read_text(encoding="utf-8")
    page = _Page()
    page.feed(text)
    return text, page


def test_page_shows_funnel_sources_scores_and_history(dataset):
    path = build_dashboard(dataset)
    assert path == f"{dataset.uri}/dashboard/index.html"
    text, page = _parse(path)
    assert page.external == []  # everything inlined: viewable offline
    assert "<script src" not in text and "@import" not in text
    for section in ("funnel", "sources", "resolution", "quality", "duplicates", "kept",
                    "rejected", "history"):  # fmt: skip
        assert section in page.ids
    assert "problems" not in page.ids

    version = dataset.version()
    rejects = version.rejects()
    data = collect(dataset)
    # funnel: counted from the Parquet rejects, consistent with the build's stats.json
    assert data.rejected == rejects.num_rows == 12
    assert data.candidates == version.stats()["funnel"]["candidates"] == 12 + 8
    assert data.new_kept == 8 and data.reused == 14 and data.samples == 22
    assert [s for s, _ in data.funnel_stages] == ["fetch", "probe", "filter", "quality", "dedupe"]
    assert ("dedupe", "near_duplicate_of", 2) in data.reasons
    # per source: kept from the manifest, rejected from the rejects table
    by_source = {s["source"]: s for s in data.sources}
    manifest = version.manifest()
    for source in ("web", "folder"):
        kept = pc.sum(pc.equal(manifest.column("source"), source)).as_py()
        assert by_source[source]["kept"] == kept and by_source[source]["rejected"] == 6
    # IQA: thresholds from stats.json drawn, rejected scores parsed from the rejects' detail
    niqe = next(m for m in data.metrics if m.name == "niqe")
    assert niqe.thresholds == [("max", 8.0)] and niqe.count == 22 and niqe.rejected == 2
    assert sum(niqe.hist.counts["kept"]) == 22 and sum(niqe.hist.counts["rejected"]) == 2
    assert niqe.hist.edges[0] <= 3.0 and niqe.hist.edges[-1] >= 10.5
    musiq = next(m for m in data.metrics if m.name == "musiq")
    assert musiq.thresholds == [("min", 41.0)] and musiq.count == 22
    musiq_values = [dict(extra)["musiq"] for extra in manifest["iqa_extra"].to_pylist()]
    assert musiq.hist.edges[0] <= 41.0 and musiq.median == np.median(musiq_values)
    assert text.count('class="thr"') == 3  # niqe, brisque, musiq thresholds
    assert "max 8" in text and "max 60" in text and "min 41" in text
    # resolution: every kept sample in the histogram; aspect range spans portrait..landscape
    assert sum(data.resolution["megapixels"].counts["kept"]) == 22
    aspect = data.resolution["aspect (width / height)"]
    assert aspect.edges[0] <= 2 / 3 and aspect.edges[-1] >= 128 / 72
    # history: both versions, kept ratio per build
    assert [h.version for h in data.history] == ["v1", "v2"]
    assert data.history[0].kept_ratio == pytest.approx(14 / 26)
    assert data.history[1].samples == 22 and data.history[1].new_samples == 8


def test_thumbnails_duplicates_and_rejected_examples(dataset):
    data = collect(dataset, seed=3, kept_examples=10, rejected_examples=40)
    # kept: seeded sample of the version's keys, each a small JPEG decoded from the shards
    keys = set(dataset.version().manifest().column("key").to_pylist())
    assert len(data.kept_examples) == 10 and {t.key for t in data.kept_examples} <= keys
    manifest = dataset.version().manifest()
    shard_of = dict(zip(manifest["key"].to_pylist(), manifest["shard"].to_pylist(), strict=True))
    assert len({shard_of[t.key] for t in data.kept_examples}) <= 4  # few shards touched
    for thumb in data.kept_examples:
        head, payload = thumb.image.split(",", 1)
        assert head == "data:image/jpeg;base64"
        image = Image.open(io.BytesIO(base64.b64decode(payload)))
        width, height = map(int, thumb.caption[1].split(" ")[0].split("x"))
        assert image.format == "JPEG" and max(image.size) == min(160, max(width, height))
    again = collect(dataset, seed=3, kept_examples=10)
    other = collect(dataset, seed=4, kept_examples=10)
    assert [t.key for t in again.kept_examples] == [t.key for t in data.kept_examples]
    assert [t.key for t in other.kept_examples] != [t.key for t in data.kept_examples]
    # duplicates: clusters keyed by the kept sample, dropped thumbnails from the staging area
    assert data.duplicates == {"exact": 2, "near": 2, "clusters": 2}
    assert {c.kept.key for c in data.clusters} == {"b2-0100", "b2-0101"}
    for cluster in data.clusters:
        assert cluster.kept.image and cluster.size == 2
        assert {t.key.split("-")[1][:4] for t in cluster.dropped} == {"near", "copy"}
        assert all(t.image for t in cluster.dropped)
    # rejected: every reason shown; images exactly where the bytes survive (dedupe drops)
    assert {t.reason for t in data.rejected_examples} == {
        "fetch/http_404", "probe/too_small", "filter/blurry", "quality/low_quality:niqe",
        "dedupe/near_duplicate_of", "dedupe/duplicate_of",
    }  # fmt: skip
    for thumb in data.rejected_examples:
        assert bool(thumb.image) == thumb.reason.startswith("dedupe/"), thumb
    assert data.staging_used == [f"{dataset.uri}/_builds/b2"]
    # stored thumbnails (reject_samples): per reason, for the rejects decoded before
    stored = {g.label: len(g.samples) for g in data.reject_groups}
    assert stored == {"fetch/http_404": 0, "probe/too_small": 0, "filter/blurry": 2,
                      "quality/low_quality:niqe": 2, "dedupe/near_duplicate_of": 2,
                      "dedupe/duplicate_of": 2}  # fmt: skip
    groups = {g.label: g for g in data.reject_groups}
    assert groups["filter/blurry"].thresholds == ["blur_laplacian_var < 40"]
    assert groups["quality/low_quality:niqe"].thresholds == ["niqe > 8", "brisque > 60"]
    blur = groups["filter/blurry"].samples[0]
    assert dict(blur.measurements)["blur_laplacian_var"] == pytest.approx(3.1)
    assert blur.image.startswith("data:image/jpeg;base64,")
    assert data.problems == []


def test_page_is_deterministic(dataset, tmp_path):
    first = build_dashboard(dataset, str(tmp_path / "a"), seed=1)
    second = build_dashboard(f"{dataset.uri}/v2", str(tmp_path / "b"), seed=1)
    assert Path(first).read_bytes() == Path(second).read_bytes()
    older = build_dashboard(f"{dataset.uri}/v1", str(tmp_path / "c"))
    assert "version v1" in Path(older).read_text() and "version v2" not in Path(older).read_text()


def test_without_staging_area_rejects_show_reasons_only(dataset, tmp_path):
    copy = tmp_path / "ird"
    shutil.copytree(dataset.path, copy)
    shutil.rmtree(copy / "_builds")
    path = build_dashboard(str(copy), seed=0)
    text, page = _parse(path)
    rejected = [f for f in page.figures if "data-reason" in f]
    assert len(rejected) == 12  # all of them (24 asked), none with an image
    assert "no build staging area is left" in text
    data = collect(Dataset(str(tmp_path), "ird"))
    assert all(t.image is None for t in data.rejected_examples)
    # the version's own thumbnails do not depend on the staging area
    assert sum(len(g.samples) for g in data.reject_groups) == 8
    section = text.split('<section id="rejected">', 1)[1].split("</section>", 1)[0]
    assert section.count('<img src="data:image/jpeg;base64,') == 8
    assert all(c.kept.image and not any(t.image for t in c.dropped) for c in data.clusters)


def test_bad_inputs_give_one_line_errors(dataset, tmp_path):
    with pytest.raises(VersionNotFoundError, match="no such dataset"):
        build_dashboard(str(tmp_path / "nothing"))
    with pytest.raises(VersionNotFoundError, match="v9"):
        build_dashboard(f"{dataset.uri}/v9")
    empty = tmp_path / "empty"
    (empty / "ird").mkdir(parents=True)
    with pytest.raises(VersionNotFoundError, match="no published version"):
        build_dashboard(str(empty / "ird"))
    with pytest.raises(DashboardError, match="kept_examples must be >= 0"):
        build_dashboard(dataset, str(tmp_path / "x"), kept_examples=-1)
    bad = Dataset(str(tmp_path), "bad")
    with bad.begin_version() as writer:
        sample = _sample("k1", 1, (64, 48))
        writer.write_sample(sample, _row(sample, "web", 1))
        writer.publish(stats={"quality_thresholds": {"niqe": "high"}})
    with pytest.raises(DashboardError, match=r"bad/v1/stats\.json: quality_thresholds"):
        build_dashboard(bad)


def test_cli_writes_and_prints_the_page(dataset, tmp_path):
    from flows.cli.app import app

    result = CliRunner().invoke(app, ["dashboard", dataset.uri, "--out", str(tmp_path / "o")])
    assert result.exit_code == 0, result.output
    printed = result.output.strip().splitlines()[-1]
    assert printed == str(tmp_path / "o" / "index.html") and Path(printed).stat().st_size > 0
    missing = subprocess.run(
        [sys.executable, "-m", "flows.cli", "dashboard", str(tmp_path / "none" / "ird")],
        capture_output=True,
        text=True,
        cwd=Path(__file__).parents[1],
    )
    assert missing.returncode == 2
    assert missing.stderr.strip() == f"mird: error: {tmp_path / 'none' / 'ird'}: no such dataset"


# ------------------------------------------------------------------------- headless Chromium


@pytest.mark.skipif(chromium() is None, reason="chromium not installed (apt-get install chromium)")
def test_renders_in_headless_chromium_without_console_errors(dataset, tmp_path):
    path = Path(build_dashboard(dataset, str(tmp_path / "site")))
    with Page(path, tmp_path / "profile") as page:
        checks = page.evaluate(PAGE_CHECKS)
        page.screenshot(tmp_path / "dashboard.png", checks["height"])
        # The reason filter and a sortable column work (no exception in the page's script).
        filtered = page.evaluate("""(() => {
            const s = document.getElementById('reject-filter');
            s.value = 'dedupe/duplicate_of'; s.dispatchEvent(new Event('change'));
            document.querySelector('table.sortable th').click();
            return Array.from(document.querySelectorAll('#rejected-grid figure'))
                        .filter(f => !f.hidden).length;
        })()""")
        rejected = page.evaluate("""(() => {
            const s = document.getElementById('reject-filter');
            s.value = ''; s.dispatchEvent(new Event('change'));
            const imgs = Array.from(document.querySelectorAll('#rejected-grid img'));
            return {
                groups: Array.from(document.querySelectorAll('#rejected-grid .reject-group h3'))
                             .map(h => h.textContent),
                images: imgs.filter(i => i.src.startsWith('data:image/jpeg;base64,')).length,
                broken: imgs.filter(i => !i.complete || i.naturalWidth === 0).length,
            };
        })()""")
        errors = page.errors()
    assert errors == []
    assert checks["ready"] == "1" and checks["broken"] == 0
    data = collect(dataset)
    stored = {g.label: len(g.samples) for g in data.reject_groups}
    thumbs = [*data.kept_examples, *[t for t in data.rejected_examples if not stored[t.reason]]]
    thumbs += [t for c in data.clusters for t in (c.kept, *c.dropped)]
    since = [i for _, i in (data.since.added + data.since.removed)] if data.since else []
    assert checks["images"] == sum(1 for t in thumbs if t.image) + sum(stored.values()) + sum(
        1 for image in since if image
    )
    assert sum(1 for t in thumbs if t.image) + sum(stored.values()) > 20
    assert checks["svgs"] >= 8
    assert filtered == 2
    # rejected: one heading per reason, and the stored thumbnails of the decoded ones render
    assert rejected["groups"] == [f"{g.label} · {g.count} rejected" for g in data.reject_groups]
    assert rejected["images"] == sum(stored.values()) == 8 and rejected["broken"] == 0
    screenshot = Image.open(tmp_path / "dashboard.png")
    assert screenshot.width == 1280 and screenshot.height > 900
    pixels = np.asarray(screenshot.convert("RGB").resize((64, 64))).reshape(-1, 3)
    assert len(np.unique(pixels, axis=0)) > 100  # not a blank page


def test_object_store_dataset_through_fsspec(dataset):
    """A dataset on a non-local fsspec filesystem: DuckDB reads it through the same fs."""
    import fsspec

    memory = fsspec.filesystem("memory")
    memory.put(dataset.path, "/dashtest/ird", recursive=True)
    try:
        remote = Dataset("memory://dashtest", "ird")
        path = build_dashboard(remote)
        assert path == "memory://dashtest/ird/dashboard/index.html"
        page = memory.cat_file("/dashtest/ird/dashboard/index.html").decode()
        assert 'id="history"' in page and "data:image/jpeg;base64," in page
        local, there = collect(dataset, seed=5), collect(remote, seed=5)
        assert there.reasons == local.reasons and there.sources == local.sources
        assert [t.image for t in there.kept_examples] == [t.image for t in local.kept_examples]
        assert [t.image is not None for t in there.rejected_examples] == [
            t.image is not None for t in local.rejected_examples
        ]
        assert there.problems == []
    finally:
        memory.rm("/dashtest", recursive=True)


def test_unreadable_shard_is_reported_on_the_page(dataset, tmp_path):
    copy = tmp_path / "ird"
    shutil.copytree(dataset.path, copy)
    shard = sorted((copy / "v2" / "shards").iterdir())[0]
    shard.write_bytes(shard.read_bytes()[:700])  # truncated mid-member
    text, page = _parse(build_dashboard(str(copy), kept_examples=40))
    assert "problems" in page.ids
    assert text.count(f"{shard}: ") == 1  # the message names the shard, once
    data = collect(Dataset(str(tmp_path), "ird"), kept_examples=40)
    broken = [t for t in data.kept_examples if t.image is None]
    assert broken and all(t.missing == "unreadable" for t in broken)
    assert len(data.kept_examples) > len(broken)  # the other shards still show


def test_minimal_version_without_funnel_or_scores(tmp_path):
    from tests.storage_helpers import make_samples, publish

    dataset = Dataset(str(tmp_path), "plain")
    publish(dataset, make_samples(5))
    data = collect(dataset)
    assert (data.candidates, data.new_kept, data.rejected, data.samples) == (5, 5, 0, 5)
    assert data.metrics == [] and data.clusters == [] and data.rejected_examples == []
    assert data.history[0].medians == {m: None for m in ("niqe", "brisque", "piqe", "nima")}
    text, page = _parse(build_dashboard(dataset))
    assert "No IQA scores in this version." in text and "No duplicates were dropped." in text
    assert len(page.images) == 5 and "problems" not in page.ids


def test_stage_timings_are_summed_and_shown_per_stage(tmp_path):
    """Partitions' stage_seconds and the dedupe phase add up in stats.json (with publish's
    own); the page's "Throughput per stage" table shows each stage's items and CPU, and a
    version published before stages were timed shows no such section."""
    dataset = Dataset(str(tmp_path), "timed")
    area = BuildArea(dataset, "t1")
    for p in range(2):
        samples = [_sample(f"t-{p}-{i}", i, SIZES[i]) for i in range(3)]
        timed = {
            "fetch": {"cpu_s": 0.25, "wall_s": 2.0, "count": 4},
            "iqa": {"cpu_s": 1.5 + p, "wall_s": 1.75 + p, "count": 3},
        }
        area.write_partition(
            f"web-{p:06d}",
            [(s, _row(s, "web", i)) for i, s in enumerate(samples)],
            [],
            {"candidates": 4, "stage_seconds": timed},
        )
    dedupe = {"dedupe": {"cpu_s": 0.5, "wall_s": 0.5, "count": 6}}
    version = publish_build(dataset, area, extra_stats={"stage_seconds": dedupe})
    stages = version.stats()["stage_seconds"]
    assert set(stages) == {"fetch", "iqa", "dedupe", "publish"}
    assert stages["fetch"] == {"cpu_s": 0.5, "wall_s": 4.0, "count": 8}
    assert stages["iqa"] == {"cpu_s": 4.0, "wall_s": 4.5, "count": 6}
    assert stages["dedupe"] == dedupe["dedupe"]
    assert stages["publish"]["count"] == 6 and stages["publish"]["cpu_s"] > 0

    data = collect(dataset)
    assert [row.stage for row in data.stages] == ["fetch", "iqa", "dedupe", "publish"]
    iqa = data.stages[1]
    assert (iqa.items, iqa.cpu_s, iqa.candidates) == (6, 4.0, 8)
    assert iqa.cpu_per_candidate == 0.5 and iqa.items_per_cpu_s == 1.5
    text, page = _parse(build_dashboard(dataset))
    assert "stages" in page.ids and "Throughput per stage" in text
    assert '<tr data-stage="iqa">' in text and 'data-v="0.5"' in text

    plain = Dataset(str(tmp_path), "plain")
    from tests.storage_helpers import make_samples, publish

    publish(plain, make_samples(2))
    assert collect(plain).stages == []
    assert 'id="stages"' not in _parse(build_dashboard(plain))[0]
