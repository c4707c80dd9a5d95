"""Measurements of the reduced decode that the content gates (``curation.filters``) judge.

Pure numpy over uint8/int16 arrays, each a few milliseconds on a ~1000x750 image. Every value
here is what a manifest column of the same name holds (``storage.schemas.MEASUREMENT_COLUMNS``).

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


def focus_map(gray: np.ndarray, tile: int, threshold: float) -> dict[str, float]:
    """Sharpness of the sharpest tiles, per direction, on the luma of the reduced image.

    ``focus_sharpness``: over the four directions (rows, columns, both diagonals), the lowest
    90th percentile over tiles of the tile's edge sharpness (2nd over 1st difference; 0 for a
    tile without edges). ``global_sharpness``: the same ratio over the whole image.
    ``focus_fraction``: the share of tiles at least ``threshold`` sharp in every direction they
    have edges in.
    """
    g = gray.astype(np.int16)
    centre2 = g[1:-1, 1:-1] << 1  # shared by the four directions
    neighbours = (
        (g[1:-1, :-2], g[1:-1, 2:]),
        (g[:-2, 1:-1], g[2:, 1:-1]),
        (g[:-2, :-2], g[2:, 2:]),
        (g[:-2, 2:], g[2:, :-2]),
    )
    percentiles: list[float] = []
    global_ratios: list[float] = []
    tile_min: np.ndarray | None = None
    for before, after in neighbours:
        # in place where possible: this loop is most of the content gates' cost
        step = np.subtract(after, before)
        np.abs(step, out=step)
        edge = step >= EDGE_STEP
        curvature = np.subtract(centre2, before)
        curvature -= after
        np.abs(curvature, out=curvature)
        curvature *= edge
        step *= edge
        num, den = _tile_sum(curvature, tile), _tile_sum(step, tile)
        share = _tile_sum(edge.view(np.uint8), tile) / float(tile * tile)
        # grad = step / 2, so the ratio curvature / grad is 2 * num / den
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
