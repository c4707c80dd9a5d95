"""Compiled inner loops of the fast IQA path (numba): one pass where numpy needs several.

:mod:`curation.iqa_fast` written with numpy spends most of its time in image-sized passes: the
MSCN (two separable blurs, then seven element-wise passes over temporaries), the (A)GGD sums of
the coefficients and of their products with the image rolled by one pixel (a rolled copy, a
product, then six reductions, per direction), and the half scale (padded copies, all eight
taps at full resolution). Here each is one pass over the image that allocates nothing
image-sized beyond its output, and releases the GIL (``nogil``), so the build's worker threads
score in parallel.

The arithmetic is the numpy path's: the products are taken in the coefficients' dtype
(float32 for BRISQUE, as pyiqa takes them), every sum in float64, the half scale's terms in
order in the image's dtype (bit-identical). Only the order of float64 additions differs
(sequential here, pairwise or blocked in numpy and OpenCV), a relative 1e-12 or so.
Compiled once per machine (``cache=True``: the machine code is kept beside this file, in
``__pycache__``, or in numba's user cache where that is read-only); :func:`warm_up` compiles
or loads every signature before a build's clock starts.
"""

from __future__ import annotations

import numba
import numpy as np

#: Per-sample sums an (A)GGD fit needs, in this order (columns of :func:`shifted_product_sums`).
SUM_FIELDS: tuple[str, ...] = (
    "left_squares",  # sum of x^2 over x < 0
    "squares",  # sum of x^2
    "left_count",  # how many x < 0
    "nonzero",  # how many x != 0
    "total",  # sum of x
    "left_total",  # sum of x over x < 0
)

_JIT = {"nogil": True, "cache": True, "error_model": "numpy"}
#: ``flat`` and ``levels`` of :func:`mscn` when no window is substituted.
NO_FLAT = np.empty((0, 0), dtype=np.bool_)
NO_LEVELS = np.empty((0, 0), dtype=np.uint8)


@numba.njit(fastmath={"reassoc"}, **_JIT)
def _accumulate(
    values: np.ndarray, others: np.ndarray, square_only: bool, sums: np.ndarray
) -> None:
    """Add the :data:`SUM_FIELDS` of ``values * others`` (of ``values`` when ``square_only``)
    to ``sums``. Branch-free and reassociable, so LLVM vectorises the six reductions."""
    ls = sq = lc = nz = tot = lt = 0.0
    for j in range(values.shape[0]):
        if square_only:
            x = np.float64(values[j])
        else:
            x = np.float64(values[j] * others[j])  # the product in the values' dtype
        square = x * x
        negative = x < 0.0
        sq += square
        tot += x
        ls += square if negative else 0.0
        lt += x if negative else 0.0
        lc += 1.0 if negative else 0.0
        nz += 1.0 if x != 0.0 else 0.0
    sums[0] += ls
    sums[1] += sq
    sums[2] += lc
    sums[3] += nz
    sums[4] += tot
    sums[5] += lt


@numba.njit(**_JIT)
def shifted_product_sums(
    image: np.ndarray, block_rows: int, block_cols: int, shifts: np.ndarray
) -> np.ndarray:
    """(blocks, 1 + len(shifts), 6) float64: :data:`SUM_FIELDS` of each whole block of the
    2-D ``image`` (row-major over the blocks; a partial last block is left out), then of its
    products with the block rolled circularly by each ``(rows, cols)`` shift, as
    ``block * np.roll(block, shift, axis=(0, 1))``. A product is taken in the image's dtype.
    One block of the whole image gives the whole-image statistics (BRISQUE)."""
    rows_of_blocks = image.shape[0] // block_rows
    cols_of_blocks = image.shape[1] // block_cols
    count = shifts.shape[0]
    out = np.zeros((rows_of_blocks * cols_of_blocks, count + 1, 6))
    for br in range(rows_of_blocks):
        top = br * block_rows
        for bc in range(cols_of_blocks):
            first = bc * block_cols
            end = first + block_cols
            sums = out[br * cols_of_blocks + bc]
            for i in range(block_rows):
                row = image[top + i, first:end]
                _accumulate(row, row, True, sums[0])
            for k in range(count):
                # rolled by (dr, dc): row i, column j reads row i - dr, column j - dc (mod size)
                dr = shifts[k, 0] % block_rows
                dc = shifts[k, 1] % block_cols
                for i in range(block_rows):
                    row = image[top + i, first:end]
                    other = image[top + (i - dr) % block_rows, first:end]
                    # columns dc.. read 0..; columns 0..dc-1 read the wrapped tail
                    _accumulate(row[dc:], other[: block_cols - dc], False, sums[k + 1])
                    _accumulate(row[:dc], other[block_cols - dc :], False, sums[k + 1])
    return out


