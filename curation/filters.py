"""Content filters on the reduced image: cheapest first, stopping at the first reject.

Each filter takes the measurements it needs (names from ``storage.schemas.MEASUREMENT_COLUMNS``)
and either passes or names a stable reason. Order and why:

1. ``too_dark``: mean luma; one pass, and dark images fool every later statistic.
2. ``document``: a page is mostly one bright paper tone with dark ink in horizontal (or
   vertical) bands: text lines. ``text_score`` counts ink bands per 100 rows.
3. ``white_background``: the border is near-white, a good share of the image is too, and what
   is not white is photographic (many colours): a product shot or a cut-out.
4. ``graphic``: flat art, logos, line art, CAD: a few exact colours cover most pixels
   (``top_colors_fraction``), or what is not white has few colours (``distinct_colors``).
5. ``grayscale``: Hasler and Suesstrunk's colourfulness.
6. ``flat``: share of cells with almost no luma variation (LSDIR's flat-region rule).
7. ``blurry`` / ``noisy``: variance of the Laplacian (LSDIR keeps 150..8000).

A measurement not reached stays absent (a null in the manifest), so a reject's ``detail`` shows
exactly what was measured.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from curation.config import FilterConfig

# Below this many distinct 6-bit colours outside the white background, an image is drawn, not
# photographed: a photograph's noise and shading alone produce thousands.
MIN_PHOTO_COLORS = 400
_BORDER = 0.04  # width of the border band, as a share of each side


@dataclass
class FilterResult:
    measurements: dict[str, float | int] = field(default_factory=dict)
    reason: str | None = None  # None: passed every filter
    detail: str = ""

    @property
    def passed(self) -> bool:
        return self.reason is None


def _text_bands(ink: np.ndarray) -> float:
    """Ink bands (runs of rows with ink separated by blank rows) per 100 rows."""
    rows = ink.mean(axis=1) > 0.01
    starts = int(np.count_nonzero(rows[1:] & ~rows[:-1])) + int(rows[0])
    return 100.0 * starts / max(1, rows.size)


def _document_score(
    gray: np.ndarray, histogram: list[int], cfg: FilterConfig
) -> tuple[float, float]:
    """(paper share, text score): paper is the dominant tone if it is bright."""
    counts = np.asarray(histogram, dtype=np.int64)
    paper_level = int(np.argmax(counts))
    if paper_level < 160:
        return 0.0, 0.0
    total = counts.sum()
    paper = float(counts[max(0, paper_level - 20) : paper_level + 21].sum() / total)
    if paper < cfg.document_min_paper:
        return paper, 0.0
    ink = gray < paper_level - 80
    return paper, max(_text_bands(ink), _text_bands(ink.T))


Planes = tuple[np.ndarray, np.ndarray, np.ndarray]


def _colour_stats(planes: Planes, white_level: int) -> tuple[float, float, int, float]:
    """(white fraction, border white fraction, distinct colours outside the near-white cube,
    top-8 share), colours quantised to 6 bits per channel."""
    r, g, b = planes
    white = np.minimum(np.minimum(r, g), b) >= white_level
    white_fraction = float(white.mean())
    h, w = white.shape
    bh, bw = max(1, int(h * _BORDER)), max(1, int(w * _BORDER))
    border = np.concatenate(
        [white[:bh].ravel(), white[-bh:].ravel(), white[:, :bw].ravel(), white[:, -bw:].ravel()]
    )
    index = ((r >> 2).astype(np.int32) << 12) | ((g >> 2).astype(np.int32) << 6) | (b >> 2)
    counts = np.bincount(index.ravel(), minlength=1 << 18).reshape(64, 64, 64)
    # A full sort beats np.partition here: introselect is slow on these mostly-zero counts.
    top = float(np.sort(counts, axis=None)[-8:].sum() / index.size)
    lo = white_level >> 2  # the cube of bins that near-white pixels fall into
    distinct = int(np.count_nonzero(counts)) - int(np.count_nonzero(counts[lo:, lo:, lo:]))
    return white_fraction, float(border.mean()), distinct, top


def _colorfulness(planes: Planes) -> float:
    r, g, b = (plane.astype(np.float32) for plane in planes)
    rg = r - g
    yb = 0.5 * (r + g) - b
    std = float(np.sqrt(rg.var() + yb.var()))
    mean = float(np.sqrt(rg.mean() ** 2 + yb.mean() ** 2))
    return std + 0.3 * mean


def _flat_fraction(gray: np.ndarray, cell: int, threshold: float) -> float:
    """Share of ``cell`` x ``cell`` cells whose luma std is below ``threshold``; measured on
    every other pixel (a flat cell is flat at any sampling)."""
    sub, half = gray[::2, ::2], max(2, cell // 2)
    h, w = (sub.shape[0] // half) * half, (sub.shape[1] // half) * half
    if h == 0 or w == 0:
        return 0.0
    cells = sub[:h, :w].astype(np.float32).reshape(h // half, half, w // half, half)
    mean = cells.mean(axis=(1, 3), keepdims=True)
    std = np.sqrt(np.square(cells - mean).mean(axis=(1, 3)))
    return float((std < threshold).mean())


def _laplacian(gray: np.ndarray) -> np.ndarray:
    """4-neighbour Laplacian (OpenCV's ``Laplacian`` with ksize=1), exact in int16."""
    g = gray.astype(np.int16)
    return (g[1:-1, 1:-1] << 2) - g[:-2, 1:-1] - g[2:, 1:-1] - g[1:-1, :-2] - g[1:-1, 2:]


def _variance(values: np.ndarray) -> float:
    flat = values.ravel().astype(np.float32)
    mean = float(flat.mean(dtype=np.float64))
    return max(0.0, float(np.dot(flat, flat)) / flat.size - mean * mean)


def run_filters(image: Image.Image, cfg: FilterConfig | None = None) -> FilterResult:
    """Measure ``image`` (the reduced RGB decode) and stop at the first failed filter."""
    cfg = cfg or FilterConfig()
    if image.mode != "RGB":
        image = image.convert("RGB")
    result = FilterResult()
    m = result.measurements

    def reject(reason: str, detail: str) -> FilterResult:
        result.reason, result.detail = reason, detail
        return result

    luma_image = image.convert("L")
    gray = np.asarray(luma_image)
    histogram = luma_image.histogram()
    m["mean_luma"] = float(np.dot(np.arange(256), histogram) / gray.size)
    if m["mean_luma"] < cfg.min_mean_luma:
        return reject("too_dark", f"mean_luma={m['mean_luma']:.1f} < {cfg.min_mean_luma}")

    paper, text_score = _document_score(gray, histogram, cfg)
    m["text_score"] = text_score
    if paper >= cfg.document_min_paper and text_score > cfg.max_document_score:
        return reject(
            "document", f"text_score={text_score:.2f} > {cfg.max_document_score}, paper={paper:.2f}"
        )

    # Colour statistics need no full resolution: every other pixel, as contiguous planes
    # (numpy is several times slower on the interleaved, strided RGB array).
    half = image.resize(
        (max(1, image.width // 2), max(1, image.height // 2)), Image.Resampling.NEAREST
    )
    planes = tuple(np.asarray(plane) for plane in half.split())
    white, border, distinct, top = _colour_stats(planes, cfg.white_level)
    m.update(white_fraction=white, distinct_colors=distinct, top_colors_fraction=top)
    if border > cfg.max_border_white and white >= cfg.min_white_fraction:
        if distinct >= MIN_PHOTO_COLORS:
            return reject(
                "white_background",
                f"border white {border:.2f} > {cfg.max_border_white}, "
                f"white_fraction={white:.2f}, distinct_colors={distinct}",
            )
        return reject("graphic", f"white ground, distinct_colors={distinct} < {MIN_PHOTO_COLORS}")
    if top > cfg.max_top_colors_fraction:
        return reject("graphic", f"top_colors_fraction={top:.2f} > {cfg.max_top_colors_fraction}")

    m["colorfulness"] = _colorfulness(planes)
    if cfg.reject_grayscale and m["colorfulness"] < cfg.min_colorfulness:
        return reject("grayscale", f"colorfulness={m['colorfulness']:.1f} < {cfg.min_colorfulness}")

    m["flat_fraction"] = _flat_fraction(gray, cfg.flat_cell, cfg.flat_cell_std)
    if m["flat_fraction"] > cfg.max_flat_fraction:
        return reject("flat", f"flat_fraction={m['flat_fraction']:.2f} > {cfg.max_flat_fraction}")

    lap = _laplacian(gray)
    m["blur_laplacian_var"] = _variance(lap)
    m["edge_density"] = float(np.count_nonzero(np.abs(lap) > 40) / max(1, lap.size))
    if m["blur_laplacian_var"] < cfg.min_laplacian_var:
        return reject(
            "blurry", f"blur_laplacian_var={m['blur_laplacian_var']:.0f} < {cfg.min_laplacian_var}"
        )
    if cfg.max_laplacian_var is not None and m["blur_laplacian_var"] > cfg.max_laplacian_var:
        return reject(
            "noisy", f"blur_laplacian_var={m['blur_laplacian_var']:.0f} > {cfg.max_laplacian_var}"
        )
    return result
