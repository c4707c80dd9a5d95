"""Demo sources, made on the spot from scikit-image's bundled photographs and generated
images: nothing is downloaded.

- :func:`demo_candidates` / :func:`write_demo_source`: twelve small files (real photographs
  plus a near-duplicate copy, a blurred shot, a logo, a page, a thumbnail), for fast tests.
- :func:`web_candidates`: a few hundred high-resolution candidates that look like a scrape of
  the web, to be served over HTTP by :mod:`flows.demo.server` (``mird demo``).

Each candidate comes with the outcome a correct build gives it: "keep" or the reject reason.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
import skimage.data
from PIL import Image, ImageChops, ImageDraw, ImageFilter, ImageFont, ImageOps

from flows.demo import hard_cases as hard

#: Real colour photographs that pass the default filters and IQA thresholds (the rocket,
#: NIQE 6.5 at its size and 9.5 on a 512 px proxy, failed the former NIQE threshold of 8).
PHOTOS = ("astronaut", "coffee", "chelsea", "immunohistochemistry", "rocket")


def _rgb(name: str) -> Image.Image:
    array = getattr(skimage.data, name)()
    if array.ndim == 2:
        array = np.stack([array] * 3, axis=-1)
    return Image.fromarray(np.ascontiguousarray(array[..., :3]).astype(np.uint8))


def _jpeg(image: Image.Image, quality: int = 92) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def demo_candidates() -> dict[str, tuple[bytes, str]]:
    """File name -> (bytes, the outcome a correct build gives it: "keep" or a reason)."""
    files: dict[str, tuple[bytes, str]] = {}
    for name in PHOTOS:
        files[f"{name}.jpg"] = (_jpeg(_rgb(name)), "keep")
    astronaut = _rgb("astronaut")
    files["astronaut_copy.jpg"] = (_jpeg(astronaut.resize((480, 480)), 60), "near_duplicate_of")
    files["astronaut_exact.png"] = (files["astronaut.jpg"][0], "duplicate_of")
    files["coffee_blurred.jpg"] = (
        _jpeg(_rgb("coffee").filter(ImageFilter.GaussianBlur(4))),
        "blurry",
    )
    files["logo.png"] = (_png(_rgb("logo")), "graphic")
    files["page.png"] = (_png(_rgb("page")), "too_small")
    files["thumbnail.jpg"] = (_jpeg(_rgb("chelsea").resize((120, 80))), "too_small")
    return files


def write_demo_source(folder: Path) -> dict[str, str]:
    """Write the demo candidates into ``folder``; returns file name -> expected outcome."""
    folder.mkdir(parents=True, exist_ok=True)
    expected = {}
    for name, (data, outcome) in demo_candidates().items():
        (folder / name).write_bytes(data)
        expected[name] = outcome
    return expected


# ------------------------------------------------------------------ the web-like demo source
#
# ``web_candidates`` makes a few hundred candidates that look like a scrape of the web: most
# are photograph-like high-resolution images, the rest the kinds of bad candidate a real
# crawl returns. Every candidate carries the outcome the default build gives it (checked
# against the real build in tests/test_demo_source.py), so the demo can show that each kind
# is caught, and by which rule.
#
# Size and cost: the builder decodes JPEGs at the smallest power-of-two scale that brings the
# long side to <= 1024 px, and every later stage (filters, hashes, IQA) sees only that
# reduced decode. Photographs here are 1088-1152 px on the short side and at most 2048 px on
# the long one, so they pass LAION-HR's 1024 px rule (the default probe.min_side) and are
# decoded at 1/2: ~0.4 MP each, which keeps IQA on two CPU cores near 0.3 s per image.

#: Outcome of each kind of candidate under the default BuildConfig.
KEEP = "keep"
REASON_DUPLICATE = "duplicate_of"
REASON_NEAR_DUPLICATE = "near_duplicate_of"

#: Share of the candidates per bad kind (each kind appears at least once); the rest are good
#: photographs. About 43 % bad in all.
BAD_KIND_SHARES: dict[str, float] = {
    "graphic": 0.045,
    "document": 0.04,
    "product": 0.04,
    "blurred": 0.045,
    "dark": 0.04,
    "grayscale": 0.015,
    "noisy": 0.015,
    "compressed": 0.01,
    "panorama": 0.01,
    "too_small": 0.025,
    "duplicate": 0.035,
    "near_duplicate": 0.05,
    "corrupt": 0.035,
    "missing": 0.03,
}
#: Real photographs bundled with scikit-image that pass the default filters once brought to
#: size (``_bring_to_size``); the rest of the good ones are generated scenes.
REAL_PHOTOS = ("astronaut", "coffee", "immunohistochemistry", "rocket", "motorcycle")
#: Real photographs of the kinds a global gate wrongly rejects (``flows.demo.hard_cases``:
#: shallow depth of field, mist, night, sky, water), made at the photograph's own size and
#: brought to size like the others; all planned as kept, so a gate that throws them away fails
#: the demo's outcome check. (name, photograph, mirrored, transform): a transform that keeps
#: the photograph's layout (depth of field, mist, night) would leave a near duplicate of the
#: original or of another variant (64-bit phash distance 2-4), which the build rightly drops,
#: so those are made from its mirror image. The first five are one of each kind (a small demo
#: has those).
HARD_CASES: tuple[tuple[str, str, bool, Callable[[Image.Image], Image.Image]], ...] = (
    ("dof-chelsea", "chelsea", False, lambda image: hard.shallow_dof(image, centre=(0.5, 0.45))),
    ("mist-rocket", "rocket", True, hard.haze),
    ("night-chelsea", "chelsea", True, hard.low_key),
    ("sky-motorcycle", "motorcycle", False, hard.sky_over),
    ("water-astronaut", "astronaut", False, hard.water_below),
    ("dof-astronaut", "astronaut", True, lambda image: hard.shallow_dof(image, centre=(0.5, 0.35))),
    ("mist-motorcycle", "motorcycle", True, hard.haze),
    ("night-astronaut", "astronaut", False, hard.low_key),
    ("sky-coffee", "coffee", False, lambda image: hard.sky_over(image, sky_share=0.55)),
    ("water-motorcycle", "motorcycle", False, hard.water_below),
)
#: Fewer candidates than this cannot hold one of each bad kind and enough photographs.
MIN_WEB_CANDIDATES = 40

#: (width, height) of generated photographs: short side 1088-1152 (a cropped or re-encoded copy
#: stays >= 1024), long side <= 2048 (decoded at 1/2; the texture tile's side), aspect <= 1.5.
SCENE_SIZES = ((1632, 1088), (1088, 1632), (1536, 1152), (1152, 1536), (1440, 1088), (1088, 1088))

WebCandidates = dict[str, tuple[bytes | None, str]]


class _Textures:
    """Texture shared by all scenes of one call: an FFT per image would dominate the cost,
    and a random window of a large tile is as good a texture as a fresh one. Stored as an
    8-bit image offset by 128, so that scenes are composed with Pillow's fast channel ops."""

    SIDE = 2048

    def __init__(self, rng: np.random.Generator) -> None:
        size = (self.SIDE, self.SIDE)
        texture = 15.0 * _pink_noise(*size, rng, alpha=1.0)  # surface texture
        texture += 2.0 * rng.standard_normal(size, dtype=np.float32)  # sensor grain
        self.tile = Image.fromarray(np.clip(texture + 128.5, 0, 255).astype(np.uint8))

    def window(self, w: int, h: int, rng: np.random.Generator) -> Image.Image:
        """A random ``w`` x ``h`` window of the tile, as an RGB image (grey: luma texture)."""
        x = int(rng.integers(0, self.SIDE - w + 1))
        y = int(rng.integers(0, self.SIDE - h + 1))
        plane = self.tile.crop((x, y, x + w, y + h))
        return Image.merge("RGB", (plane, plane, plane))


