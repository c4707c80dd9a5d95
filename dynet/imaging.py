"""Image helpers shared by training, evaluation and restoration: decoding files to RGB, the
official protocol's crop and the conversions between uint8 H x W x 3 arrays and float
3 x H x W tensors in [0, 1]."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

#: The official code center-crops every training and test image to a multiple of 16.
CROP_MULTIPLE = 16


class UnreadableImageError(ValueError):
    """An image that cannot be read or decoded (the message names it)."""


def decode_rgb(data: bytes, name: str, error: type[Exception] = UnreadableImageError) -> np.ndarray:
    """Encoded image bytes as H x W x 3 uint8 RGB; bytes that do not decode raise ``error``.

    ``error`` lets each caller keep its own error family (training data, test data, inputs
    to restore) while the decoding stays one routine."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            return np.asarray(image.convert("RGB"))
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        raise error(f"cannot decode image {name}: {exc}") from exc


def read_rgb(
    path: Path,
    error: type[Exception] = UnreadableImageError,
    missing: type[Exception] | None = None,
    what: str = "image",
) -> np.ndarray:
    """An image file as H x W x 3 uint8 RGB.

    A file that cannot be read or decoded raises ``error``; a missing file raises ``missing``
    ("missing WHAT PATH") when given, else ``error`` too."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        if missing is not None:
            raise missing(f"missing {what} {path}") from None
        raise error(f"cannot read {what} {path}: no such file") from None
    except OSError as exc:
        raise error(f"cannot read {what} {path}: {exc}") from exc
    return decode_rgb(data, str(path), error)


def center_crop_multiple(
    image: np.ndarray, multiple: int = CROP_MULTIPLE, name: str = "image"
) -> np.ndarray:
    """Center-crop H and W down to multiples of ``multiple`` (the extra row goes at the bottom).

    Raises ValueError naming ``name`` when the image is smaller than one multiple.
    """
    h, w = image.shape[:2]
    new_h, new_w = h - h % multiple, w - w % multiple
    if new_h == 0 or new_w == 0:
        raise ValueError(f"{name} ({w}x{h}) is smaller than {multiple}x{multiple}")
    top, left = (h - new_h) // 2, (w - new_w) // 2
    return image[top : top + new_h, left : left + new_w]


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """H x W x 3 uint8 -> 3 x H x W float32 in [0, 1]."""
    # A read-only array (np.asarray of a Pillow image) is copied: torch refuses to share it.
    array = np.require(image, requirements=["C_CONTIGUOUS", "WRITEABLE"])
    return torch.from_numpy(array).permute(2, 0, 1).float().div_(255.0)


def to_uint8_image(image: torch.Tensor) -> np.ndarray:
    """3 x H x W float in [0, 1] (clamped) -> H x W x 3 uint8, rounded to nearest."""
    pixels = (image.clamp(0, 1) * 255.0).round().to(torch.uint8).permute(1, 2, 0)
    return np.ascontiguousarray(pixels.cpu().numpy())