@numba.njit(**_JIT)
def _window_rows(row: np.ndarray, taps: np.ndarray, first: np.ndarray, second: np.ndarray) -> None:
    """``first[j] = sum_k taps[k] row[j + k]``, ``second`` the same of the squares, the taps
    added in order (each pass over j vectorises)."""
    first[:] = 0.0
    second[:] = 0.0
    for k in range(taps.shape[0]):
        tap = taps[k]
        for j in range(first.shape[0]):
            value = row[j + k]
            first[j] += tap * value
            second[j] += tap * (value * value)


@numba.njit(**_JIT)
def _window_columns(
    across: np.ndarray,
    across_squares: np.ndarray,
    top: int,
    taps: np.ndarray,
    mu: np.ndarray,
    moment: np.ndarray,
) -> None:
    """The vertical pass for one output row over the ring of horizontal sums: its rows
    ``top`` .. ``top + len(taps) - 1`` (modulo the ring's length), the taps in order."""
    mu[:] = 0.0
    moment[:] = 0.0
    ring = across.shape[0]
    for k in range(taps.shape[0]):
        tap = taps[k]
        upper, upper_squares = across[(top + k) % ring], across_squares[(top + k) % ring]
        for j in range(mu.shape[0]):
            mu[j] += tap * upper[j]
            moment[j] += tap * upper_squares[j]


@numba.njit(**_JIT)
def _normalise_row(
    centre: np.ndarray,
    mu: np.ndarray,
    moment: np.ndarray,
    window_sum: float,
    eps: float,
    target: np.ndarray,
) -> None:
    for j in range(target.shape[0]):
        m = mu[j] * window_sum
        spread = abs(moment[j] * window_sum - m * m) + eps
        target[j] = (centre[j] - m) / (np.sqrt(spread) + 1.0)


@numba.njit(**_JIT)
def _padded_row(image: np.ndarray, r: int, half: int, zero: bool, row: np.ndarray) -> None:
    """Row ``r`` of ``image`` padded by ``half`` on both sides into ``row`` (float64): rows and
    columns beyond the edges are zeros (``zero``) or the edge replicated."""
    height, width = image.shape
    if zero and (r < 0 or r >= height):
        row[:] = 0.0
        return
    source = image[min(max(r, 0), height - 1)]
    for j in range(width):
        row[half + j] = source[j]
    for j in range(half):
        row[j] = 0.0 if zero else source[0]
        row[half + width + j] = 0.0 if zero else source[width - 1]


@numba.njit(**_JIT)
def mscn(
    image: np.ndarray,
    taps: np.ndarray,
    zero: bool,
    window_sum: float,
    eps: float,
    out: np.ndarray,
    levels: np.ndarray,
    flat: np.ndarray,
    table: np.ndarray,
) -> None:
    """MSCN coefficients of ``image`` into ``out`` (its dtype), in float64: the local mean and
    second moment by the separable window ``taps`` (rows, then columns, each tap in order;
    both scaled by ``window_sum``), edges zero (``zero``) or replicated, then
    ``(I - mu) / (sqrt(|E[I^2] - mu^2| + eps) + 1)``. Where ``flat`` (a constant window) the
    value is ``table[levels]`` instead; ``flat`` may be empty (0 x 0)."""
    height, width = image.shape
    size = taps.shape[0]
    half = size // 2
    row = np.empty(width + 2 * half)
    # the horizontal sums of the last ``size`` padded rows: a ring that stays in cache, where
    # image-sized intermediates would cost page faults on every call
    across = np.empty((size, width))
    across_squares = np.empty((size, width))
    mu = np.empty(width)
    moment = np.empty(width)
    centre = np.empty(width)
    for r in range(height + size - 1):
        _padded_row(image, r - half, half, zero, row)
        _window_rows(row, taps, across[r % size], across_squares[r % size])
        i = r - (size - 1)  # the output row whose window ends at padded row r
        if i >= 0:
            _window_columns(across, across_squares, i, taps, mu, moment)
            for j in range(width):
                centre[j] = image[i, j]
            _normalise_row(centre, mu, moment, window_sum, eps, out[i])
    if flat.shape[0] > 0:
        for i in range(height):
            for j in range(width):
                if flat[i, j]:
                    out[i, j] = table[levels[i, j]]


