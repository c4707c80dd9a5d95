"""Content gates on the reduced image: is this a clean photograph a restoration dataset wants?

Each gate reads measurements (``curation.measures``; names from
``storage.schemas.MEASUREMENT_COLUMNS``) and passes or names a stable reason, with a detail
that says which evidence decided and the threshold that fired. Order, cheapest and surest first:

1. ``too_dark``: the luma histogram (crushed blacks, the 99th percentile), not the mean, so
   a dim forest or a night scene with lights stays. (``overexposed``, from clipped highlights
   and the 1st percentile, is decided after the white-ground gates below.)
2. ``document``: mostly one bright paper tone with dark ink in bands: text lines.
3. ``white_background``: near-white border and a good share of near-white, the rest
   photographic (many colours): a product shot or a cut-out.
4. ``graphic`` by colour counts: a few exact colours cover most pixels, or what is not white
   has few colours (flat art, logos, line art).
5. ``grayscale``: Hasler and Suesstrunk's colourfulness (a policy: training is RGB).
6. ``flat``: almost every cell without luma variation: a frame with nothing in it.
7. ``blurry``: the focus map: no region of the image is in focus (whole-frame defocus, or
   motion blur in any direction). Depth of field keeps its sharp subject and passes.
8. ``graphic`` by rendering evidence: pixel-aligned edges spanning the frame, exactly flat
   fills, vivid colour all over; or smooth nearly everywhere (no sensor noise or texture in
   the median cell) together with a second sign (flat fills, saturated colour, few colours).
9. ``noisy``: noise far above any usable photograph's, or the Laplacian's variance above
   LSDIR's upper bound.

By default the gates stop at the first reject (what a build needs, and measurements not
reached stay null in the manifest); ``evaluate_all=True`` measures everything and decides every
gate (``mird explain``, the accuracy benchmark).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from curation import measures
from curation.config import FilterConfig
from curation.reasons import code

# Below this many distinct 6-bit colours outside the white background, an image is drawn, not
# photographed: a photograph's noise and shading alone produce thousands.
MIN_PHOTO_COLORS = 400
_BORDER = 0.04  # width of the border band, as a share of each side

# The filters' reject reasons (curation.reasons), in gate order
TOO_DARK, DOCUMENT, WHITE_BACKGROUND, GRAPHIC, OVEREXPOSED = (
    code(name, "filter")
    for name in ("too_dark", "document", "white_background", "graphic", "overexposed")
)
GRAYSCALE, FLAT, BLURRY, NOISY = (
    code(name, "filter") for name in ("grayscale", "flat", "blurry", "noisy")
)


@dataclass(frozen=True)
class GateDecision:
    """One gate's verdict: ``reason`` is None when the image passed it."""

    gate: str
    reason: str | None
    detail: str

    @property
    def passed(self) -> bool:
        return self.reason is None


@dataclass
class FilterResult:
    measurements: dict[str, float | int] = field(default_factory=dict)
    reason: str | None = None  # None: passed every gate
    detail: str = ""
    decisions: list[GateDecision] = field(default_factory=list)

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


class _Gates:
    """Decides gate by gate; stops at the first reject unless every gate is wanted."""

    def __init__(self, result: FilterResult, evaluate_all: bool) -> None:
        self.result = result
        self.evaluate_all = evaluate_all

    def decide(self, gate: str, reason: str | None, detail: str = "") -> bool:
        """Record the verdict; True when the caller should stop measuring."""
        self.result.decisions.append(GateDecision(gate, reason, detail))
        if reason is not None and self.result.reason is None:
            self.result.reason, self.result.detail = reason, detail
        return self.result.reason is not None and not self.evaluate_all


def _shadow_verdict(m: dict[str, float | int], cfg: FilterConfig) -> tuple[str | None, str]:
    if m["luma_p99"] < cfg.min_luma_p99:
        return TOO_DARK, f"underexposed: luma_p99={m['luma_p99']:.0f} < {cfg.min_luma_p99:g}"
    if m["dark_fraction"] > cfg.max_dark_fraction:
        return TOO_DARK, (
            f"crushed blacks: dark_fraction={m['dark_fraction']:.2f} > {cfg.max_dark_fraction:g}"
        )
    return None, (
        f"luma_p99={m['luma_p99']:.0f} >= {cfg.min_luma_p99:g}, "
        f"dark_fraction={m['dark_fraction']:.2f} <= {cfg.max_dark_fraction:g}"
    )


