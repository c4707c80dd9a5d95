"""Test fixtures made from real photographs (scikit-image's bundled ones, at native size; no
download) and the hard cases derived from them, plus graphics: each with the decision a correct
content gate gives it. Deterministic: the same call gives the same pixels.

Hard cases a restoration dataset wants (kept), made by ``flows.demo.hard_cases`` (the demo
source makes the same kinds): shallow depth of field (a sharp subject over ~25 % of the frame,
the rest blurred with sigma 8 px), haze and mist (transmission 0.4-0.6 towards a grey-blue
airlight), low key and night (gamma ~2.4 with a few lights), sky and water (more than half of
the frame a smooth gradient with sensor noise, beside a sharp photographic band).

Negatives (rejected, with the reason): whole-frame defocus and motion blur, an underexposed
frame without highlights, vector shapes, a smooth colour gradient, a shaded render, a text
page, a product on white.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import skimage.data
from PIL import Image, ImageDraw, ImageFont
from scipy import ndimage

from flows.demo import hard_cases as hard
from tests import curation_images

REAL_PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "motorcycle")


def real_photo(name: str) -> Image.Image:
    """One of scikit-image's colour photographs at its native size, RGB."""
    if name == "motorcycle":  # a stereo pair: the left view is an ordinary street photograph
        array = skimage.data.stereo_motorcycle()[0]
    else:
        array = getattr(skimage.data, name)()
    return Image.fromarray(np.ascontiguousarray(array[..., :3]).astype(np.uint8))


# ------------------------------------------------------------------------- hard cases (kept)
# The transforms live in flows.demo.hard_cases (the demo source makes the same kinds).


def shallow_dof(name: str, **options) -> Image.Image:
    return hard.shallow_dof(real_photo(name), **options)


def haze(name: str, **options) -> Image.Image:
    return hard.haze(real_photo(name), **options)


def low_key(name: str, **options) -> Image.Image:
    return hard.low_key(real_photo(name), **options)


def sky_over(name: str, **options) -> Image.Image:
    return hard.sky_over(real_photo(name), **options)


def water_below(name: str, **options) -> Image.Image:
    return hard.water_below(real_photo(name), **options)


# --------------------------------------------------------------------- negatives (rejected)


def defocused(name: str, sigma: float = 3.0) -> Image.Image:
    """The whole frame out of focus: a Gaussian blur of ``sigma`` pixels."""
    return hard.to_image(hard.gaussian(hard.as_float(real_photo(name)), sigma))


