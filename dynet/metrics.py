"""Full-reference image metrics for restoration: PSNR and SSIM, on RGB and on a luma channel.

The paper's protocol (the authors' public test code) scores RGB floats in [0, 1] with
scikit-image's defaults: ``peak_signal_noise_ratio(data_range=1)`` and
``structural_similarity(data_range=1, channel_axis=2)``, i.e. a 7x7 uniform window with sample
covariance, the per-channel means averaged. :func:`psnr` and :func:`ssim` compute exactly that
(tests check them against scikit-image); ``window="gaussian"`` gives Wang et al.'s 11x11
Gaussian (sigma 1.5) window with population covariance instead.

The other common convention in restoration papers scores only the Y channel of BT.601 YCbCr
(MATLAB's ``rgb2ycbcr``: Y in [16, 235] / 255) with the Gaussian-window SSIM; :func:`score_pair`
reports it in the separate ``psnr_y``/``ssim_y`` fields so the two never mix.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np
from scipy import ndimage

Window = Literal["uniform", "gaussian"]
LumaConvention = Literal["ycbcr", "luma"]

_SSIM_K1 = 0.01
_SSIM_K2 = 0.03
_UNIFORM_SIZE = 7
_GAUSSIAN_SIGMA = 1.5
_GAUSSIAN_TRUNCATE = 3.5  # radius int(3.5 * 1.5 + 0.5) = 5: the 11x11 window of Wang et al.


def as_float01(image: np.ndarray) -> np.ndarray:
    """An image as float64 in [0, 1]: uint8 is divided by 255, floats are taken as they are."""
    if image.dtype == np.uint8:
        return image.astype(np.float64) / 255.0
    if np.issubdtype(image.dtype, np.floating):
        return image.astype(np.float64, copy=False)
    raise TypeError(f"expected a uint8 or float image, got dtype {image.dtype}")


def rgb_to_y(image: np.ndarray, convention: LumaConvention = "ycbcr") -> np.ndarray:
    """The luma channel of an HxWx3 RGB image in [0, 1], as float64 in [0, 1].

    ``"ycbcr"``: BT.601 studio-range Y, ``(16 + 65.481 R + 128.553 G + 24.966 B) / 255``, the
    Y of MATLAB's ``rgb2ycbcr`` used by most restoration papers' "Y channel" numbers.
    ``"luma"``: full-range ``0.299 R + 0.587 G + 0.114 B`` (the Y of YIQ, MATLAB's ``rgb2gray``).
    """
    rgb = as_float01(image)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 RGB image, got shape {rgb.shape}")
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    if convention == "ycbcr":
        return (16.0 + 65.481 * r + 128.553 * g + 24.966 * b) / 255.0
    if convention == "luma":
        return 0.299 * r + 0.587 * g + 0.114 * b
    raise ValueError(f"unknown luma convention {convention!r}; use 'ycbcr' or 'luma'")


def _check_pair(reference: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if reference.shape != test.shape:
        raise ValueError(f"image shapes differ: {reference.shape} vs {test.shape}")
    return as_float01(reference), as_float01(test)


def psnr(reference: np.ndarray, test: np.ndarray, data_range: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB over all pixels and channels (inf for identical images)."""
    ref, out = _check_pair(reference, test)
    mse = float(np.mean((ref - out) ** 2, dtype=np.float64))
    if mse == 0.0:
        return float("inf")
    return float(10.0 * np.log10(data_range**2 / mse))


def _ssim_one_channel(ref: np.ndarray, out: np.ndarray, data_range: float, window: Window) -> float:
    if window == "uniform":
        size = _UNIFORM_SIZE

        def smooth(a: np.ndarray) -> np.ndarray:
            return ndimage.uniform_filter(a, size=size)

        # Sample covariance (scikit-image's default): n / (n - 1) over the 7x7 window.
        cov_norm = size * size / (size * size - 1.0)
    elif window == "gaussian":
        size = 2 * int(_GAUSSIAN_TRUNCATE * _GAUSSIAN_SIGMA + 0.5) + 1

        def smooth(a: np.ndarray) -> np.ndarray:
            return ndimage.gaussian_filter(
                a, sigma=_GAUSSIAN_SIGMA, truncate=_GAUSSIAN_TRUNCATE, mode="reflect"
            )

        cov_norm = 1.0  # population covariance, as in Wang et al. (2004)
    else:
        raise ValueError(f"unknown SSIM window {window!r}; use 'uniform' or 'gaussian'")
    if min(ref.shape) < size:
        raise ValueError(f"SSIM needs images of at least {size}x{size}, got {ref.shape}")

    mu_x, mu_y = smooth(ref), smooth(out)
    var_x = cov_norm * (smooth(ref * ref) - mu_x * mu_x)
    var_y = cov_norm * (smooth(out * out) - mu_y * mu_y)
    cov_xy = cov_norm * (smooth(ref * out) - mu_x * mu_y)
    c1 = (_SSIM_K1 * data_range) ** 2
    c2 = (_SSIM_K2 * data_range) ** 2
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov_xy + c2)) / (
        (mu_x * mu_x + mu_y * mu_y + c1) * (var_x + var_y + c2)
    )
    # The filter's radius is dropped at every border: there the window reads reflected pixels.
    pad = (size - 1) // 2
    return float(ssim_map[pad:-pad, pad:-pad].mean(dtype=np.float64))


def ssim(
    reference: np.ndarray,
    test: np.ndarray,
    data_range: float = 1.0,
    window: Window = "uniform",
) -> float:
    """Mean structural similarity of an HxW or HxWxC pair; channels are scored and averaged."""
    ref, out = _check_pair(reference, test)
    if ref.ndim == 2:
        return _ssim_one_channel(ref, out, data_range, window)
    if ref.ndim != 3:
        raise ValueError(f"expected an HxW or HxWxC image, got shape {ref.shape}")
    scores = [
        _ssim_one_channel(ref[..., c], out[..., c], data_range, window) for c in range(ref.shape[2])
    ]
    return float(np.mean(scores))


@dataclass(frozen=True)
class PairScores:
    """One restored image against its target: the protocol's RGB scores and the Y-channel ones."""

    psnr: float
    ssim: float
    psnr_y: float
    ssim_y: float

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def score_pair(target: np.ndarray, restored: np.ndarray) -> PairScores:
    """Score a restored HxWx3 image (uint8 or float in [0, 1]) against its clean target.

    ``psnr``/``ssim``: RGB in [0, 1], scikit-image defaults (the paper's protocol).
    ``psnr_y``/``ssim_y``: BT.601 YCbCr Y channel, SSIM with the 11x11 Gaussian window.
    """
    ref, out = _check_pair(target, restored)
    y_ref, y_out = rgb_to_y(ref), rgb_to_y(out)
    return PairScores(
        psnr=psnr(ref, out),
        ssim=ssim(ref, out),
        psnr_y=psnr(y_ref, y_out),
        ssim_y=ssim(y_ref, y_out, window="gaussian"),
    )