def _pink_noise(h: int, w: int, rng: np.random.Generator, alpha: float) -> np.ndarray:
    """Noise with a 1/f**alpha amplitude spectrum (natural images are close to alpha = 1),
    unit standard deviation."""
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.rfftfreq(w)[None, :]
    radius = np.sqrt(fx**2 + fy**2)
    radius[0, 0] = 1.0
    shape = (h, w // 2 + 1)
    spectrum = (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)) / radius**alpha
    spectrum[0, 0] = 0.0
    noise = np.fft.irfft2(spectrum, s=(h, w)).astype(np.float32)
    return noise / noise.std()


def _shading(w: int, h: int, rng: np.random.Generator) -> Image.Image:
    """Smooth illumination, 0.7..1 (low-resolution noise upsampled), as an RGB multiplier."""
    small = np.clip(0.85 + 0.07 * rng.standard_normal((6, 8)), 0.7, 1.0)
    plane = Image.fromarray((255 * small).astype(np.uint8)).resize((w, h), Image.Resampling.BICUBIC)
    return Image.merge("RGB", (plane, plane, plane))


def _scene(w: int, h: int, rng: np.random.Generator, textures: _Textures) -> Image.Image:
    """A photograph-like scene: the "dead leaves" model (occluding objects whose sizes follow
    a power law, which gives natural images' scale invariance), each surface textured with
    1/f noise, lit by a smooth field, with sensor grain. The objects are drawn at half size
    and upsampled: soft edges, as from a lens, at a quarter of the drawing cost."""
    sw, sh = w // 2, h // 2
    canvas = Image.new("RGB", (sw, sh), tuple(int(v) for v in rng.integers(40, 200, 3)))
    draw = ImageDraw.Draw(canvas)
    count, r_min, r_max = 1500, 4.0, max(sw, sh) / 3
    radii = np.sort(1.0 / np.sqrt(rng.random(count) * (r_min**-2 - r_max**-2) + r_max**-2))
    xs = rng.uniform(-0.1 * sw, 1.1 * sw, count)
    ys = rng.uniform(-0.1 * sh, 1.1 * sh, count)
    squash = rng.uniform(0.4, 1.0, count)
    palette = rng.uniform(25, 190, (10, 3))
    colours = np.clip(palette[rng.integers(10, size=count)] + rng.normal(0, 25, (count, 3)), 0, 255)
    round_ones = rng.random(count) < 0.6
    for i in range(count - 1, -1, -1):  # largest first: small objects lie on big ones
        r, ry, x, y = radii[i], radii[i] * squash[i], xs[i], ys[i]
        shape = draw.ellipse if round_ones[i] else draw.rectangle
        shape((x - r, y - ry, x + r, y + ry), fill=tuple(colours[i].astype(int).tolist()))
    canvas = ImageChops.multiply(canvas, _shading(sw, sh, rng))
    canvas = canvas.resize((w, h), Image.Resampling.BICUBIC)
    return ImageChops.add(canvas, textures.window(w, h, rng), offset=-128)