@numba.njit(**_JIT)
def _mirror(index: int, size: int) -> int:
    """``index`` reflected into 0..size-1 with the edge sample repeated (numpy's
    "symmetric" padding, MATLAB's imresize edges)."""
    while index < 0 or index >= size:
        index = -index - 1 if index < 0 else 2 * size - index - 1
    return index


@numba.njit(**_JIT)
def half_scale(image: np.ndarray, taps: np.ndarray, offset: int, out: np.ndarray) -> None:
    """``out`` = ``image`` filtered by ``taps`` at stride 2 along rows, then along columns:
    output i of an axis is ``sum_k x[2 i + k - offset] * taps[k]`` with mirrored edges, the
    terms added in order of k in the arrays' dtype (so float32 rounds as pyiqa's float32
    ``imresize`` does)."""
    height, width = image.shape
    out_height, out_width = out.shape
    size = taps.shape[0]
    row = np.empty(width, dtype=out.dtype)
    # the row filtered down, mirrored at both ends and split into even and odd samples, so
    # that the column taps read contiguous memory: sample 2 j + k is even[j + k // 2] for
    # even k, odd[j + k // 2] for odd k
    pad = width + 2 * size
    even = np.empty(pad // 2 + 1, dtype=out.dtype)
    odd = np.empty(pad // 2 + 1, dtype=out.dtype)
    for i in range(out_height):
        source = image[_mirror(2 * i - offset, height)]
        for j in range(width):
            row[j] = source[j] * taps[0]
        for k in range(1, size):
            source = image[_mirror(2 * i + k - offset, height)]
            tap = taps[k]
            for j in range(width):
                row[j] = row[j] + source[j] * tap
        for m in range(2 * (out_width - 1) + size):
            value = row[_mirror(m - offset, width)]
            if m % 2 == 0:
                even[m // 2] = value
            else:
                odd[m // 2] = value
        target = out[i]
        for j in range(out_width):
            target[j] = even[j] * taps[0]
        for k in range(1, size):
            tap = taps[k]
            half = k // 2
            samples = even if k % 2 == 0 else odd
            for j in range(out_width):
                target[j] = target[j] + samples[j + half] * tap


def warm_up() -> None:
    """Compile (or load from the cache) every signature the fast IQA path calls."""
    shifts = np.array([[0, 1]], dtype=np.int64)
    table = np.zeros(256, dtype=np.float32)
    for dtype in (np.float32, np.float64):
        shifted_product_sums(np.ones((4, 4), dtype=dtype), 2, 2, shifts)
        half_scale(
            np.ones((4, 4), dtype=dtype), np.ones(8, dtype=dtype), 3, np.empty((2, 2), dtype=dtype)
        )
        out = np.empty((2, 2), dtype=dtype)
        levels, flat = np.zeros((2, 2), dtype=np.uint8), np.zeros((2, 2), dtype=np.bool_)
        for image in (np.ones((2, 2), dtype=dtype), np.ones((2, 3), dtype=dtype)[:, :2]):
            for levels_, flat_ in ((levels, flat), (NO_LEVELS, NO_FLAT)):
                for zero in (False, True):
                    mscn(image, np.ones(7), zero, 1.0, 1e-7, out, levels_, flat_, table)