def _highlight_verdict(m: dict[str, float | int], cfg: FilterConfig) -> tuple[str | None, str]:
    """After the white-ground gates: a product on white or a logo is clipped white too, and
    its own reason says more than ``overexposed``."""
    if m["luma_p01"] > cfg.max_luma_p01:
        return OVEREXPOSED, f"washed out: luma_p01={m['luma_p01']:.0f} > {cfg.max_luma_p01:g}"
    if m["clipped_fraction"] > cfg.max_clipped_fraction:
        return OVEREXPOSED, (
            f"clipped highlights: clipped_fraction={m['clipped_fraction']:.2f} > "
            f"{cfg.max_clipped_fraction:g}"
        )
    return None, (
        f"luma_p01={m['luma_p01']:.0f} <= {cfg.max_luma_p01:g}, "
        f"clipped_fraction={m['clipped_fraction']:.2f} <= {cfg.max_clipped_fraction:g}"
    )


def _render_verdict(m: dict[str, float | int], cfg: FilterConfig) -> tuple[str | None, str]:
    """Rendering evidence. Smoothness needs a second sign: fog, mist, skies and studio
    backdrops are smooth too, so smoothness alone is no proof."""
    noise = m["noise_floor"]
    if m["straight_edges"] >= cfg.max_straight_edges:
        return GRAPHIC, (
            f"pixel-aligned edges across the frame: straight_edges={m['straight_edges']:.2f} >= "
            f"{cfg.max_straight_edges:g}"
        )
    if m["exact_flat_fraction"] > cfg.max_exact_flat_fraction:
        return GRAPHIC, (
            f"exactly flat fills: exact_flat_fraction={m['exact_flat_fraction']:.2f} > "
            f"{cfg.max_exact_flat_fraction:g}"
        )
    if m["saturation"] >= cfg.vivid_saturation and noise < cfg.vivid_max_noise:
        return GRAPHIC, (
            f"vivid colour all over: saturation={m['saturation']:.2f} >= "
            f"{cfg.vivid_saturation:g} with noise_floor={noise:.2f} < {cfg.vivid_max_noise:g}"
        )
    median = m["noise_median"]
    if median >= cfg.render_max_noise:
        return None, f"texture or noise: noise_median={median:.2f} >= {cfg.render_max_noise:g}"
    quiet = f"smooth nearly everywhere: noise_median={median:.2f} < {cfg.render_max_noise:g}"
    signs = []
    if m["exact_flat_fraction"] >= cfg.render_min_exact_flat:
        signs.append(f"exact_flat_fraction={m['exact_flat_fraction']:.2f}")
    if m["saturation"] >= cfg.render_min_saturation:
        signs.append(f"saturation={m['saturation']:.2f}")
    if m["top_colors_fraction"] >= cfg.render_min_top_colors:
        signs.append(f"top_colors_fraction={m['top_colors_fraction']:.2f}")
    if signs:
        return GRAPHIC, f"{quiet} and {', '.join(signs)}"
    return None, quiet + ", no other sign of synthesis"


