"""Measurements of the reduced decode that the content gates (``curation.filters``) judge.

numpy over uint8/int16 arrays, each a few milliseconds on a ~1000x750 image; the focus map's
per-pixel pass is one compiled loop (numba: 0.8 instead of 4.7 ms, the same integers). Every
value here is what a manifest column of the same name holds
(``storage.schemas.MEASUREMENT_COLUMNS``).

Why these measures (tuned on real photographs and wallpaper graphics, ``bench.curation_accuracy``):

- **Exposure from the histogram**: a mean cannot tell a dim forest from an underexposed frame;
  the share of crushed blacks, of clipped highlights and the percentiles can (a night scene has
  lights, an underexposed frame has none).
- **A focus map, not a global variance**: a photograph with a sharp subject before a defocused
  background is sharp where it matters. Sharpness per tile is the ratio of the second to the
  first difference on edge pixels, per direction: about the inverse of the edge width, so it
  does not depend on contrast or exposure. The image is as sharp as its sharpest ~10 % of
  tiles, and, per direction, as sharp as its blurriest direction (motion blur smears one).
- **Sensor noise and texture nearly everywhere**: a camera image carries noise, grain and
  texture over most of the frame; gradient art and renders are smooth nearly everywhere (a
  faint, regular dither at most). The noise is Immerkaer's fast estimate (a 3x3 kernel that
  annihilates planes) per cell: the floor (smoothest tenth of the well-exposed cells) and the
  median cell. The floor alone is no proof: a clear blue sky is as smooth as a render, which
  is why the gates judge by the median (a sky rarely fills half the frame) plus a second sign.
- **Exactly flat regions**: runs of identical pixels are the fills of drawn art; a camera's
  noise never repeats a value over a 2x2 block away from black and white clipping.
"""

from __future__ import annotations

import math

import numba
import numpy as np

# Luma levels: at or below CRUSHED_LEVEL a pixel is crushed black, at or above CLIPPED_LEVEL a
# clipped highlight (JPEG ringing keeps true clipping from reaching exactly 0/255).
CRUSHED_LEVEL = 6
CLIPPED_LEVEL = 250
# Cells whose mean luma lies outside this range are left out of the noise floor: JPEG
# quantisation flattens deep shadows (a studio's black backdrop reads as noise-free) and
# clipping flattens highlights.
NOISE_MIN_LEVEL = 40
NOISE_MAX_LEVEL = 230
# Edge pixels for the focus map: a first difference of at least this many luma levels.
EDGE_STEP = 6
# A tile enters the focus map in a direction when at least this share of its pixels are edges.
MIN_EDGE_SHARE = 0.02


def exposure(histogram: list[int]) -> dict[str, float]:
    """Mean, crushed and clipped shares, and the 1st/99th percentiles from a 256-bin histogram."""
    counts = np.asarray(histogram, dtype=np.float64)
    total = max(1.0, float(counts.sum()))
    cumulative = np.cumsum(counts) / total
    return {
        "mean_luma": float(np.dot(np.arange(256), counts) / total),
        "dark_fraction": float(counts[: CRUSHED_LEVEL + 1].sum() / total),
        "clipped_fraction": float(counts[CLIPPED_LEVEL:].sum() / total),
        "luma_p01": float(np.searchsorted(cumulative, 0.01)),
        "luma_p99": float(np.searchsorted(cumulative, 0.99)),
    }


