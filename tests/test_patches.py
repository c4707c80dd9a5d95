"""Patches from a published version: grid, flat skip, cap, metadata, their own version."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from curation.patches import PatchConfig, cut_patches, extract_patches, grid_positions
from flows.demo.data import encode, photo_like
from storage.shards import Sample
from storage.verify import verify_version
from storage.versions import Dataset
from tests.storage_helpers import row_for


def test_grid_positions_cover_the_border():
    assert grid_positions(100, 32, 32) == [0, 32, 64, 68]
    assert grid_positions(64, 32, 32) == [0, 32]
    assert grid_positions(31, 32, 32) == []


def test_flat_patches_skipped_and_cap_spread():
    textured = photo_like(256, 128, seed=1)
    textured[:, 128:] = 200  # right half flat
    config = PatchConfig(size=64, stride=64, max_per_image=100)
    boxes = [box for box, _ in cut_patches(encode(textured, "PNG"), config)]
    assert boxes and all(box[0] < 128 for box in boxes)  # only the textured half
    capped = [
        b
        for b, _ in cut_patches(
            encode(textured, "PNG"), config.model_copy(update={"max_per_image": 2})
        )
    ]
    assert len(capped) == 2 and capped[0] != capped[1]


def test_patches_are_lossless_crops():
    image = photo_like(128, 128, seed=2)
    for box, data in cut_patches(encode(image, "PNG"), PatchConfig(size=64, stride=64)):
        patch = np.asarray(Image.open(io.BytesIO(data)))
        assert np.array_equal(patch, image[box[1] : box[3], box[0] : box[2]])


def test_extract_patches_publishes_a_version(tmp_path):
    source_ds = Dataset(str(tmp_path), "ird")
    with source_ds.begin_version() as writer:
        for i in range(3):
            sample = Sample(f"img-{i}", encode(photo_like(200, 150, seed=i), "PNG"), "png", {})
            writer.write_sample(sample, row_for(sample))
        source = writer.publish()
    patches = extract_patches(
        source, Dataset(str(tmp_path), "ird-patches"), PatchConfig(size=64, stride=64)
    )
    manifest = patches.manifest().to_pylist()
    assert len(manifest) == 3 * 8  # 4 x 3 grid per image, capped at 8
    assert {row["parent_key"] for row in manifest} == {"img-0", "img-1", "img-2"}
    first = next(patches.iter_samples())
    assert (
        first.meta["parent_key"] in {"img-0", "img-1", "img-2"} and len(first.meta["crop_box"]) == 4
    )
    assert patches.stats()["parent_version"] == "v1"
    assert verify_version(patches).ok


def test_cli_patches(tmp_path):
    import subprocess
    import sys

    source_ds = Dataset(str(tmp_path), "ird")
    with source_ds.begin_version() as writer:
        sample = Sample("img-0", encode(photo_like(130, 130, seed=5), "PNG"), "png", {})
        writer.write_sample(sample, row_for(sample))
        writer.publish()
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "flows.cli",
            "patches",
            str(tmp_path / "ird"),
            "--size",
            "64",
            "--format",
            "jpg",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    assert "4 patches from 1 images" in run.stdout
    manifest = Dataset(str(tmp_path), "ird-patches").version().manifest()
    assert set(manifest.column("format").to_pylist()) == {"jpg"}
    bad = subprocess.run(
        [sys.executable, "-m", "flows.cli", "patches", str(tmp_path / "nope")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert bad.returncode == 2 and "no such dataset" in bad.stderr