def motion_blurred(name: str, length: int = 17, direction: str = "horizontal") -> Image.Image:
    """Camera shake: a ``length`` px line kernel, horizontal or diagonal (45 degrees)."""
    kernel = np.zeros((length, length), np.float32)
    if direction == "horizontal":
        kernel[length // 2, :] = 1.0
    elif direction == "diagonal":
        kernel[np.arange(length), np.arange(length)] = 1.0
    else:
        raise ValueError(direction)
    kernel /= kernel.sum()
    photo = hard.as_float(real_photo(name))
    channels = [ndimage.convolve(photo[..., c], kernel, mode="reflect") for c in range(3)]
    return hard.to_image(np.stack(channels, axis=-1))


def underexposed(name: str, scale: float = 0.15) -> Image.Image:
    """About 2.7 stops under: every value scaled by ``scale``, no highlight left."""
    return hard.to_image(hard.as_float(real_photo(name)) * scale)


def _supersampled(
    size: tuple[int, int], draw: Callable[[ImageDraw.ImageDraw, int], None], ground
) -> Image.Image:
    """Antialiased vector art: drawn at 4x and reduced, as a rasteriser does."""
    factor = 4
    big = Image.new("RGB", (size[0] * factor, size[1] * factor), ground)
    draw(ImageDraw.Draw(big), factor)
    return big.resize(size, Image.Resampling.LANCZOS)


def vector_shapes(width: int = 640, height: int = 480, seed: int = 3) -> Image.Image:
    """An illustration: antialiased circles, rounded panels and polygons in a flat palette."""
    rng = np.random.default_rng(seed)
    palette = [tuple(int(v) for v in rng.integers(20, 240, 3)) for _ in range(6)]

    def draw(canvas: ImageDraw.ImageDraw, k: int) -> None:
        for i in range(14):
            x0, x1 = sorted(rng.uniform(0, width * k, 2))
            y0, y1 = sorted(rng.uniform(0, height * k, 2))
            fill = palette[1 + i % 5]
            kind = i % 3
            if kind == 0:
                canvas.ellipse((x0, y0, x1, y1), fill=fill)
            elif kind == 1:
                canvas.rounded_rectangle((x0, y0, x1, y1), radius=12 * k, fill=fill)
            else:
                points = [
                    (float(rng.uniform(0, width * k)), float(rng.uniform(0, height * k)))
                    for _ in range(4)
                ]
                canvas.polygon(points, fill=fill)

    return _supersampled((width, height), draw, palette[0])


def colour_gradient(width: int = 640, height: int = 480) -> Image.Image:
    """A smooth diagonal gradient through four colour stops (a wallpaper, a slide ground),
    rendered in float and rounded: no noise, no shapes."""
    stops = np.asarray([[32, 18, 96], [190, 40, 120], [250, 150, 60], [250, 230, 140]], np.float32)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    t = (0.65 * xx / (width - 1) + 0.35 * yy / (height - 1)) * (len(stops) - 1)
    index = np.minimum(t.astype(int), len(stops) - 2)
    frac = (t - index)[..., None]
    return hard.to_image(stops[index] * (1 - frac) + stops[index + 1] * frac)


def gradient_bubbles(width: int = 640, height: int = 480, seed: int = 5) -> Image.Image:
    """A wallpaper: the colour gradient under soft translucent white discs (antialiased);
    no flat fill, few exact colours, no noise."""
    rng = np.random.default_rng(seed)
    factor = 4
    layer = Image.new("RGBA", (width * factor, height * factor), (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    for _ in range(9):
        x, y = rng.uniform(0, width * factor), rng.uniform(0, height * factor)
        r = rng.uniform(40, 180) * factor
        draw.ellipse((x - r, y - r, x + r, y + r), fill=(255, 255, 255, int(rng.integers(30, 90))))
    layer = layer.resize((width, height), Image.Resampling.LANCZOS)
    ground = colour_gradient(width, height).convert("RGBA")
    return Image.alpha_composite(ground, layer).convert("RGB")


def shaded_render(width: int = 640, height: int = 480, seed: int = 4) -> Image.Image:
    """A computer render: Lambert-shaded spheres on a graded floor and backdrop, antialiased
    (rendered at 2x, box-reduced), noise-free (a ray tracer's converged output)."""
    rng = np.random.default_rng(seed)
    factor = 2
    w, h = width * factor, height * factor
    yy = np.arange(h, dtype=np.float32)[:, None, None]
    horizon = 0.45 * h
    backdrop = np.asarray([70, 90, 130], np.float32) + yy / h * 60
    floor = np.asarray([150, 135, 110], np.float32) * (0.55 + 0.45 * (yy - horizon) / (h - horizon))
    image = np.where(yy < horizon, backdrop, floor) * np.ones((1, w, 1), np.float32)
    light = np.asarray([-0.5, -0.6, 0.62], np.float32)
    light /= np.linalg.norm(light)
    for _ in range(5):
        r = rng.uniform(0.07, 0.16) * h
        cx, cy = rng.uniform(0.15 * w, 0.85 * w), rng.uniform(horizon, 0.85 * h)
        colour = rng.uniform(60, 240, 3).astype(np.float32)
        x0, x1 = max(0, int(cx - r)), min(w, int(cx + r) + 1)
        y0, y1 = max(0, int(cy - r)), min(h, int(cy + r) + 1)
        sy, sx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
        dx, dy = (sx - cx) / r, (sy - cy) / r
        inside = dx**2 + dy**2 < 1.0
        dz = np.sqrt(np.clip(1.0 - dx**2 - dy**2, 0.0, 1.0))
        lambert = np.clip(dx * light[0] + dy * light[1] + dz * light[2], 0.0, 1.0)
        shade = colour * (0.15 + 0.85 * lambert)[..., None]
        box = image[y0:y1, x0:x1]
        box[inside] = shade[inside]
    big = Image.fromarray(np.clip(np.rint(image), 0, 255).astype(np.uint8))
    return big.resize((width, height), Image.Resampling.BOX)


def product_on_white(name: str = "coffee", width: int = 800, height: int = 600) -> Image.Image:
    """A product shot: the central object of a real photograph cut out (a soft-edged ellipse)
    onto a white sweep, with a soft contact shadow."""
    photo = real_photo(name)
    canvas = np.full((height, width, 3), 255.0, np.float32)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    shadow = np.exp(
        -(((xx - width / 2) / (0.3 * width)) ** 2 + ((yy - 0.8 * height) / (0.05 * height)) ** 2)
    )
    canvas -= 45 * shadow[..., None]
    ow, oh = photo.size
    crop = photo.crop((ow // 5, oh // 8, ow - ow // 5, oh - oh // 8))
    side = int(0.6 * height)
    crop = crop.resize((round(side * crop.width / crop.height), side), Image.Resampling.LANCZOS)
    mask = hard.ellipse_mask(crop.size, np.pi / 4, (0.5, 0.5), feather=0.04)
    left, top = (width - crop.width) // 2, int(0.18 * height)
    region = canvas[top : top + crop.height, left : left + crop.width]
    region[:] = hard.as_float(crop) * mask + region * (1 - mask)
    return hard.to_image(canvas)


def text_page(width: int = 600, height: int = 800) -> Image.Image:
    """A scanned page: dark text lines on off-white paper (luma ~244)."""
    return curation_images.text_page(width, height, seed=0)


def white_page(width: int = 600, height: int = 800, seed: int = 0) -> Image.Image:
    """An exported page (a PDF's, a web page's): a title and paragraphs of dark text on pure
    white paper."""
    rng = np.random.default_rng(seed)
    page = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(page)
    words = "the image of a dataset model noise restoration photograph quality and to".split()
    size, margin = 16, width // 10
    draw.text(
        (margin, margin), "Image Restoration", fill=(0, 0, 0), font=ImageFont.load_default(size=30)
    )
    font = ImageFont.load_default(size=size)
    y = margin + 3 * size
    while y < height - margin - size:
        if rng.random() < 0.12:  # paragraph break
            y += size
            continue
        draw.text((margin, y), " ".join(rng.choice(words, size=9)), fill=(20, 20, 24), font=font)
        y += int(size * 1.5)
    return page


# ------------------------------------------------------------------------------- the table

#: How a fixture reaches the gate: its pixels as made (a lossless file), or as a JPEG of
#: quality 92 through the probe and the reduced decode (what a scrape mostly brings).
ENCODINGS = ("lossless", "jpeg")
#: A kept hard case must not even come near these: each is what such a photograph was
#: wrongly rejected as by global measures.
HARD_CASE_NEVER = frozenset({"blurry", "too_dark", "flat"})


@dataclass(frozen=True)
class Fixture:
    """One image and what a correct content gate says of it.

    ``reasons``: None when it must be kept, else the reasons accepted as the first reject (one,
    unless ``note`` says why several are right). ``kind``: "photo" (a real photograph as it
    is), "hard" (a kept hard case made from one) or "negative". ``known_wrong``: encoding ->
    what the gate wrongly says of it now (tests mark these as strict expected failures, so a
    fix shows up)."""

    name: str
    make: Callable[[], Image.Image]
    reasons: frozenset[str] | None
    kind: str
    note: str = ""
    known_wrong: dict[str, str] = field(default_factory=dict)

    @property
    def expected(self) -> str:
        return "kept" if self.reasons is None else "/".join(sorted(self.reasons))


def _keep(name: str, make: Callable[[], Image.Image], kind: str = "hard", **extra) -> Fixture:
    return Fixture(name, make, None, kind, **extra)


def _reject(name: str, make: Callable[[], Image.Image], *reasons: str, **extra) -> Fixture:
    return Fixture(name, make, frozenset(reasons), "negative", **extra)


_CLEAN_BOKEH = (
    "the lens blur wipes the photograph's own noise out of three quarters of the frame, as "
    "in a low-ISO photograph reduced 4-6x (which divides its noise as much); the -grain "
    "variant puts sensor noise back there and is kept"
)
_SMOOTH_AND_COLOURED = (
    "graphic: 'smooth nearly everywhere' (noise_median ~0.33 < render_max_noise) with "
    "saturation >= render_min_saturation (coffee 0.72; chelsea's 0.43 stays under 0.5) as "
    "the second sign"
)

FIXTURES: tuple[Fixture, ...] = (
    *(_keep(name, lambda n=name: real_photo(n), "photo") for name in REAL_PHOTOS),
    # Shallow depth of field: ~25 % sharp, the rest blurred with sigma 8 px.
    _keep("dof-chelsea", lambda: shallow_dof("chelsea", centre=(0.5, 0.45)), note=_CLEAN_BOKEH),
    _keep("dof-astronaut", lambda: shallow_dof("astronaut", centre=(0.5, 0.35))),
    _keep("dof-motorcycle-small", lambda: shallow_dof("motorcycle", area=0.12)),
    _keep(
        "dof-coffee",
        lambda: shallow_dof("coffee", centre=(0.5, 0.45)),
        note=_CLEAN_BOKEH,
        known_wrong={e: _SMOOTH_AND_COLOURED for e in ENCODINGS},
    ),
    _keep("dof-coffee-grain", lambda: shallow_dof("coffee", centre=(0.5, 0.45), grain=1.5)),
    # Haze and mist: transmission 0.4 (top) to 0.6 (bottom) towards a grey-blue airlight.
    _keep("haze-rocket", lambda: haze("rocket")),
    _keep("haze-rocket-clean", lambda: haze("rocket", grain=0.0)),
    _keep("haze-motorcycle", lambda: haze("motorcycle")),
    _keep("haze-chelsea-thick", lambda: haze("chelsea", near=0.5, far=0.3)),
    # Low key / night: gamma 2.2-2.5 with a few lights.
    _keep("lowkey-chelsea", lambda: low_key("chelsea")),
    _keep("lowkey-astronaut", lambda: low_key("astronaut")),
    _keep("lowkey-rocket", lambda: low_key("rocket", gamma=2.5)),
    _keep("lowkey-coffee", lambda: low_key("coffee", gamma=2.2, curve="luma")),
    _keep(
        "lowkey-coffee-rgb",
        lambda: low_key("coffee", gamma=2.2),
        note="a per-channel curve pushes coffee's saturation from 0.72 to ~0.9",
        known_wrong={e: "graphic: vivid colour (saturation >= 0.85, noise < 3)" for e in ENCODINGS},
    ),
    # Sky and water: more than half of the frame smooth, with sensor noise.
    _keep("sky-motorcycle", lambda: sky_over("motorcycle")),
    _keep("sky-coffee", lambda: sky_over("coffee", sky_share=0.55)),
    _keep("sky-rocket", lambda: sky_over("rocket", sky_share=0.6)),
    _keep("water-astronaut", lambda: water_below("astronaut")),
    _keep("water-motorcycle", lambda: water_below("motorcycle")),
    # Negatives.
    _reject("defocus-astronaut", lambda: defocused("astronaut", 3.0), "blurry"),
    _reject("defocus-coffee", lambda: defocused("coffee", 2.5), "blurry"),
    _reject("motion-h-chelsea", lambda: motion_blurred("chelsea", 17), "blurry"),
    _reject("motion-h-coffee", lambda: motion_blurred("coffee", 21), "blurry"),
    _reject(
        "motion-d-motorcycle",
        lambda: motion_blurred("motorcycle", 15, "diagonal"),
        "blurry",
        known_wrong={
            "jpeg": "kept: JPEG's 8x8 block edges lift focus_sharpness from 0.45 (lossless) "
            "to 0.63 >= 0.6"
        },
    ),
    _reject("motion-d-astronaut", lambda: motion_blurred("astronaut", 19, "diagonal"), "blurry"),
    _reject("dark-astronaut", lambda: underexposed("astronaut"), "too_dark"),
    _reject("dark-motorcycle", lambda: underexposed("motorcycle"), "too_dark"),
    _reject("vector-shapes", vector_shapes, "graphic"),
    _reject(
        "gradient",
        colour_gradient,
        "flat",
        "graphic",
        note="a featureless gradient: flat (every cell smooth) decides first; the rendering "
        "gate says graphic too (no noise, saturation 0.69). Blurry would be wrong: it has no "
        "edge to be blurred",
    ),
    _reject("gradient-bubbles", gradient_bubbles, "graphic"),
    _reject("render", shaded_render, "graphic"),
    _reject("text-page", text_page, "document"),
    _reject("text-page-white", white_page, "document"),  # clipped paper: not overexposed
    _reject("product-on-white", product_on_white, "white_background"),  # nor here
)


def encoded(image: Image.Image, quality: int = 92) -> bytes:
    """JPEG bytes, as a web image comes."""
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()
