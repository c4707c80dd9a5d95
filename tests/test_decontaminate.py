"""Test sets kept out of the dataset: near copies of a test image are rejected, by name."""

from __future__ import annotations

import io
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

from curation.build import plan_build, run_build
from curation.build_options import merge_options
from curation.config import BuildConfig
from curation.decontaminate import TestSetError, test_set_index
from curation.hashing import perceptual_hash64
from curation.quality import open_reduced
from flows.demo.source import write_demo_source
from tests.real_images import REAL_PHOTOS, real_photo


def _jpeg(image: Image.Image, quality: int) -> bytes:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def _copies(image: Image.Image) -> dict[str, bytes]:
    """Near copies a crawl meets: resized both ways, recompressed, both at once."""
    w, h = image.size
    return {
        "half_q90": _jpeg(image.resize((w // 2, h // 2), Image.Resampling.LANCZOS), 90),
        "double_q75": _jpeg(image.resize((w * 2, h * 2), Image.Resampling.BICUBIC), 75),
        "same_q50": _jpeg(image, 50),
        "x1.5_q60": _jpeg(image.resize((w * 3 // 2, h * 3 // 2), Image.Resampling.BILINEAR), 60),
    }


def _test_set(root: Path, names: tuple[str, ...]) -> Path:
    """``root/test`` in the layout ``mird evaluate`` reads: clean PNGs in denoise/bsd68."""
    folder = root / "test" / "denoise" / "bsd68"
    folder.mkdir(parents=True)
    for name in names:
        real_photo(name).save(folder / f"{name}.png")
    return root / "test"


def test_recall_on_resized_and_recompressed_copies(tmp_path: Path) -> None:
    test_root = _test_set(tmp_path, REAL_PHOTOS)
    index = test_set_index([str(test_root)])
    assert index.summary() == [{"uri": str(test_root), "images": len(REAL_PHOTOS)}]
    for name in REAL_PHOTOS:
        for kind, data in _copies(real_photo(name)).items():
            image, bits = index.nearest(perceptual_hash64(open_reduced(data, 1024)))
            assert image.endswith(f"/{name}.png") and bits <= 4, (name, kind, bits)
    # and distinct photographs stay apart: no false overlap among the test images themselves
    hashes = [int(h) for h in index.hashes]
    apart = [bin(a ^ b).count("1") for i, a in enumerate(hashes) for b in hashes[i + 1 :]]
    assert min(apart) > 4


def test_build_rejects_copies_of_test_images_and_the_card_says_so(tmp_path: Path) -> None:
    source = tmp_path / "src"
    expected = write_demo_source(source)
    test_root = _test_set(tmp_path, ("chelsea",))
    # the crawl holds a resized, recompressed copy of the test image
    chelsea = real_photo("chelsea")
    w, h = chelsea.size
    (source / "cat_copy.jpg").write_bytes(_jpeg(chelsea.resize((w * 2, h * 2)), 80))
    data, _ = merge_options(
        None,
        sources=[str(source)],
        exclude=[str(test_root)],
        overrides={"root": str(tmp_path / "out"), "name": "ird"},
    )
    data["curation"].update(probe={"min_side": 256}, partition_size=8)
    data["quality"] = {"max_side": 512}
    version = run_build(BuildConfig.model_validate(data))
    rejects = {r["url"].rsplit("/", 1)[-1]: r for r in version.rejects().to_pylist()}
    for name in ("cat_copy.jpg", "chelsea.jpg"):
        assert rejects[name]["reason"] == "test_set_overlap", name
        assert rejects[name]["detail"].endswith(f"{test_root}/denoise/bsd68/chelsea.png")
    overlap = Counter(r["reason"] for r in rejects.values())["test_set_overlap"]
    assert overlap == 2  # nothing else is taken for a test image
    assert expected["chelsea.jpg"] == "keep"  # kept, were it not a test image
    stats = version.stats()["test_sets"]
    assert stats["checked"] == [{"uri": str(test_root), "images": 1}]
    card = (Path(version.uri) / "card.md").read_text()
    assert "Checked against 1 test set(s)" in card and "clean of these test sets" in card
    assert f"`{test_root}` (1 images)" in card


def test_missing_or_empty_test_set_fails_before_any_fetch(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.jpg").write_bytes(_jpeg(real_photo("coffee"), 90))
    for test_set, message in ((tmp_path / "nope", "no such"), (tmp_path / "empty", "no image")):
        config = BuildConfig.model_validate(
            {
                "root": str(tmp_path / "out"),
                "curation": {"sources": [{"uri": str(tmp_path / "src")}]},
                "dedupe": {"test_sets": [str(test_set)]},
            }
        )
        with pytest.raises(TestSetError, match=message):
            plan_build(config)
