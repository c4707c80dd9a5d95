"""A fast CPU path for the offline IQA metrics (NIQE, BRISQUE, PIQE): numpy, and numba loops.

The same statistics pyiqa 0.1.x computes, with the same preprocessing, written once here for
whole images and stacks of blocks at a time instead of pyiqa's per-op torch graph:

- luma: the Y of YIQ from the float32 RGB in [0, 1] the pyiqa path receives (computed once per
  image and shared by the three metrics); NIQE and BRISQUE round it to 0..255.
- MSCN coefficients: ``(I - mu) / (sigma + 1)`` with ``mu``, ``sigma`` from a 7x7 Gaussian
  window (sigma 7/6; separable, so two 1-D passes), edges replicated (NIQE, PIQE) or zero
  (BRISQUE), ``sigma = sqrt(|E[I^2] - mu^2| + eps)``.
- (A)GGD moment matching: the shape is the entry of the 0.2:0.001:10 gamma table whose moment
  ratio is nearest the sample's (a binary search in the monotone table, not a full scan).
- the half scale: MATLAB's antialiased bicubic ``imresize(I, 0.5)`` -- an 8-tap kernel at
  stride 2 on a symmetrically padded image (:func:`half_scale`).

NIQE (Mahalanobis distance to the pristine model) and BRISQUE (the libsvm epsilon-SVR) are in
:mod:`curation.iqa_fast_metrics` together with PIQE; :class:`FastIQA` scores an image with any
subset of the three. The image-sized passes (the MSCN, the (A)GGD sums of the coefficients and
of their neighbour products, the half scale) are compiled loops in :mod:`curation.iqa_kernels`.
pyiqa stays the reference (``tests/test_iqa_fast.py`` compares the two) and the path for every
other metric and for GPUs (``curation.quality``).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping

import cv2
import numpy as np
from scipy.special import gammaln

from curation import iqa_kernels as kernels

#: The metrics this module computes (``curation.quality.FAST_METRICS``).
FAST_METRICS: tuple[str, ...] = ("niqe", "brisque", "piqe")

#: Y of YIQ (pyiqa's ``rgb2yiq``, first row).
_YIQ_Y = (0.299, 0.587, 0.114)


# --------------------------------------------------------------------------------------- luma


@functools.cache
def _luma_tables() -> np.ndarray:
    """(3, 256) float32: ``float32(v / 255) * float32(w)`` for each channel weight w."""
    unit = np.arange(256, dtype=np.float32) / np.float32(255.0)
    return np.stack([unit * np.float32(w) for w in _YIQ_Y])


def luma(image) -> np.ndarray:
    """Y of YIQ, float32 in [0, 1], of an RGB image (PIL, or (H, W, 3) uint8 or float array).

    pyiqa's input is the float32 ``v / 255``; the weighted products are summed in float32 in its
    matmul's order, so that Y * 255 rounds to the same integers (uint8 input: by table lookup).
    """
    array = np.asarray(image)
    if array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"expected an RGB image, got an array of shape {array.shape}")
    if array.dtype == np.uint8:
        tables = _luma_tables()
        return (tables[0][array[..., 0]] + tables[1][array[..., 1]]) + tables[2][array[..., 2]]
    rgb = array.astype(np.float32, copy=False)
    weights = [np.float32(w) for w in _YIQ_Y]
    return (rgb[..., 0] * weights[0] + rgb[..., 1] * weights[1]) + rgb[..., 2] * weights[2]


def luma_255(y: np.ndarray) -> np.ndarray:
    """Y scaled to 0..255 and rounded (half to even, as torch rounds), float32."""
    return np.round(y * np.float32(255.0))


# ---------------------------------------------------------------------------------------- MSCN


def gaussian_window(size: int = 7, sigma: float = 7.0 / 6) -> np.ndarray:
    """MATLAB's ``fspecial('gaussian', size, sigma)`` as pyiqa holds it: float64 maths, float32
    values (so it sums to ``1 + 1.1e-8``, not 1; see :func:`mscn`)."""
    offsets = np.arange(size, dtype=np.float64) - (size - 1) / 2
    window = np.exp(-(offsets[:, None] ** 2 + offsets[None, :] ** 2) / (2.0 * sigma * sigma))
    window[window < np.finfo(np.float64).eps * window.max()] = 0
    return (window / window.sum()).astype(np.float32)


@functools.cache
def _separable_taps() -> tuple[np.ndarray, float]:
    """The window's exact (float64) 1-D factor, and the float32 window's sum."""
    offsets = np.arange(7, dtype=np.float64) - 3
    taps = np.exp(-(offsets * offsets) / (2.0 * (7.0 / 6) ** 2))
    return taps / taps.sum(), float(gaussian_window().astype(np.float64).sum())


@functools.cache
def flat_mscn_table() -> np.ndarray:
    """MSCN value of a window of constant value c = 0..255, as pyiqa's float32 path gets it.

    In exact arithmetic it is 0; in pyiqa's float32 convolution it is a few ulps of c, whose
    sign puts all such pixels on one side of the AGGD fits' left/right split (and their
    products on the other). On an image with large flat areas (a quantised or clipped one)
    that moves BRISQUE by several points, so flat windows take this value, computed once with
    the same torch convolution.

    The convolution runs on ONE image, as pyiqa's does: 256 bands of 7 rows, band c of value c,
    each band's middle row read off. A batch of 256 constant 7x7 patches is not the same
    computation: with AVX-512, torch picks another kernel for it whose sums round differently
    (34 non-zero residues against 203 on one image), and BRISQUE then moved by 1.6 points on a
    calibration image.
    """
    import torch
    import torch.nn.functional as F

    torch_dtype = torch.float32
    window = torch.from_numpy(gaussian_window()).to(torch_dtype)[None, None]
    values = torch.arange(256, dtype=torch_dtype)
    bands = values.repeat_interleave(7)[:, None].expand(256 * 7, 7).contiguous()[None, None]
    with torch.inference_mode():
        mu = F.conv2d(bands, window)[0, 0, ::7, 0]
        second = F.conv2d(bands * bands, window)[0, 0, ::7, 0]
        sigma = torch.sqrt((second - mu * mu).abs() + torch.finfo(torch_dtype).eps)
        table = (values - mu) / (sigma + 1)
    return table.numpy()


_BORDERS = {"replicate": cv2.BORDER_REPLICATE, "zero": cv2.BORDER_CONSTANT}
_SQUARE7 = np.ones((7, 7), np.uint8)


def flat_windows(image: np.ndarray, padding: str) -> np.ndarray:
    """Where the 7x7 window around a pixel (padding included) of a uint8 image is constant."""
    border = {"borderType": _BORDERS[padding], "borderValue": 0}
    return cv2.erode(image, _SQUARE7, **border) == cv2.dilate(image, _SQUARE7, **border)


def mscn_torch32(image: np.ndarray, padding: str) -> np.ndarray:
    """float32 MSCN with pyiqa's own arithmetic: torch's float32 convolution of the 7x7 window.

    Bit-identical to pyiqa's for one image, and about 4x the cost of :func:`mscn`, so it is used
    only where float32 rounding decides signs: BRISQUE's half scale, whose non-integer pixels
    make near-flat windows whose coefficients are rounding residue (their signs move the AGGD
    split; :func:`flat_mscn_table` covers the integer full scale).
    """
    import torch
    import torch.nn.functional as F

    x = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None, None]
    window = torch.from_numpy(gaussian_window())[None, None]
    mode = "replicate" if padding == "replicate" else "constant"
    with torch.inference_mode():
        mu = F.conv2d(F.pad(x, (3, 3, 3, 3), mode=mode), window)
        second = F.conv2d(F.pad(x * x, (3, 3, 3, 3), mode=mode), window)
        sigma = torch.sqrt((second - mu * mu).abs() + torch.finfo(torch.float32).eps)
        return ((x - mu) / (sigma + 1))[0, 0].numpy()


def mscn(image: np.ndarray, padding: str, dtype=np.float64) -> np.ndarray:
    """Mean-subtracted contrast-normalised coefficients, as pyiqa computes them in ``dtype``.

    ``(I - mu) / (sqrt(|E[I^2] - mu^2| + eps) + 1)``, the moments over the float32 Gaussian
    window. float64 (NIQE): the window's sum ``S = 1 + 1.1e-8`` is kept (mu and E[I^2] scaled
    by it), which is what a flat window's coefficient is made of: ``c (1 - S) / ...``.
    float32 (BRISQUE, PIQE; ``image`` holds integers 0..255): the moments are computed in
    float64 and flat windows take :func:`flat_mscn_table`'s value, pyiqa's float32 residue.
    """
    image = np.asarray(image)
    if image.dtype not in (np.float32, np.float64):
        image = image.astype(np.float64)
    flat, levels, table = kernels.NO_FLAT, kernels.NO_LEVELS, flat_mscn_table()
    if np.dtype(dtype) == np.float32:
        levels = image.astype(np.uint8)
        flat = flat_windows(levels, padding)
    taps, float32_window_sum = _separable_taps()
    window_sum = float32_window_sum if np.dtype(dtype) == np.float64 else 1.0
    coefficients = np.empty(image.shape, dtype=dtype)
    eps = float(np.finfo(dtype).eps)
    zero = padding == "zero"
    kernels.mscn(image, taps, zero, window_sum, eps, coefficients, levels, flat, table)
    return coefficients


# ------------------------------------------------------------------------ moment matching


@functools.cache
def _gamma_tables(dtype: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The shape grid 0.2:0.001:10 and both moment-ratio tables, in ``dtype``, increasing.

    The grid is float32 ``arange`` values (as pyiqa builds it) cast to ``dtype``; the tables:
    AGGD ``r(g) = G(2/g)^2 / (G(1/g) G(3/g))`` (increasing) and the negated GGD ratio
    ``-1 / r(g)`` (GGD's ``G(1/g) G(3/g) / G(2/g)^2`` decreases; negated, it increases).
    """
    count = 9801
    grid64 = 0.2 + 0.001 * np.arange(count)
    # torch.arange in float32 lands within one float32 ulp of these; build the grid with torch
    # when it is importable so that the chosen shapes are bit-identical to pyiqa's.
    try:
        import torch

        grid = torch.arange(0.2, 10 + 0.001, 0.001).numpy().astype(dtype)
    except ImportError:  # pragma: no cover - torch is a dependency of the project
        grid = grid64.astype(np.float32).astype(dtype)
    g = grid.astype(np.float64)
    log_ratio = 2 * gammaln(2.0 / g) - (gammaln(1.0 / g) + gammaln(3.0 / g))
    aggd = np.exp(log_ratio).astype(dtype)
    ggd = (-np.exp(-log_ratio)).astype(dtype)
    return grid, aggd, ggd