def _tile_sum(values: np.ndarray, tile: int) -> np.ndarray:
    """Sums over ``tile`` x ``tile`` blocks (int32), rows first: several times faster than one
    sum over a 4-D view."""
    h, w = (values.shape[0] // tile) * tile, (values.shape[1] // tile) * tile
    rows = values[:h, :w].reshape(h // tile, tile, w).sum(axis=1, dtype=np.int32)
    return rows.reshape(h // tile, w // tile, tile).sum(axis=2)


#: The four directions of the focus map, as (row, column) steps: rows, columns, diagonals.
FOCUS_DIRECTIONS = ((0, 1), (1, 0), (1, 1), (1, -1))


_JIT = {"nogil": True, "cache": True, "error_model": "numpy"}


@numba.njit(**_JIT)
def _edge_row(
    before: np.ndarray,
    centre: np.ndarray,
    after: np.ndarray,
    edge_step: int,
    curvature: np.ndarray,
    step: np.ndarray,
    edge: np.ndarray,
) -> None:
    """Adds per pixel of one row and direction: |2 centre - before - after| and |after -
    before| where |after - before| >= ``edge_step`` (else 0), and that edge flag. int16
    arithmetic (the values are at most 510) into int32 columns, so LLVM vectorises it."""
    threshold = np.int16(edge_step)
    for j in range(step.shape[0]):
        b, a = np.int16(before[j]), np.int16(after[j])
        difference = np.int16(a - b)
        size = difference if difference >= 0 else np.int16(-difference)
        flag = np.int16(1) if size >= threshold else np.int16(0)
        bend = np.int16(np.int16(2) * np.int16(centre[j]) - b - a)
        bend = bend if bend >= 0 else np.int16(-bend)
        curvature[j] += bend * flag
        step[j] += size * flag
        edge[j] += flag


@numba.njit(**_JIT)
def _focus_tile_sums(gray: np.ndarray, tile: int, edge_step: int) -> np.ndarray:
    """(4, 3, rows, cols) int64 over the whole ``tile`` x ``tile`` tiles of the interior
    pixels (the image less a one-pixel border), per direction of :data:`FOCUS_DIRECTIONS`:
    the sum of |2 centre - before - after| over edge pixels, the sum of |after - before| over
    edge pixels, and the number of edge pixels (|after - before| >= ``edge_step``).

    One pass instead of numpy's dozen image-sized temporaries per direction; integer sums, so
    the result is exactly the numpy formulation's."""
    rows, cols = (gray.shape[0] - 2) // tile, (gray.shape[1] - 2) // tile
    width = cols * tile
    out = np.zeros((4, 3, rows, cols), dtype=np.int64)
    # per direction and sum, the column sums over the current row of tiles (int32: at most
    # 510 x tile), folded into tiles once the row of tiles is complete
    columns = np.zeros((4, 3, width), dtype=np.int32)
    for i in range(rows * tile):
        r = i + 1
        for d in range(4):
            dr, dc = FOCUS_DIRECTIONS[d]
            _edge_row(
                gray[r - dr, 1 - dc : 1 - dc + width],
                gray[r, 1 : 1 + width],
                gray[r + dr, 1 + dc : 1 + dc + width],
                edge_step,
                columns[d, 0],
                columns[d, 1],
                columns[d, 2],
            )
        if (i + 1) % tile == 0:
            for d in range(4):
                for k in range(3):
                    for tj in range(cols):
                        out[d, k, i // tile, tj] = columns[d, k, tj * tile : (tj + 1) * tile].sum()
            columns[:] = 0
    return out


def focus_map(gray: np.ndarray, tile: int, threshold: float) -> dict[str, float]:
    """Sharpness of the sharpest tiles, per direction, on the luma of the reduced image.

    ``focus_sharpness``: over the four directions (rows, columns, both diagonals), the lowest
    90th percentile over tiles of the tile's edge sharpness (2nd over 1st difference; 0 for a
    tile without edges). ``global_sharpness``: the same ratio over the whole image.
    ``focus_fraction``: the share of tiles at least ``threshold`` sharp in every direction they
    have edges in.
    """
    sums = _focus_tile_sums(np.ascontiguousarray(gray, dtype=np.uint8), tile, EDGE_STEP)
    percentiles: list[float] = []
    global_ratios: list[float] = []
    tile_min: np.ndarray | None = None
    for num, den, edges in sums:
        share = edges / float(tile * tile)
        ratio = np.where(share >= MIN_EDGE_SHARE, 2.0 * num / np.maximum(den, 1), 0.0)
        valid = share >= MIN_EDGE_SHARE
        percentiles.append(float(np.percentile(ratio, 90)) if ratio.size else 0.0)
        total_den = int(den.sum())
        global_ratios.append(2.0 * int(num.sum()) / total_den if total_den else 0.0)
        directional = np.where(valid, ratio, np.inf)
        tile_min = directional if tile_min is None else np.minimum(tile_min, directional)
    if tile_min is None or tile_min.size == 0:
        return {"focus_sharpness": 0.0, "global_sharpness": 0.0, "focus_fraction": 0.0}
    sharp_tiles = np.isfinite(tile_min) & (tile_min >= threshold)
    return {
        "focus_sharpness": min(percentiles),
        "global_sharpness": min(global_ratios),
        "focus_fraction": float(sharp_tiles.mean()),
    }


def noise_levels(gray: np.ndarray, cell: int) -> tuple[float, float]:
    """Noise sigma (luma levels) in the smoothest tenth of the well-exposed cells (the noise
    floor), and in the median cell (low only when the frame is smooth nearly everywhere).

    Immerkaer (1996): the kernel [1 -2 1; -2 4 -2; 1 -2 1] removes any plane and most smooth
    shading, so its mean absolute response over a smooth cell is sqrt(pi/2)*6*sigma. Cells near
    black or white are skipped (clipping hides noise). Measured on every other pixel: noise is
    the same on a subsampled grid, and it costs a quarter.
    """
    g = np.ascontiguousarray(gray[::2, ::2]).astype(np.int16)
    if g.shape[0] < 3 or g.shape[1] < 3:
        return 0.0, 0.0
    response = (
        g[:-2, :-2] + g[:-2, 2:] + g[2:, :-2] + g[2:, 2:]
        - ((g[:-2, 1:-1] + g[2:, 1:-1] + g[1:-1, :-2] + g[1:-1, 2:]) << 1)
        + (g[1:-1, 1:-1] << 2)
    )  # fmt: skip
    half = max(4, cell // 2)
    sums = _tile_sum(np.abs(response), half)
    means = _tile_sum(g[1:-1, 1:-1], half) / float(half * half)
    exposed = (means > NOISE_MIN_LEVEL) & (means < NOISE_MAX_LEVEL)
    if not exposed.any():
        return 0.0, 0.0
    sigma = sums[exposed] / float(half * half) * (math.sqrt(math.pi / 2) / 6.0)
    floor, median = np.percentile(sigma, [10, 50])
    return float(floor), float(median)


def exact_flat_fraction(planes: tuple[np.ndarray, np.ndarray, np.ndarray]) -> float:
    """Share of 2x2 blocks of identical RGB pixels, away from crushed black and clipped white."""
    r, g, b = planes
    if r.shape[0] < 2 or r.shape[1] < 2:
        return 0.0
    same = np.ones((r.shape[0] - 1, r.shape[1] - 1), dtype=bool)
    for plane in (r, g, b):
        anchor = plane[:-1, :-1]
        same &= (anchor == plane[:-1, 1:]) & (anchor == plane[1:, :-1]) & (anchor == plane[1:, 1:])
    level = np.maximum(np.maximum(r[:-1, :-1], g[:-1, :-1]), b[:-1, :-1])
    # Shadows are flattened by JPEG quantisation and clipped highlights by the sensor: only
    # mid-tones and UI greys (a screenshot's 240s) count; anything touching 255 does not.
    midtone = (level > NOISE_MIN_LEVEL) & (level < 255)
    return float(np.count_nonzero(same & midtone) / same.size)


def saturation(planes: tuple[np.ndarray, np.ndarray, np.ndarray]) -> float:
    """Mean HSV saturation, 0..1: rendered art is vivid all over, photographs rarely are."""
    r, g, b = planes
    high = np.maximum(np.maximum(r, g), b)
    low = np.minimum(np.minimum(r, g), b)
    chroma = (high - low).astype(np.float32)
    return float(np.mean(chroma / np.maximum(high, 1).astype(np.float32)))


def straight_edges(gray: np.ndarray) -> float:
    """How far the five longest pixel-aligned edges run: the mean, over the five rows or
    columns where it is highest, of the share of that line holding a step of >= 16 levels.

    Window borders, panels and vector stripes run straight along a pixel row or column for the
    whole frame; a camera's edges are tilted, curved or broken by a fraction of a pixel (a
    single levelled horizon is one line of five). Full resolution: a subsampled grid breaks
    thin UI lines.
    """
    g = gray.astype(np.int16)
    if g.shape[0] < 2 or g.shape[1] < 2:
        return 0.0
    columns = (np.abs(np.diff(g, axis=1)) >= 16).mean(axis=0)
    rows = (np.abs(np.diff(g, axis=0)) >= 16).mean(axis=1)
    lines = np.concatenate([columns, rows])
    return float(np.sort(lines)[-5:].mean())


def warm_up() -> None:
    """Compile (or load from numba's cache) the focus map's loops; the first call in a process
    otherwise pays for it (about 0.4 CPU s with numba's own start-up, 1 s uncached)."""
    gray = np.zeros((4, 4), dtype=np.uint8)
    focus_map(gray, 2, 1.0)
    gray.flags.writeable = False  # as np.asarray gives a PIL image's pixels: its own signature
    focus_map(gray, 2, 1.0)