def _bring_to_size(image: Image.Image, short_side: int, rng: np.random.Generator) -> Image.Image:
    """Upscale a small real photograph to ``short_side``, re-sharpened, with fresh grain: what
    an upscaled web image looks like, and crisp enough for the blur filter at 1/2 decode."""
    w, h = image.size
    scale = short_side / min(w, h)
    size = (round(w * scale), round(h * scale))
    image = image.resize(size, Image.Resampling.LANCZOS)
    image = image.filter(ImageFilter.UnsharpMask(radius=2, percent=120, threshold=2))
    grain = rng.normal(0.0, 2.0, (size[1], size[0], 1)).astype(np.float32)
    pixels = np.asarray(image, dtype=np.float32) + grain
    return Image.fromarray(np.clip(pixels + 0.5, 0, 255).astype(np.uint8))


def _real_photo(name: str) -> Image.Image:
    if name == "motorcycle":  # a stereo pair: the left view is an ordinary street photograph
        return Image.fromarray(skimage.data.stereo_motorcycle()[0])
    return _rgb(name)


def _flat_graphic(w: int, h: int, rng: np.random.Generator) -> Image.Image:
    """A flat illustration or banner: a few solid colours, hard edges, no texture."""
    palette = [tuple(int(v) for v in rng.integers(0, 256, 3)) for _ in range(5)]
    image = Image.new("RGB", (w, h), palette[0])
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(6, 14))):
        x0, x1 = sorted(rng.uniform(0, w, 2))
        y0, y1 = sorted(rng.uniform(0, h, 2))
        fill = palette[int(rng.integers(1, 5))]
        kind = rng.integers(3)
        if kind == 0:
            draw.rectangle((x0, y0, x1, y1), fill=fill)
        elif kind == 1:
            draw.ellipse((x0, y0, x1, y1), fill=fill)
        else:
            points = [(float(rng.uniform(0, w)), float(rng.uniform(0, h))) for _ in range(3)]
            draw.polygon(points, fill=fill)
    return image


