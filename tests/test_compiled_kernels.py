"""The compiled loops (numba) against the numpy formulations they replace.

``curation.iqa_kernels`` and the focus map of ``curation.measures`` each fuse what numpy did in
several passes; these tests keep the numpy versions as the reference: the (A)GGD sums of an
image and of its products with its rolled copies, the MSCN (against pyiqa's own, in
``test_iqa_fast``, and here against OpenCV's separable filter), the half scale, and the focus
map's tile sums, integer-exact.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from curation import iqa_kernels, measures
from curation.iqa_fast import HALF_SCALE_TAPS, _separable_taps, half_scale, mscn

SHIFTS = ((0, 1), (1, 0), (1, 1), (1, -1), (-1, 1))


def reference_sums(samples: np.ndarray) -> np.ndarray:
    """The six sums of ``iqa_kernels.SUM_FIELDS``, by plain numpy in float64."""
    x = samples.astype(np.float64).ravel()
    negative = x < 0
    return np.array(
        [
            (x[negative] ** 2).sum(),
            (x**2).sum(),
            negative.sum(),
            (x != 0).sum(),
            x.sum(),
            x[negative].sum(),
        ]
    )


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("shape", "block"), [((96, 192), (48, 48)), ((37, 53), (37, 53))])
def test_shifted_product_sums_equal_numpy_with_rolled_blocks(dtype, shape, block) -> None:
    rng = np.random.default_rng(7)
    image = rng.standard_normal(shape).astype(dtype)
    image[rng.random(shape) < 0.1] = 0  # zeros count in neither side
    got = iqa_kernels.shifted_product_sums(image, *block, np.array(SHIFTS, dtype=np.int64))
    rows, cols = shape[0] // block[0], shape[1] // block[1]
    assert got.shape == (rows * cols, 1 + len(SHIFTS), 6)
    for index in range(rows * cols):
        r, c = divmod(index, cols)
        part = image[r * block[0] : (r + 1) * block[0], c * block[1] : (c + 1) * block[1]]
        expected = [reference_sums(part)]
        for shift in SHIFTS:  # the product in the image's dtype, as pyiqa takes it
            expected.append(reference_sums(part * np.roll(part, shift, axis=(0, 1))))
        np.testing.assert_allclose(got[index], np.array(expected), rtol=1e-12, atol=1e-9)


@pytest.mark.parametrize("padding", ["replicate", "zero"])
def test_mscn_equals_the_separable_filter_formulation(padding) -> None:
    rng = np.random.default_rng(3)
    image = np.round(rng.uniform(0, 255, (61, 83)))
    image[10:30, 20:50] = 128  # flat windows
    taps, window_sum = _separable_taps()
    border = cv2.BORDER_REPLICATE if padding == "replicate" else cv2.BORDER_CONSTANT
    mu = cv2.sepFilter2D(image, cv2.CV_64F, taps, taps, borderType=border) * window_sum
    second = cv2.sepFilter2D(image * image, cv2.CV_64F, taps, taps, borderType=border)
    spread = np.sqrt(np.abs(second * window_sum - mu * mu) + np.finfo(np.float64).eps) + 1
    np.testing.assert_allclose(mscn(image, padding), (image - mu) / spread, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("shape", [(1, 1), (2, 3), (7, 9), (64, 48), (333, 517)])
def test_half_scale_equals_the_padded_strided_taps(shape) -> None:
    """Bit-identical in float32 to the numpy formulation: mirrored edges, 8 taps at stride 2,
    the terms added in order, rows then columns."""
    rng = np.random.default_rng(5)
    image = rng.uniform(0, 255, shape).astype(np.float32)

    def along(values: np.ndarray, axis: int) -> np.ndarray:
        size = values.shape[axis]
        out_size = -(-size // 2)
        pad = [(0, 0), (0, 0)]
        pad[axis] = (3, 2 * out_size + 4 - size - 1)
        padded = np.pad(values, pad, mode="symmetric")
        total = None
        for k, tap in enumerate(HALF_SCALE_TAPS.astype(np.float32)):
            index = [slice(None), slice(None)]
            index[axis] = slice(k, k + 2 * out_size - 1, 2)
            term = padded[tuple(index)] * tap
            total = term if total is None else total + term
        return total

    np.testing.assert_array_equal(half_scale(image), along(along(image, 0), 1))


def reference_focus_sums(gray: np.ndarray, tile: int) -> np.ndarray:
    """The focus map's tile sums as numpy computes them on int16 views."""
    g = gray.astype(np.int32)
    centre2 = 2 * g[1:-1, 1:-1]
    pairs = (
        (g[1:-1, :-2], g[1:-1, 2:]),
        (g[:-2, 1:-1], g[2:, 1:-1]),
        (g[:-2, :-2], g[2:, 2:]),
        (g[:-2, 2:], g[2:, :-2]),
    )
    rows, cols = centre2.shape[0] // tile, centre2.shape[1] // tile

    def tiles(values: np.ndarray) -> np.ndarray:
        cut = values[: rows * tile, : cols * tile]
        return cut.reshape(rows, tile, cols, tile).sum(axis=(1, 3))

    out = []
    for before, after in pairs:
        step = np.abs(after - before)
        edge = step >= measures.EDGE_STEP
        curvature = np.abs(centre2 - before - after) * edge
        out.append([tiles(curvature), tiles(step * edge), tiles(edge.astype(np.int32))])
    return np.array(out)


@pytest.mark.parametrize("shape", [(100, 130), (67, 45), (33, 35)])
def test_focus_tile_sums_are_the_numpy_sums_exactly(shape) -> None:
    rng = np.random.default_rng(11)
    gray = rng.integers(0, 256, shape).astype(np.uint8)
    gray[: shape[0] // 2] = (gray[: shape[0] // 2] // 32) * 32  # steps, flats and edges
    got = measures._focus_tile_sums(gray, 16, measures.EDGE_STEP)
    np.testing.assert_array_equal(got, reference_focus_sums(gray, 16))


def test_warm_up_compiles_every_signature_a_score_uses() -> None:
    """After ``warm_up`` a score compiles nothing more (it would land in the first build's
    candidate otherwise)."""
    from curation.iqa_fast import FastIQA

    scorer = FastIQA()
    kernels = ("shifted_product_sums", "mscn", "half_scale")
    known = {name: set(getattr(iqa_kernels, name).signatures) for name in kernels}
    image = np.random.default_rng(2).integers(0, 256, (300, 420, 3)).astype(np.uint8)
    scores = scorer.score(image)
    assert all(np.isfinite(v) for v in scores.values())
    for name in kernels:
        assert set(getattr(iqa_kernels, name).signatures) == known[name], name
