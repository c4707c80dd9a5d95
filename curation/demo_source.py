"""A small, honest demo source: real photographs bundled with scikit-image, plus the kinds of
candidate a scrape is full of (a near-duplicate copy, a blurred shot, a logo, a document page,
a thumbnail). Used by ``mird demo`` and the build tests; nothing is downloaded.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import skimage.data
from PIL import Image, ImageFilter

#: Real colour photographs that pass the default filters (the rocket fails NIQE's threshold).
PHOTOS = ("astronaut", "coffee", "chelsea", "immunohistochemistry", "rocket")


def _rgb(name: str) -> Image.Image:
    array = getattr(skimage.data, name)()
    if array.ndim == 2:
        array = np.stack([array] * 3, axis=-1)
    return Image.fromarray(np.ascontiguousarray(array[..., :3]).astype(np.uint8))


def _jpeg(image: Image.Image, quality: int = 92) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def demo_candidates() -> dict[str, tuple[bytes, str]]:
    """File name -> (bytes, the outcome a correct build gives it: "keep" or a reason)."""
    files: dict[str, tuple[bytes, str]] = {}
    for name in PHOTOS:
        outcome = "low_quality:niqe" if name == "rocket" else "keep"
        files[f"{name}.jpg"] = (_jpeg(_rgb(name)), outcome)
    astronaut = _rgb("astronaut")
    files["astronaut_copy.jpg"] = (_jpeg(astronaut.resize((480, 480)), 60), "near_duplicate_of")
    files["astronaut_exact.png"] = (files["astronaut.jpg"][0], "duplicate_of")
    files["coffee_blurred.jpg"] = (
        _jpeg(_rgb("coffee").filter(ImageFilter.GaussianBlur(4))),
        "blurry",
    )
    files["logo.png"] = (_png(_rgb("logo")), "graphic")
    files["page.png"] = (_png(_rgb("page")), "too_small")
    files["thumbnail.jpg"] = (_jpeg(_rgb("chelsea").resize((120, 80))), "too_small")
    return files


def write_demo_source(folder: Path) -> dict[str, str]:
    """Write the demo candidates into ``folder``; returns file name -> expected outcome."""
    folder.mkdir(parents=True, exist_ok=True)
    expected = {}
    for name, (data, outcome) in demo_candidates().items():
        (folder / name).write_bytes(data)
        expected[name] = outcome
    return expected
