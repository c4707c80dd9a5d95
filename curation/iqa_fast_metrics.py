"""NIQE, BRISQUE and PIQE on the shared luma, with :mod:`curation.iqa_fast`'s primitives.

Each follows pyiqa 0.1.x's definition of the metric (the reference ``tests/test_iqa_fast.py``
compares against), including its precision: NIQE in float64, BRISQUE and PIQE in float32.

- NIQE (Mittal et al. 2013): the image cropped to whole 96x96 blocks; at two scales (the
  second the half-scale ``imresize``, blocks 48x48) the MSCN coefficients of each block give 18
  features (an AGGD fit of the block, and of its products with the block rolled by one pixel in
  four directions). The blocks' features (NaN-free rows for the covariance) form a Gaussian
  whose distance to the pristine one is ``sqrt(d' pinv((S_pris + S) / 2) d)``.
- BRISQUE (Mittal et al. 2012): the same 18 statistics over the whole image (GGD of the MSCN,
  AGGD of the four neighbour products, image rolled circularly) at two scales, scaled to
  [-1, 1] by the original feature ranges, through the epsilon-SVR: ``sum_i c_i exp(-g |x -
  sv_i|^2) - rho``.
- PIQE (Venkatanath et al. 2015): Y scaled by its maximum to 0..255, padded symmetrically,
  MSCN over 16x16 blocks: a block with variance over 0.1 is active; it is distorted by a
  noticeable artefact when a 6-sample segment of one of its edges has std under 0.1, or by
  noise when its std exceeds twice the centre/surround std contrast.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from curation.iqa_fast import (
    aggd_from_sums,
    ggd_from_sums,
    half_scale,
    log_gamma_ratio,
    mscn,
    mscn_torch32,
)
from curation.iqa_kernels import shifted_product_sums

NIQE_BLOCK = 96
#: Neighbour products: (row, column) rolls of the MSCN, as pyiqa applies them.
NIQE_SHIFTS = ((0, 1), (1, 0), (1, 1), (1, -1))
BRISQUE_SHIFTS = ((0, 1), (1, 0), (1, 1), (-1, 1))
_NIQE_SHIFTS = np.array(NIQE_SHIFTS, dtype=np.int64)
_BRISQUE_SHIFTS = np.array(BRISQUE_SHIFTS, dtype=np.int64)
#: The original BRISQUE feature ranges (MATLAB release), mapped to [-1, 1] before the SVR.
BRISQUE_RANGES = np.array(
    [
        [0.338, 10], [0.017204, 0.806612], [0.236, 1.642], [-0.123884, 0.20293],
        [0.000155, 0.712298], [0.001122, 0.470257], [0.244, 1.641], [-0.123586, 0.179083],
        [0.000152, 0.710456], [0.000975, 0.470984], [0.249, 1.555], [-0.135687, 0.100858],
        [0.000174, 0.684173], [0.000913, 0.534174], [0.258, 1.561], [-0.143408, 0.100486],
        [0.000179, 0.685696], [0.000888, 0.536508], [0.471, 3.264], [0.012809, 0.703171],
        [0.218, 1.046], [-0.094876, 0.187459], [1.5e-005, 0.442057], [0.001272, 0.40803],
        [0.222, 1.042], [-0.115772, 0.162604], [1.6e-005, 0.444362], [0.001374, 0.40243],
        [0.227, 0.996], [-0.117188, 0.098323], [3e-005, 0.531903], [0.001122, 0.369589],
        [0.228, 0.99], [-0.12243, 0.098658], [2.8e-005, 0.530092], [0.001118, 0.370399],
    ],
    dtype=np.float32,
)  # fmt: skip
#: The model's rbf gamma and bias (checked against the libsvm header by curation.iqa_convert).
BRISQUE_GAMMA = 0.05
BRISQUE_RHO = -153.591
PIQE_BLOCK = 16
PIQE_THRESHOLD = 0.1
PIQE_WINDOW = 6


def _packaged(metric: str) -> Path:
    from curation.quality import packaged_parameter_path

    return packaged_parameter_path(metric)


# ---------------------------------------------------------------------------------------- NIQE


def niqe_block_features(image: np.ndarray, size: int) -> np.ndarray:
    """(n, 18) NIQE features of the n whole ``size`` x ``size`` blocks of an MSCN image
    (row-major), float64: the AGGD fit of each block, and of its products with the block
    rolled by one pixel in each of :data:`NIQE_SHIFTS` (within the block, circularly)."""
    sums = shifted_product_sums(np.ascontiguousarray(image), size, size, _NIQE_SHIFTS)
    alpha, left, right = aggd_from_sums(sums, size * size, np.float64)
    spread = np.sqrt(np.exp(log_gamma_ratio(alpha, 1, 3)))
    beta_left, beta_right = left * spread, right * spread
    mean = (beta_right - beta_left) * np.exp(log_gamma_ratio(alpha, 2, 1))
    # the block itself: shape and the mean of its two spreads; each product: all four
    features = [alpha[:, 0], (beta_left[:, 0] + beta_right[:, 0]) / 2]
    for k in range(1, len(NIQE_SHIFTS) + 1):
        features += [alpha[:, k], mean[:, k], beta_left[:, k], beta_right[:, k]]
    return np.stack(features, axis=1)


class NIQEModel:
    """NIQE against a pristine multivariate Gaussian (``mu`` 36, ``cov`` 36x36)."""

    def __init__(self, mu: np.ndarray, cov: np.ndarray) -> None:
        self.mu = np.ravel(mu).astype(np.float64)
        self.cov = np.asarray(cov, dtype=np.float64)

    @classmethod
    def load(cls, path: str | Path | None = None) -> NIQEModel:
        """The model in a ``.mat`` with ``mu_prisparam`` and ``cov_prisparam`` (the packaged
        one by default)."""
        import scipy.io

        params = scipy.io.loadmat(path or _packaged("niqe"))
        return cls(params["mu_prisparam"], params["cov_prisparam"])

    def features(self, y255: np.ndarray) -> np.ndarray:
        """(blocks, 36) features of a 0..255 luma; no rows if it is under 96 px a side."""
        image = np.asarray(y255, dtype=np.float64)
        rows, cols = image.shape[0] // NIQE_BLOCK, image.shape[1] // NIQE_BLOCK
        image = image[: rows * NIQE_BLOCK, : cols * NIQE_BLOCK]
        if rows == 0 or cols == 0:
            return np.empty((0, 36))
        per_scale = []
        for scale in (1, 2):
            per_scale.append(niqe_block_features(mscn(image, "replicate"), NIQE_BLOCK // scale))
            if scale == 1:
                image = half_scale(image / 255.0) * 255.0
        return np.concatenate(per_scale, axis=1)

    def __call__(self, y255: np.ndarray) -> float:
        features = self.features(y255)
        if len(features) == 0:
            return math.nan
        valid = ~np.isnan(features)
        with np.errstate(invalid="ignore", divide="ignore"):
            mu = np.where(valid, features, 0).sum(axis=0) / valid.sum(axis=0)
        rows = features[valid.all(axis=1)]
        if len(rows) == 0 or not np.isfinite(mu).all():
            return math.nan
        cov = np.cov(rows, rowvar=False, ddof=1 if len(rows) > 1 else 0)
        pooled = (self.cov + cov) / 2
        if not np.isfinite(pooled).all():
            return math.nan
        inverse = np.linalg.pinv(pooled, rtol=max(pooled.shape) * np.finfo(np.float64).eps)
        diff = self.mu - mu
        return float(np.sqrt(diff @ inverse @ diff))


# ------------------------------------------------------------------------------------- BRISQUE


def brisque_features(y255: np.ndarray) -> np.ndarray:
    """The 36 BRISQUE features of a 0..255 luma (float32, as pyiqa computes them)."""
    image = np.asarray(y255, dtype=np.float32)
    features = []
    for scale in (1, 2):
        if scale == 1:
            coefficients = mscn(image, "zero", np.float32)
        else:
            coefficients = mscn_torch32(image, "zero")
        height, width = coefficients.shape
        sums = shifted_product_sums(coefficients, height, width, _BRISQUE_SHIFTS)[0]
        alpha, sigma = ggd_from_sums(sums[0], height * width, np.float32)
        if abs(float(sigma)) <= 1e-8:  # as pyiqa, which refuses a flat image
            raise ValueError("BRISQUE needs an image with non-zero variance")
        features += [alpha, sigma * sigma]
        alpha, left, right = aggd_from_sums(sums[1:], height * width, np.float32)
        # lgamma(2/a) - (lgamma(1/a) + lgamma(3/a)) / 2
        ratio = log_gamma_ratio(alpha, 2, 1) + log_gamma_ratio(alpha, 1, 3) / 2
        eta = (right - left) * np.exp(ratio).astype(np.float32)
        for k in range(len(BRISQUE_SHIFTS)):
            features += [alpha[k], eta[k], left[k] * left[k], right[k] * right[k]]
        if scale == 1:
            image = half_scale(image)
    return np.array(features, dtype=np.float32)


class BRISQUEModel:
    """The BRISQUE epsilon-SVR: support vectors (n, 36), their coefficients, gamma, rho."""

    def __init__(self, sv_coef: np.ndarray, sv: np.ndarray, gamma: float, rho: float) -> None:
        self.sv_coef = np.asarray(sv_coef, dtype=np.float32)
        self.sv = np.asarray(sv, dtype=np.float32)
        self.gamma, self.rho = gamma, rho

    @classmethod
    def load(cls, path: str | Path | None = None) -> BRISQUEModel:
        """The model in the ``torch.save``d ``(sv_coef, sv)`` pyiqa reads (the packaged one by
        default), with the original model's gamma and rho."""
        import torch

        sv_coef, sv = torch.load(path or _packaged("brisque"), weights_only=True)
        return cls(sv_coef.numpy(), sv.numpy(), BRISQUE_GAMMA, BRISQUE_RHO)

    def predict(self, features: np.ndarray) -> float:
        low, high = BRISQUE_RANGES[:, 0], BRISQUE_RANGES[:, 1]
        scaled = np.float32(-1) + np.float32(2) * (features - low) / (high - low)
        distance = ((scaled[None, :] - self.sv) ** 2).sum(axis=1)
        kernel = np.exp(-distance * np.float32(self.gamma))
        return float(kernel.astype(np.float64) @ self.sv_coef.astype(np.float64) - self.rho)

    def __call__(self, y255: np.ndarray) -> float:
        return self.predict(brisque_features(y255))