_WORDS = (
    "data set image photo pixel train model the of and a to in is for with on by sample "
    "quality filter shard manifest version build restore noise blur rain haze patch dynamic "
    "pretraining weights encoder decoder block depth variant shared checkpoint evaluation"
).split()


def _document(w: int, h: int, rng: np.random.Generator) -> Image.Image:
    """A page of text: a title and paragraphs of dark lines on white paper."""
    page = Image.new("RGB", (w, h), (250, 250, 248))
    draw = ImageDraw.Draw(page)
    margin, size = w // 10, int(rng.integers(20, 30))
    font = ImageFont.load_default(size=size)
    title = ImageFont.load_default(size=int(size * 1.8))
    draw.text(
        (margin, margin), " ".join(rng.choice(_WORDS, 4)).title(), fill=(20, 20, 20), font=title
    )
    y = margin + 3 * size
    while y < h - margin - size:
        if rng.random() < 0.12:  # paragraph break
            y += size
            continue
        line, x = [], margin
        while True:
            word = str(rng.choice(_WORDS))
            x += int(draw.textlength(word + " ", font=font))
            if x > w - margin:
                break
            line.append(word)
        draw.text((margin, y), " ".join(line), fill=(30, 30, 35), font=font)
        y += int(size * 1.5)
    return page


