"""Small synthetic photographs for demos and tests (no download needed)."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image


def photo_like(width: int, height: int, seed: int) -> np.ndarray:
    """An RGB uint8 image with multi-scale texture, gradients and colour: photo statistics."""
    rng = np.random.default_rng(seed)
    out = np.zeros((height, width, 3), dtype=np.float32)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    for channel in range(3):
        plane = (xx / width) * rng.uniform(-80, 80) + (yy / height) * rng.uniform(-80, 80)
        for scale in (4, 16, 64):
            small = rng.normal(0, 1, (max(height // scale, 2), max(width // scale, 2)))
            layer = Image.fromarray(small.astype(np.float32), mode="F").resize(
                (width, height), Image.BICUBIC
            )
            plane += np.asarray(layer) * (60.0 / np.sqrt(scale))
        out[..., channel] = plane + rng.uniform(90, 160)
    return np.clip(out, 0, 255).astype(np.uint8)


def encode(image: np.ndarray, fmt: str = "JPEG", **kwargs) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()