def nearest_in_table(table: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Index of the entry of an increasing ``table`` nearest each value (first on a tie).

    The same choice as ``argmin(|table - value|)``, including its answer 0 for NaN.
    """
    values = np.asarray(values, dtype=table.dtype)
    right = np.clip(np.searchsorted(table, values, side="left"), 0, len(table) - 1)
    left = np.clip(right - 1, 0, None)
    take_left = np.abs(table[left] - values) <= np.abs(table[right] - values)
    index = np.where(take_left, left, right)
    return np.where(np.isnan(values), 0, index)


def aggd_from_sums(
    sums: np.ndarray, width: int, dtype: np.dtype
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The AGGD fit (shape, left std, right std) from (..., 6) :data:`kernels.SUM_FIELDS` of
    ``width`` samples each; the shape from the moment-ratio table of ``dtype``."""
    grid, table, _ = _gamma_tables(np.dtype(dtype).str)
    left_squares, squares, left_count, nonzero, total, left_total = np.moveaxis(sums, -1, 0)
    right_count = nonzero - left_count
    abs_mean = (total - 2.0 * left_total) / width
    with np.errstate(divide="ignore", invalid="ignore"):
        left_std = np.sqrt(left_squares / left_count)
        right_std = np.sqrt((squares - left_squares) / right_count)
        ratio = left_std / right_std
        rhat = abs_mean**2 / (squares / width)
        rhat_norm = rhat * (ratio**3 + 1) * (ratio + 1) / (ratio**2 + 1) ** 2
    alpha = grid[nearest_in_table(table, rhat_norm)]
    return alpha, left_std, right_std


def ggd_from_sums(sums: np.ndarray, width: int, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    """The symmetric GGD fit (shape, sigma) from (..., 6) :data:`kernels.SUM_FIELDS` of
    ``width`` samples each; the shape from the moment-ratio table of ``dtype``."""
    grid, _, table = _gamma_tables(np.dtype(dtype).str)
    squares, total, left_total = sums[..., 1], sums[..., 4], sums[..., 5]
    sigma_sq = squares / width
    mean_abs = (total - 2.0 * left_total) / width
    with np.errstate(divide="ignore", invalid="ignore"):
        rho = sigma_sq / mean_abs**2
    return grid[nearest_in_table(table, -rho)], np.sqrt(sigma_sq).astype(dtype)


def log_gamma_ratio(alpha: np.ndarray, a: float, b: float) -> np.ndarray:
    """``lgamma(a / alpha) - lgamma(b / alpha)``, float64."""
    alpha = np.asarray(alpha, dtype=np.float64)
    return gammaln(a / alpha) - gammaln(b / alpha)


# ---------------------------------------------------------------------------------- half scale

#: MATLAB's bicubic (a = -0.5) with antialiasing at scale 1/2: the cubic stretched 2x, at the
#: distances 1.75, 1.25, ..., -1.75 of the 8 input samples that reach each output sample.
_HALF_TAPS = np.array([-0.0234375, -0.0703125, 0.2265625, 0.8671875], dtype=np.float64)
HALF_SCALE_TAPS = np.concatenate([_HALF_TAPS, _HALF_TAPS[::-1]]) / 2.0


def half_scale(image: np.ndarray) -> np.ndarray:
    """MATLAB ``imresize(image, 0.5)`` (bicubic, antialiased): output ``ceil(h/2) x ceil(w/2)``.

    Rows then columns, the 8 taps added in order in the image's dtype, as pyiqa's ``imresize``
    does: in float32 (BRISQUE) the result is bit-identical (its near-flat windows' MSCN signs
    depend on the last bit). Only the even output positions are computed.
    """
    image = np.asarray(image)
    height, width = image.shape
    out = np.empty((-(-height // 2), -(-width // 2)), dtype=image.dtype)
    # output i reads inputs 2i-3 .. 2i+4
    kernels.half_scale(image, HALF_SCALE_TAPS.astype(image.dtype), 3, out)
    return out


# ----------------------------------------------------------------------------------- scoring


class FastIQA:
    """Scores RGB images with the fast NIQE / BRISQUE / PIQE, sharing the luma between them."""

    def __init__(
        self,
        metrics: Iterable[str] = FAST_METRICS,
        parameters: Mapping[str, str] | None = None,
    ) -> None:
        from curation import iqa_fast_metrics as fm

        self.metrics = tuple(metrics)
        unknown = set(self.metrics) - set(FAST_METRICS)
        if unknown:
            raise ValueError(f"no fast path for IQA metric(s) {sorted(unknown)}")
        parameters = dict(parameters or {})
        self._scorers = {}
        for name in self.metrics:
            if name == "niqe":
                self._scorers[name] = fm.NIQEModel.load(parameters.get("niqe"))
            elif name == "brisque":
                self._scorers[name] = fm.BRISQUEModel.load(parameters.get("brisque"))
            else:
                self._scorers[name] = fm.piqe
        # Build the lookup tables now (torch is imported for them) and compile the loops (or
        # load them from numba's cache), not inside the first score.
        flat_mscn_table()
        kernels.warm_up()
        for dtype in (np.float32, np.float64):
            _gamma_tables(np.dtype(dtype).str)

    def score(self, image) -> dict[str, float]:
        """``{metric: score}`` of one image (PIL image or (H, W, 3) uint8 / float array in
        [0, 1]); NaN for a metric that cannot measure it (flat, or too small for NIQE)."""
        if hasattr(image, "convert"):  # a PIL image, in whatever mode
            image = image.convert("RGB")
        y = luma(image)
        y255 = luma_255(y) if {"niqe", "brisque"} & set(self.metrics) else None
        scores = {}
        for name, scorer in self._scorers.items():
            try:
                value = float(scorer(y if name == "piqe" else y255))
            except (ValueError, FloatingPointError, np.linalg.LinAlgError):
                value = float("nan")
            scores[name] = value if np.isfinite(value) else float("nan")
        return scores
