"""A fast CPU path for the offline IQA metrics (NIQE, BRISQUE, PIQE), vectorised numpy/scipy.

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
subset of the three. pyiqa stays the reference (``tests/test_iqa_fast.py`` compares the two) and
the path for every other metric and for GPUs (``curation.quality``).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator, Mapping

import cv2
import numpy as np
from scipy.special import gammaln

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


def gaussian_blur(image: np.ndarray, padding: str) -> np.ndarray:
    """7x7 Gaussian (sigma 7/6), normalised to sum 1, float64; ``padding``: replicate or zero."""
    taps, _ = _separable_taps()
    return cv2.sepFilter2D(image, cv2.CV_64F, taps, taps, borderType=_BORDERS[padding])


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
    image64 = np.asarray(image, dtype=np.float64)
    flat = levels = None
    if np.dtype(dtype) == np.float32:
        levels = image64.astype(np.uint8)
        flat = flat_windows(levels, padding)
        table = flat_mscn_table()
    mu = gaussian_blur(image64, padding)
    second = gaussian_blur(image64 * image64, padding)
    window_sum = _separable_taps()[1] if np.dtype(dtype) == np.float64 else 1.0
    eps = np.finfo(dtype).eps
    coefficients = np.empty(image64.shape, dtype=dtype)
    step = max(1, CHUNK // max(1, image64.shape[1]))
    for start in range(0, image64.shape[0], step):
        rows = slice(start, start + step)
        m = mu[rows] * window_sum
        spread = second[rows] * window_sum
        spread -= m * m
        np.abs(spread, out=spread)
        spread += eps
        np.sqrt(spread, out=spread)
        spread += 1.0
        m -= image64[rows]
        m /= spread
        np.negative(m, out=coefficients[rows], casting="same_kind")
        if flat is not None:
            np.copyto(coefficients[rows], table[levels[rows]], where=flat[rows])
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


#: Elements per chunk of the row-wise reductions: small enough to stay in cache, and to keep
#: the temporaries off the allocator's release-and-fault-again cycle of image-sized arrays.
CHUNK = 1 << 15


def _column_chunks(samples: np.ndarray) -> Iterator[np.ndarray]:
    step = max(1, CHUNK // samples.shape[0])
    for start in range(0, samples.shape[1], step):
        yield samples[:, start : start + step]


def aggd_fit(samples: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Asymmetric GGD fit of each row of ``samples`` (n, m): (shape, left std, right std).

    The sums are taken in float64 whatever the samples' dtype; the shape is looked up in the
    table of the samples' dtype (float32 for BRISQUE, as pyiqa compares there).
    """
    grid, table, _ = _gamma_tables(samples.dtype.str)
    rows, width = samples.shape
    left_sum, total, plain_sum, left_plain = (np.zeros(rows) for _ in range(4))
    left_count = np.zeros(rows, dtype=np.int64)
    nonzero = np.zeros(rows, dtype=np.int64)
    for chunk in _column_chunks(samples):
        x = chunk.astype(np.float64)
        left = np.minimum(x, 0.0)
        left_sum += np.einsum("ij,ij->i", left, left)
        total += np.einsum("ij,ij->i", x, x)
        left_count += np.count_nonzero(left, axis=1)
        nonzero += np.count_nonzero(x, axis=1)
        plain_sum += x.sum(axis=1)
        left_plain += left.sum(axis=1)
    right_count = nonzero - left_count
    abs_mean = (plain_sum - 2.0 * left_plain) / width
    with np.errstate(divide="ignore", invalid="ignore"):
        left_std = np.sqrt(left_sum / left_count)
        right_std = np.sqrt((total - left_sum) / right_count)
        ratio = left_std / right_std
        rhat = abs_mean**2 / (total / width)
        rhat_norm = rhat * (ratio**3 + 1) * (ratio + 1) / (ratio**2 + 1) ** 2
    alpha = grid[nearest_in_table(table, rhat_norm)]
    return alpha, left_std, right_std


def ggd_fit(samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric GGD fit of each row of ``samples`` (n, m): (shape, sigma)."""
    grid, _, table = _gamma_tables(samples.dtype.str)
    width = samples.shape[1]
    sigma_sq = (samples * samples).sum(axis=1) / width
    mean_abs = np.abs(samples).sum(axis=1) / width
    with np.errstate(divide="ignore", invalid="ignore"):
        rho = sigma_sq / mean_abs**2
    return grid[nearest_in_table(table, -rho)], np.sqrt(sigma_sq)


def log_gamma_ratio(alpha: np.ndarray, a: float, b: float) -> np.ndarray:
    """``lgamma(a / alpha) - lgamma(b / alpha)``, float64."""
    alpha = np.asarray(alpha, dtype=np.float64)
    return gammaln(a / alpha) - gammaln(b / alpha)


# ---------------------------------------------------------------------------------- half scale

#: MATLAB's bicubic (a = -0.5) with antialiasing at scale 1/2: the cubic stretched 2x, at the
#: distances 1.75, 1.25, ..., -1.75 of the 8 input samples that reach each output sample.
_HALF_TAPS = np.array([-0.0234375, -0.0703125, 0.2265625, 0.8671875], dtype=np.float64)
HALF_SCALE_TAPS = np.concatenate([_HALF_TAPS, _HALF_TAPS[::-1]]) / 2.0


def _half_axis(image: np.ndarray, axis: int) -> np.ndarray:
    size = image.shape[axis]
    out_size = -(-size // 2)
    # Output i reads inputs 2i-3 .. 2i+4; beyond the edges MATLAB mirrors (edge sample repeated).
    pad = [(0, 0)] * image.ndim
    pad[axis] = (3, 2 * out_size + 4 - size - 1)
    padded = np.pad(image, pad, mode="symmetric")
    taps = HALF_SCALE_TAPS.astype(image.dtype)
    out = None
    for k, tap in enumerate(taps):
        index = [slice(None)] * image.ndim
        index[axis] = slice(k, k + 2 * out_size - 1, 2)
        term = padded[tuple(index)] * tap
        out = term if out is None else out + term
    return out


def half_scale(image: np.ndarray) -> np.ndarray:
    """MATLAB ``imresize(image, 0.5)`` (bicubic, antialiased): output ``ceil(h/2) x ceil(w/2)``.

    float32 (BRISQUE): rows then columns, taps summed in order, as pyiqa's ``imresize`` does,
    so the result is bit-identical (its near-flat windows' MSCN signs depend on the last bit).
    float64 (NIQE, which is insensitive to the last bits): one OpenCV separable filter at full
    resolution (mirrored edges), sampled at even positions.
    """
    if image.dtype == np.float32:
        return _half_axis(_half_axis(image, -2), -1)
    taps = HALF_SCALE_TAPS
    filtered = cv2.sepFilter2D(
        image, cv2.CV_64F, taps, taps, anchor=(3, 3), borderType=cv2.BORDER_REFLECT
    )
    return filtered[::2, ::2]


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
        # Build the lookup tables now (torch is imported for them), not inside the first score.
        flat_mscn_table()
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
