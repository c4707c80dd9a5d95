"""Image helpers shared by training and evaluation (the official protocol's crop)."""

from __future__ import annotations

import numpy as np

#: The official code center-crops every training and test image to a multiple of 16.
CROP_MULTIPLE = 16


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
