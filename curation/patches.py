"""The patches product: fixed-size crops cut from a published version, versioned on their own.

The paper cuts about 8 M 512x512 patches from its 2 M images. Patches tile each image on a
grid (``stride`` apart, the last row/column flush with the border), skip flat ones by the same
gradient statistic the curation filters use, keep at most ``max_per_image`` (evenly spread over
the grid, so a cap does not keep only the top-left), and are stored losslessly by default.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable, Iterator
from typing import Literal

import numpy as np
from PIL import Image, ImageOps
from pydantic import BaseModel, ConfigDict, Field

from storage.errors import require_samples
from storage.shards import Sample
from storage.versions import Dataset, PublishedVersion

Image.MAX_IMAGE_PIXELS = 300_000_000  # published images were probed already; still bounded


class PatchConfig(BaseModel):
    """How the patches product cuts fixed-size crops from a published version."""

    model_config = ConfigDict(extra="forbid")

    size: int = Field(512, ge=16, description="Patch side in pixels (the paper: 512).")
    stride: int = Field(512, ge=8, description="Grid step; < size gives overlapping patches.")
    max_per_image: int = Field(8, ge=1, description="Cap per image (paper: ~4 on average).")
    format: Literal["png", "jpg", "webp"] = Field("png", description="png is lossless.")
    quality: int = Field(95, ge=1, le=100, description="For jpg/webp only.")
    flat_cell: int = Field(32, ge=4, description="Cell side for the flatness statistic.")
    flat_gradient: float = Field(
        2.0, description="Cells whose mean |gradient| is below this (0-255 scale) are flat."
    )
    max_flat_fraction: float = Field(
        0.5, ge=0, le=1, description="Skip patches with more flat cells than this (as LSDIR)."
    )
    max_shard_bytes: int = Field(
        1_000_000_000,
        ge=1,
        description="A shard is closed before a patch would take it past this many bytes "
        "(~1 GB; a single larger patch still gets its own shard).",
    )


def flat_fraction(gray: np.ndarray, cell: int, threshold: float) -> float:
    """Share of ``cell`` x ``cell`` cells whose mean absolute gradient is below ``threshold``."""
    gray = gray.astype(np.float32)
    gx = np.abs(np.diff(gray, axis=1))[:-1, :]
    gy = np.abs(np.diff(gray, axis=0))[:, :-1]
    grad = gx + gy
    rows, cols = grad.shape[0] // cell, grad.shape[1] // cell
    if rows == 0 or cols == 0:
        return float(grad.mean() < threshold)
    cells = grad[: rows * cell, : cols * cell].reshape(rows, cell, cols, cell).mean(axis=(1, 3))
    return float((cells < threshold).mean())


def grid_positions(length: int, size: int, stride: int) -> list[int]:
    if length < size:
        return []
    positions = list(range(0, length - size + 1, stride))
    if positions[-1] != length - size:
        positions.append(length - size)  # flush with the far border
    return positions


def _spread(items: list, count: int) -> list:
    if len(items) <= count:
        return items
    picks = np.linspace(0, len(items) - 1, count).round().astype(int)
    return [items[i] for i in picks]


def cut_patches(
    data: bytes, config: PatchConfig
) -> Iterator[tuple[tuple[int, int, int, int], bytes]]:
    """Yield (box, encoded patch) for one image's bytes; EXIF orientation applied first."""
    with Image.open(io.BytesIO(data)) as opened:
        image = ImageOps.exif_transpose(opened).convert("RGB")
    gray = np.asarray(image.convert("L"))
    boxes = [
        (x, y, x + config.size, y + config.size)
        for y in grid_positions(image.height, config.size, config.stride)
        for x in grid_positions(image.width, config.size, config.stride)
    ]
    textured = [
        box
        for box in boxes
        if flat_fraction(
            gray[box[1] : box[3], box[0] : box[2]], config.flat_cell, config.flat_gradient
        )
        <= config.max_flat_fraction
    ]
    for box in _spread(textured, config.max_per_image):
        buffer = io.BytesIO()
        crop = image.crop(box)
        if config.format == "png":
            crop.save(buffer, format="PNG", compress_level=6)
        elif config.format == "jpg":
            crop.save(buffer, format="JPEG", quality=config.quality, subsampling=0)
        else:
            crop.save(buffer, format="WEBP", quality=config.quality)
        yield box, buffer.getvalue()


def extract_patches(
    source: PublishedVersion,
    target: Dataset,
    config: PatchConfig | None = None,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> PublishedVersion:
    """Cut patches from every sample of ``source`` and publish them as a version of ``target``."""
    config = config or PatchConfig()
    require_samples(source, "cut patches from")
    total = source.manifest().num_rows
    images = skipped = 0
    with target.begin_version(max_shard_bytes=config.max_shard_bytes) as writer:
        for done, sample in enumerate(source.iter_samples(), start=1):
            images += 1
            produced = 0
            for box, encoded in cut_patches(sample.data, config):
                key = f"{sample.key}_{box[0]}_{box[1]}"
                meta = {"parent_key": sample.key, "crop_box": list(box), "source": source.uri}
                row = {
                    "source": source.uri,
                    "url": sample.meta.get("url"),
                    "license": sample.meta.get("license"),
                    "parent_key": sample.key,
                    "crop_box": list(box),
                    "sha256": hashlib.sha256(encoded).hexdigest(),
                    "width": config.size,
                    "height": config.size,
                }
                writer.write_sample(Sample(key, encoded, config.format, meta), row)
                produced += 1
            skipped += produced == 0
            if progress is not None:
                progress(done, total)
        return writer.publish(
            stats={
                "product": "patches",
                "parent_dataset": source.dataset.name,
                "parent_version": source.version,
                "images": images,
                "images_without_patches": skipped,
                "patch_config": config.model_dump(),
            },
            description=(
                f"{config.size}x{config.size} patches cut from {source.dataset.name} "
                f"{source.version}; each sample's metadata names its parent key and crop box."
            ),
        )
