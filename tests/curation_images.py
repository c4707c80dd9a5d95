"""Generated test images: photograph-like textures and the kinds of non-photographs curation
must reject. Deterministic for a given seed; used by tests and benchmarks.
"""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont


def _upsample(field: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bicubic upsampling of a float field (H, W) to size (width, height)."""
    image = Image.fromarray(field.astype(np.float32), mode="F")
    return np.asarray(image.resize(size, Image.Resampling.BICUBIC))


def dead_leaves(width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    """Occluding discs with power-law sizes (the "dead leaves" model of natural images): the
    sharp object boundaries a photograph has and smooth noise lacks."""
    image = Image.new("RGB", (width, height), tuple(int(v) for v in rng.integers(60, 200, 3)))
    draw = ImageDraw.Draw(image)
    scale = max(width, height)
    radii = np.sort(scale * 0.01 * (1 - rng.random(400)) ** (-1 / 1.5))[::-1]
    for radius in np.minimum(radii, scale * 0.4):
        x, y = rng.uniform(0, width), rng.uniform(0, height)
        colour = tuple(int(v) for v in np.clip(rng.normal(125, 50, 3), 0, 255))
        draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=colour)
    return np.asarray(image, dtype=np.float32)


def photo_like_array(width: int, height: int, seed: int = 0, grain: float = 2.5) -> np.ndarray:
    """An RGB uint8 array with a photograph's statistics: 1/f multi-scale structure in luma,
    weaker correlated chroma, a lighting gradient and sensor grain."""
    rng = np.random.default_rng(seed)
    luma = np.zeros((height, width), np.float32)
    chroma = np.zeros((2, height, width), np.float32)
    octaves = max(3, int(np.log2(max(width, height))) - 2)
    for k in range(octaves):
        cells = 2 ** (k + 2)
        h, w = (
            max(2, cells * height // max(width, height)),
            max(2, cells * width // max(width, height)),
        )
        amplitude = 0.8**k
        luma += amplitude * _upsample(rng.standard_normal((h, w)), (width, height))
        if k < octaves - 2:
            for c in range(2):
                chroma[c] += (
                    0.6 * amplitude * _upsample(rng.standard_normal((h, w)), (width, height))
                )
    luma = luma / (luma.std() + 1e-6)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    light = (np.cos(angle) * xx / width + np.sin(angle) * yy / height) * 0.8
    y = 120 + 45 * (luma + light)
    cb = 18 * chroma[0] / (chroma[0].std() + 1e-6) + rng.uniform(-15, 15)
    cr = 18 * chroma[1] / (chroma[1].std() + 1e-6) + rng.uniform(-15, 15)
    rgb = np.stack([y + 1.402 * cr, y - 0.344 * cb - 0.714 * cr, y + 1.772 * cb], axis=-1)
    rgb = 0.5 * rgb + 0.5 * dead_leaves(width, height, rng) * (1 + 0.25 * luma[..., None])
    if grain:
        rgb += rng.normal(0, grain, size=(height, width, 1)).astype(np.float32)
    return np.clip(rgb, 0, 255).astype(np.uint8)


def photo_like(
    width: int = 1024, height: int = 768, seed: int = 0, grain: float = 2.5
) -> Image.Image:
    return Image.fromarray(photo_like_array(width, height, seed, grain))


def blurred(width: int = 1024, height: int = 768, seed: int = 0) -> Image.Image:
    return photo_like(width, height, seed).filter(ImageFilter.GaussianBlur(radius=width / 256))


def dark(width: int = 1024, height: int = 768, seed: int = 0) -> Image.Image:
    array = photo_like_array(width, height, seed).astype(np.float32) * 0.18
    return Image.fromarray(array.astype(np.uint8))


def flat(width: int = 1024, height: int = 768, seed: int = 0) -> Image.Image:
    """A clear-sky-like frame: a smooth two-colour gradient with faint noise."""
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 1, height, dtype=np.float32)[:, None, None]
    top, bottom = np.array([70, 120, 200], np.float32), np.array([170, 200, 235], np.float32)
    rgb = top + (bottom - top) * t + rng.normal(0, 0.8, size=(height, width, 3))
    return Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8))


def grayscale_photo(width: int = 1024, height: int = 768, seed: int = 0) -> Image.Image:
    return photo_like(width, height, seed).convert("L").convert("RGB")


def line_art(width: int = 1024, height: int = 768, seed: int = 0) -> Image.Image:
    """A CAD/line drawing: black strokes on white."""
    rng = np.random.default_rng(seed)
    image = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    for _ in range(40):
        x0, x1 = sorted(rng.integers(0, width, 2))
        y0, y1 = sorted(rng.integers(0, height, 2))
        kind = rng.integers(0, 3)
        stroke = int(rng.integers(2, 5))
        if kind == 0:
            draw.line([(x0, y0), (x1, y1)], fill=(0, 0, 0), width=stroke)
        elif kind == 1:
            draw.rectangle([x0, y0, x1, y1], outline=(20, 20, 20), width=stroke)
        else:
            draw.ellipse([x0, y0, x1, y1], outline=(0, 0, 0), width=stroke)
    return image


def flat_graphic(width: int = 1024, height: int = 768, seed: int = 0) -> Image.Image:
    """A logo/poster: flat coloured shapes on a coloured ground."""
    rng = np.random.default_rng(seed)
    image = Image.new("RGB", (width, height), tuple(int(v) for v in rng.integers(0, 256, 3)))
    draw = ImageDraw.Draw(image)
    for _ in range(12):
        x0, x1 = sorted(rng.integers(0, width, 2))
        y0, y1 = sorted(rng.integers(0, height, 2))
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        (draw.ellipse if rng.integers(0, 2) else draw.rectangle)([x0, y0, x1, y1], fill=colour)
    return image


def text_page(width: int = 768, height: int = 1024, seed: int = 0) -> Image.Image:
    """A scanned page: dark text lines on off-white paper, with margins."""
    rng = np.random.default_rng(seed)
    image = Image.new("RGB", (width, height), (246, 244, 238))
    draw = ImageDraw.Draw(image)
    size = max(10, height // 45)
    font = ImageFont.load_default(size=size)
    words = ["restoration", "image", "the", "of", "dataset", "photograph", "a", "noise", "model"]
    y = height // 12
    while y < height - height // 12:
        line = " ".join(rng.choice(words, size=12))
        draw.text((width // 10, y), line, fill=(25, 25, 30), font=font)
        y += int(size * 1.6)
    return image


def product_on_white(width: int = 1024, height: int = 768, seed: int = 0) -> Image.Image:
    """A product shot: a textured, coloured object with a soft shadow on a white sweep."""
    rng = np.random.default_rng(seed)
    canvas = np.full((height, width, 3), 255, np.float32)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    cx, cy = width * rng.uniform(0.4, 0.6), height * rng.uniform(0.4, 0.6)
    rx, ry = width * 0.22, height * 0.3
    shadow = np.exp(-(((xx - cx - 20) / (rx * 1.2)) ** 2 + ((yy - cy + ry) / (ry * 0.3)) ** 2))
    canvas -= 40 * shadow[..., None]
    mask = ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1.0
    texture = photo_like_array(width, height, seed + 1000).astype(np.float32)
    canvas[mask] = texture[mask]
    return Image.fromarray(np.clip(canvas, 0, 255).astype(np.uint8))


# -- encodings and crafted files ----------------------------------------------------------------


def jpeg_bytes(image: Image.Image, quality: int = 90, **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality, **params)
    return buffer.getvalue()


def png_bytes(image: Image.Image, **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG", compress_level=1, **params)
    return buffer.getvalue()


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


def png_declaring(width: int, height: int) -> bytes:
    """A tiny PNG whose header declares ``width`` x ``height`` RGB pixels (a bomb's header)."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    body = zlib.compress(b"\x00" * 1024)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", body)
        + _png_chunk(b"IEND", b"")
    )


def png16_rgb(array: np.ndarray) -> bytes:
    """A 16-bit-per-channel RGB PNG of a uint8 array (values scaled by 257), written by hand
    since Pillow writes 16-bit only for greyscale."""
    height, width, _ = array.shape
    wide = (array.astype(">u2") * 257).reshape(height, width * 3)
    raw = b"".join(b"\x00" + row.tobytes() for row in wide)
    header = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", zlib.compress(raw, 1))
        + _png_chunk(b"IEND", b"")
    )


def cmyk_jpeg(image: Image.Image) -> bytes:
    return jpeg_bytes(image.convert("CMYK"), quality=90)


def exif_rotated_jpeg(image: Image.Image, orientation: int = 6) -> bytes:
    """``image`` stored as is, with an EXIF orientation tag asking viewers to rotate it."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    return jpeg_bytes(image, exif=exif.tobytes())


def palette_png_with_alpha(image: Image.Image, transparent_corner: int = 64) -> bytes:
    """``image`` quantised to 256 colours with one fully transparent palette entry used in
    the top-left corner."""
    paletted = image.quantize(colors=255)
    pixels = np.asarray(paletted).copy()
    pixels[:transparent_corner, :transparent_corner] = 255
    out = Image.fromarray(pixels, mode="P")
    palette = paletted.getpalette()[: 255 * 3] + [0, 0, 0]
    out.putpalette(palette)
    return png_bytes(out, transparency=255)