# ---------------------------------------------------------------------------------------- PIQE


def _window_std(values: np.ndarray, width: int) -> np.ndarray:
    """Sample std (ddof 1) of every ``width``-long run along the last axis (float64)."""
    runs = values.shape[-1] - width + 1
    squares = values * values
    s1 = sum(values[..., k : k + runs] for k in range(width))
    s2 = sum(squares[..., k : k + runs] for k in range(width))
    return np.sqrt(np.maximum(s2 - s1 * s1 / width, 0.0) / (width - 1))


def _std(s1: np.ndarray, s2: np.ndarray, count: int) -> np.ndarray:
    return np.sqrt(np.maximum(s2 - s1 * s1 / count, 0.0) / (count - 1))


def piqe(y: np.ndarray) -> float:
    """PIQE of a luma in [0, 1] (float32)."""
    y = np.asarray(y, dtype=np.float32)
    peak = y.max()
    if not peak > 0:
        return math.nan
    image = np.round(np.float32(255) * (y / peak))
    height, width = image.shape
    image = np.pad(image, ((0, height % PIQE_BLOCK), (0, width % PIQE_BLOCK)), mode="symmetric")
    rows, cols = image.shape[0] // PIQE_BLOCK, image.shape[1] // PIQE_BLOCK
    if rows == 0 or cols == 0:
        return math.nan
    size = PIQE_BLOCK
    coefficients = mscn(image, "replicate", np.float32)[: rows * size, : cols * size]
    blocks = coefficients.astype(np.float64).reshape(rows, size, cols, size)
    # Per block and column (rows, cols, 16): sums of the values and of their squares.
    column_sums = blocks.sum(axis=1)
    column_squares = np.einsum("rycx,rycx->rcx", blocks, blocks)
    variance = _std(column_sums.sum(-1), column_squares.sum(-1), size * size) ** 2
    active = variance > PIQE_THRESHOLD

    # Noise: the block's std against the contrast of its centre (columns 7 and 8) with its
    # surround, which pyiqa takes as every column but 7 and 9 (it drops column 7, then the
    # column at index 8 of what is left).
    sigma = np.sqrt(variance)
    centre_cols, surround_cols = [7, 8], [c for c in range(size) if c not in (7, 9)]
    centre = _std(
        column_sums[..., centre_cols].sum(-1), column_squares[..., centre_cols].sum(-1), 2 * size
    )
    surround = _std(
        column_sums[..., surround_cols].sum(-1),
        column_squares[..., surround_cols].sum(-1),
        (size - 2) * size,
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        contrast = np.nan_to_num(centre / surround, posinf=np.finfo(np.float32).max)
        beta = np.abs(sigma - contrast) / np.maximum(sigma, contrast)
    noisy = sigma > 2 * beta

    # Noticeable artefacts: a 6-sample run along one of the block's four edges with std < 0.1.
    last = size - 1
    edges = np.stack(
        [
            blocks[:, 0, :, :],
            blocks[:, :, :, last].transpose(0, 2, 1),
            blocks[:, last, :, :],
            blocks[:, :, :, 0].transpose(0, 2, 1),
        ],
        axis=2,
    )
    threshold = float(np.float32(PIQE_THRESHOLD))
    impaired = (_window_std(edges, PIQE_WINDOW) < threshold).any(axis=(2, 3))

    distortion = active * impaired * (1 - variance) + active * noisy * variance
    return float((distortion.sum() + 1) / (1 + active.sum()) * 100)