def _product(w: int, h: int, rng: np.random.Generator, textures: _Textures) -> Image.Image:
    """A product shot: a textured object with a soft contact shadow on a pure white field."""
    image = Image.new("RGB", (w, h), (255, 255, 255))
    ow, oh = int(w * rng.uniform(0.35, 0.55)), int(h * rng.uniform(0.45, 0.7))
    left, top = (w - ow) // 2, (h - oh) // 2
    shadow = Image.new("L", (w, h), 0)
    ImageDraw.Draw(shadow).ellipse(
        (left, top + oh - oh // 10, left + ow, top + oh + oh // 10), fill=90
    )
    shadow = shadow.filter(ImageFilter.BoxBlur(25))
    image.paste((150, 150, 150), (0, 0), shadow)
    body = _scene(ow, oh, rng, textures)
    mask = Image.new("L", (ow, oh), 0)
    ImageDraw.Draw(mask).rounded_rectangle(
        (0, 0, ow - 1, oh - 1), radius=min(ow, oh) // 5, fill=255
    )
    image.paste(body, (left, top), mask)
    return image


def kind_counts(count: int) -> dict[str, int]:
    """How many candidates of each kind ``web_candidates(count)`` makes: "photo" (good) first,
    then every bad kind of :data:`BAD_KIND_SHARES`, at least one each."""
    if count < MIN_WEB_CANDIDATES:
        raise ValueError(f"web_candidates needs count >= {MIN_WEB_CANDIDATES}, got {count}")
    bad = {kind: max(1, round(share * count)) for kind, share in BAD_KIND_SHARES.items()}
    return {"photo": count - sum(bad.values()), **bad}


def _noisy(image: Image.Image, sigma: float, rng: np.random.Generator) -> Image.Image:
    pixels = np.asarray(image, dtype=np.float32)
    pixels = pixels + rng.normal(0.0, sigma, pixels.shape).astype(np.float32)
    return Image.fromarray(np.clip(pixels + 0.5, 0, 255).astype(np.uint8))


def _near_copy(image: Image.Image, variant: int) -> bytes:
    """A copy a crawler meets on another site: re-encoded, resized or slightly cropped."""
    w, h = image.size
    if variant == 0:
        return _jpeg(image, quality=70)
    if variant == 1:
        return _jpeg(image.resize((w * 5 // 4, h * 5 // 4), Image.Resampling.BICUBIC), 85)
    # A border trim, 0.5 % off every side (0-2 bits of 64-bit phash on these scenes). Cropping
    # 1 % a side moved them 2-4 bits, 2 % a side 4-10: past the default distance of 4.
    dx, dy = w // 200, h // 200
    return _jpeg(image.crop((dx, dy, w - dx, h - dy)), 88)


def _corrupt(data: bytes, variant: int, rng: np.random.Generator) -> tuple[bytes, str]:
    """A broken file with an image name, and the reason the build gives it."""
    if variant == 0:  # a download cut short: the header is fine, the scan data ends early
        return data[: len(data) * 2 // 5], "truncated"
    if variant == 1:
        return rng.bytes(int(rng.integers(20_000, 80_000))), "not_an_image"
    page = b"<!DOCTYPE html><html><body><h1>Image not available</h1></body></html>\n"
    return page * 40, "not_an_image"  # a "soft 404": an HTML page with status 200


Item = tuple[str, bytes | None, str]


class _WebSource:
    """Makes one candidate at a time; each draws from its own random stream (seed, kind,
    index), so a candidate's bytes do not depend on how many of the other kinds there are."""

    def __init__(self, counts: dict[str, int], seed: int) -> None:
        self.counts = counts
        self.seed = seed
        self.streams = ["real", *counts]
        self.textures = _Textures(np.random.default_rng([seed, 0]))
        self.photo_bytes: list[bytes] = []  # generated good photographs, for exact copies
        self.originals: list[Image.Image] = []  # the first few of them, for near copies

    def rng(self, kind: str, index: int, part: int = 0) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.streams.index(kind) + 1, index, part])

    def scene(self, kind: str, index: int, size: tuple[int, int] | None = None) -> Image.Image:
        rng = self.rng(kind, index)
        w, h = size or SCENE_SIZES[int(rng.integers(len(SCENE_SIZES)))]
        return _scene(w, h, rng, self.textures)

    def real(self, name: str, index: int) -> Image.Image:
        return _bring_to_size(_real_photo(name), 1088, self.rng("real", index))

    def hard(self, i: int) -> Item:
        """A hard kind of good photograph (:data:`HARD_CASES`), kept."""
        name, photo, mirrored, make = HARD_CASES[i]
        original = _real_photo(photo)
        if mirrored:
            original = ImageOps.mirror(original)
        image = _bring_to_size(make(original), 1088, self.rng("real", 200 + i))
        return f"photo-{name}.jpg", _jpeg(image, 90), KEEP

    # One method per kind: (file name, bytes or None, expected outcome).

    def photo(self, i: int) -> Item:
        image = self.scene("photo", i)
        data = _jpeg(image, 90)
        self.photo_bytes.append(data)
        if len(self.originals) < self.counts["near_duplicate"]:
            self.originals.append(image)
        return f"photo-{i:04d}.jpg", data, KEEP

    def graphic(self, i: int) -> Item:
        w, h = SCENE_SIZES[i % len(SCENE_SIZES)]
        return f"graphic-{i:04d}.png", _png(_flat_graphic(w, h, self.rng("graphic", i))), "graphic"

    def document(self, i: int) -> Item:
        page = _document(1088, 1536, self.rng("document", i))
        if i % 2:  # scanned pages come as JPEG, exported ones as PNG
            return f"document-{i:04d}.jpg", _jpeg(page, 85), "document"
        return f"document-{i:04d}.png", _png(page), "document"

    def product(self, i: int) -> Item:
        image = _product(1280, 1280, self.rng("product", i), self.textures)
        return f"product-{i:04d}.jpg", _jpeg(image, 92), "white_background"

    def blurred(self, i: int) -> Item:
        image = self.scene("blurred", i).filter(ImageFilter.GaussianBlur(4))
        return f"blurred-{i:04d}.jpg", _jpeg(image, 90), "blurry"

    def dark(self, i: int) -> Item:
        if i == 0:
            # A real one: the Hubble deep field, dark sky (median luma 13) with bright galaxies.
            # It has highlights and few crushed blacks, so the histogram gate lets it by as it
            # does a night scene with lights; its noise fails NIQE (12.6 > 10).
            data = _jpeg(self.real("hubble_deep_field", 100), 90)
            return "dark-hubble.jpg", data, "low_quality:niqe"
        image = self.scene("dark", i).point(lambda v: v // 5)  # ~2.3 stops under
        return f"dark-{i:04d}.jpg", _jpeg(image, 90), "too_dark"

    def grayscale(self, i: int) -> Item:
        if i == 0:  # a real black-and-white photograph
            return "grayscale-camera.jpg", _jpeg(self.real("camera", 101), 90), "grayscale"
        image = self.scene("grayscale", i).convert("L")
        return f"grayscale-{i:04d}.jpg", _jpeg(image, 90), "grayscale"

    def noisy(self, i: int) -> Item:
        """Sensor noise: extreme noise trips the filter's upper Laplacian bound (LSDIR's
        8000); the high-ISO kind a phone makes in the dark passes it, and NIQE rejects it."""
        sigma, outcome = (90.0, "noisy") if i % 2 == 0 else (30.0, "low_quality:niqe")
        image = _noisy(self.scene("noisy", i), sigma, self.rng("noisy", i, 1))
        return f"noisy-{i:04d}.jpg", _jpeg(image, 90), outcome

    def compressed(self, i: int) -> Item:
        return f"compressed-{i:04d}.jpg", _jpeg(self.scene("compressed", i), 4), "low_quality:niqe"

    def panorama(self, i: int) -> Item:
        image = Image.new("RGB", (2304, 1088))  # two frames stitched: aspect 2.1 > 2
        image.paste(self.scene("panorama", 2 * i, size=(1152, 1088)), (0, 0))
        image.paste(self.scene("panorama", 2 * i + 1, size=(1152, 1088)), (1152, 0))
        return f"panorama-{i:04d}.jpg", _jpeg(image, 85), "bad_aspect"

    def too_small(self, i: int) -> Item:
        if i == 0:  # a real photograph at its own size, 451 x 300
            return "thumbnail-chelsea.jpg", _jpeg(_rgb("chelsea"), 90), "too_small"
        image = self.scene("too_small", i, size=(800, 533))
        return f"thumbnail-{i:04d}.jpg", _jpeg(image, 85), "too_small"

    def duplicate(self, i: int) -> Item:
        data = self.photo_bytes[-1 - i % len(self.photo_bytes)]
        return f"mirror-{i:04d}.jpg", data, REASON_DUPLICATE

    def near_duplicate(self, i: int) -> Item:
        image = self.originals[i % len(self.originals)]
        return f"copy-{i:04d}.jpg", _near_copy(image, i % 3), REASON_NEAR_DUPLICATE

    def corrupt(self, i: int) -> Item:
        data, reason = _corrupt(
            _jpeg(self.scene("corrupt", i), 85), i % 3, self.rng("corrupt", i, 1)
        )
        return f"broken-{i:04d}.jpg", data, reason

    def missing(self, i: int) -> Item:
        return f"missing-{i:04d}.jpg", None, "http_404"


def web_candidates(count: int = 300, seed: int = 0) -> WebCandidates:
    """A web-like demo source: name -> (bytes, or None for "the server answers 404"; the
    outcome of the default build: "keep" or the reject reason).

    About 57 % are good photographs (scikit-image's real colour photos brought to size, the
    hard kinds of :data:`HARD_CASES` made from them, and generated scenes), the rest at least
    one of each kind in :data:`BAD_KIND_SHARES`. The same ``count`` and ``seed`` give the
    same bytes, in the same (shuffled) order.
    """
    counts = kind_counts(count)
    source = _WebSource(counts, seed)
    real = REAL_PHOTOS[: counts["photo"] // 4]
    hard_cases = HARD_CASES[: counts["photo"] // 4]
    items: list[Item] = [
        (f"photo-{name}.jpg", _jpeg(source.real(name, i), 90), KEEP) for i, name in enumerate(real)
    ]
    items += [source.hard(i) for i in range(len(hard_cases))]
    items += [source.photo(i) for i in range(counts["photo"] - len(real) - len(hard_cases))]
    for kind, n in counts.items():
        if kind != "photo":
            items += [getattr(source, kind)(i) for i in range(n)]
    order = np.random.default_rng([seed, 1000]).permutation(len(items))
    return {items[i][0]: (items[i][1], items[i][2]) for i in order}