def run_filters(
    image: Image.Image, cfg: FilterConfig | None = None, *, evaluate_all: bool = False
) -> FilterResult:
    """Measure ``image`` (the reduced RGB decode) and decide each gate in order."""
    cfg = cfg or FilterConfig()
    if image.mode != "RGB":
        image = image.convert("RGB")
    result = FilterResult()
    m = result.measurements
    gates = _Gates(result, evaluate_all)

    luma_image = image.convert("L")
    gray = np.asarray(luma_image)
    histogram = luma_image.histogram()
    m.update(measures.exposure(histogram))
    if gates.decide("shadows", *_shadow_verdict(m, cfg)):
        return result

    paper, text_score = _document_score(gray, histogram, cfg)
    m["text_score"] = text_score
    is_document = paper >= cfg.document_min_paper and text_score > cfg.max_document_score
    sign = ">" if text_score > cfg.max_document_score else "<="
    detail = f"text_score={text_score:.2f} {sign} {cfg.max_document_score:g}, paper={paper:.2f}"
    if gates.decide("document", DOCUMENT if is_document else None, detail):
        return result

    # Colour statistics need no full resolution: every other pixel, as contiguous planes
    # (numpy is several times slower on the interleaved, strided RGB array).
    half = image.resize(
        (max(1, image.width // 2), max(1, image.height // 2)), Image.Resampling.NEAREST
    )
    planes = tuple(np.asarray(plane) for plane in half.split())
    white, border, distinct, top = _colour_stats(planes, cfg.white_level)
    m.update(white_fraction=white, distinct_colors=distinct, top_colors_fraction=top)
    reason, detail = None, f"top_colors_fraction={top:.2f}, distinct_colors={distinct}"
    if border > cfg.max_border_white and white >= cfg.min_white_fraction:
        if distinct >= MIN_PHOTO_COLORS:
            reason, detail = (
                WHITE_BACKGROUND,
                (
                    f"border white {border:.2f} > {cfg.max_border_white:g}, "
                    f"white_fraction={white:.2f}, distinct_colors={distinct}"
                ),
            )
        else:
            reason = GRAPHIC
            detail = (
                f"few colours on a white ground: distinct_colors={distinct} < {MIN_PHOTO_COLORS}"
            )
    elif top > cfg.max_top_colors_fraction:
        reason = GRAPHIC
        detail = f"few colours: top_colors_fraction={top:.2f} > {cfg.max_top_colors_fraction:g}"
    if gates.decide("colours", reason, detail):
        return result
    if gates.decide("highlights", *_highlight_verdict(m, cfg)):
        return result

    m["colorfulness"] = _colorfulness(planes)
    grey = cfg.reject_grayscale and m["colorfulness"] < cfg.min_colorfulness
    sign = "<" if m["colorfulness"] < cfg.min_colorfulness else ">="
    detail = f"colorfulness={m['colorfulness']:.1f} {sign} {cfg.min_colorfulness:g}"
    if not cfg.reject_grayscale:
        detail += " (reject_grayscale off)"
    if gates.decide("grayscale", GRAYSCALE if grey else None, detail):
        return result

    m["flat_fraction"] = _flat_fraction(gray, cfg.flat_cell, cfg.flat_cell_std)
    is_flat = m["flat_fraction"] > cfg.max_flat_fraction
    sign = ">" if is_flat else "<="
    detail = f"flat_fraction={m['flat_fraction']:.2f} {sign} {cfg.max_flat_fraction:g}"
    if gates.decide("flat", FLAT if is_flat else None, detail):
        return result

    lap = _laplacian(gray)
    m["blur_laplacian_var"] = _variance(lap)
    m["edge_density"] = float(np.count_nonzero(np.abs(lap) > 40) / max(1, lap.size))
    m.update(measures.focus_map(gray, cfg.focus_tile, cfg.min_focus_sharpness))
    reason = None
    detail = f"focus_sharpness={m['focus_sharpness']:.2f} >= {cfg.min_focus_sharpness:g}"
    if m["focus_sharpness"] < cfg.min_focus_sharpness:
        reason = BLURRY
        detail = (
            f"nothing in focus: focus_sharpness={m['focus_sharpness']:.2f} < "
            f"{cfg.min_focus_sharpness:g} (focus_fraction={m['focus_fraction']:.2f})"
        )
    elif cfg.min_laplacian_var is not None and m["blur_laplacian_var"] < cfg.min_laplacian_var:
        reason = BLURRY
        detail = f"blur_laplacian_var={m['blur_laplacian_var']:.0f} < {cfg.min_laplacian_var:g}"
    if gates.decide("sharpness", reason, detail):
        return result

    m["noise_floor"], m["noise_median"] = measures.noise_levels(gray, cfg.flat_cell)
    m["exact_flat_fraction"] = measures.exact_flat_fraction(planes)
    m["saturation"] = measures.saturation(planes)
    m["straight_edges"] = measures.straight_edges(gray)
    if gates.decide("rendering", *_render_verdict(m, cfg)):
        return result

    reason, detail = None, f"noise_floor={m['noise_floor']:.2f} <= {cfg.max_noise_floor:g}"
    if m["noise_floor"] > cfg.max_noise_floor:
        reason = NOISY
        detail = f"noise_floor={m['noise_floor']:.1f} > {cfg.max_noise_floor:g}"
    elif cfg.max_laplacian_var is not None and m["blur_laplacian_var"] > cfg.max_laplacian_var:
        reason = NOISY
        detail = f"blur_laplacian_var={m['blur_laplacian_var']:.0f} > {cfg.max_laplacian_var:g}"
    gates.decide("noise", reason, detail)
    return result
