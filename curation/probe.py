"""Header probe and the one reduced decode.

:meth:`Prober.probe_header` reads only the header (format, size, mode, EXIF orientation): no pixel
is decoded, so a decompression bomb or an undersized image costs microseconds.
:meth:`Prober.reduced_decode` then decodes once, to at most ``reduced_max_side`` pixels on the long
side: JPEG through ``Image.draft`` (the decoder's DCT scaling, 1/2, 1/4 or 1/8, so the full image is
never materialised), a still opaque WebP through libwebp's own scaler (:mod:`curation.webp_scaled`,
likewise never at full size), other formats by a full decode (bounded by a semaphore, since it costs
full-size memory) then an integer box reduction (an RGBA image whose alpha is opaque throughout is
converted, not composited). The scale is the smallest power of two that fits, so the reduced long
side is in (max/2, max] for every format and the content filters see comparable scales. The result
is RGB with the EXIF orientation applied.

Reasons (stage ``probe`` or ``decode``): ``not_an_image``, ``unsupported_format``,
``decompression_bomb``, ``too_small``, ``bad_aspect``, ``truncated``, ``corrupt``.
"""

from __future__ import annotations

import io
import threading
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, UnidentifiedImageError

from curation.config import ProbeConfig
from curation.records import Rejection

# Pillow warns between MAX_IMAGE_PIXELS and twice that; we reject at MAX_IMAGE_PIXELS ourselves,
# with a reason, so the warning would only be noise.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)

EXTENSIONS = {
    "JPEG": "jpg",
    "MPO": "jpg",  # multi-picture JPEG from cameras; the first picture is a plain JPEG
    "PNG": "png",
    "WEBP": "webp",
    "AVIF": "avif",
    "TIFF": "tif",
    "BMP": "bmp",
    "GIF": "gif",
}
ORIENTATION_TAG = 0x0112
# EXIF orientation -> the transpose that shows the image upright (as ImageOps.exif_transpose).
_UPRIGHT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


@dataclass(frozen=True)
class HeaderProbe:
    format: str  # Pillow's format name: JPEG, PNG, ...
    extension: str  # jpg, png, ...
    width: int  # after EXIF orientation
    height: int
    mode: str  # as stored: RGB, L, CMYK, P, I;16, ...
    orientation: int  # EXIF orientation tag, 1 when absent


def _open(data: bytes, stage: str) -> Image.Image:
    try:
        return Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        raise Rejection(stage, "decompression_bomb", str(exc)) from None
    except UnidentifiedImageError:
        raise Rejection(stage, "not_an_image", "Pillow cannot identify the bytes") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise Rejection(stage, "corrupt", f"{type(exc).__name__}: {exc}") from None


def _orientation(image: Image.Image) -> int:
    if image.format == "PNG" and "exif" not in image.info:
        # No eXIf chunk before the pixels. Pillow would decode the whole PNG to look for one
        # after them (0.14-0.3 s for a wallpaper, and the reduced decode decodes it again):
        # such a late chunk is rare, and its PNG is taken as upright.
        return 1
    try:
        value = int(image.getexif().get(ORIENTATION_TAG, 1))
    except Exception:  # malformed EXIF is common and harmless: treat as upright
        return 1
    return value if 1 <= value <= 8 else 1


def _power_of_two_scale(long_side: int, max_side: int) -> int:
    scale = 1
    while long_side > max_side * scale:
        scale *= 2
    return scale


def to_rgb(image: Image.Image) -> Image.Image:
    """RGB view of any Pillow mode: 16-bit scaled (not clipped), alpha composited on white."""
    mode = image.mode
    if mode == "RGB":
        return image
    if mode.startswith("I;16") or mode in ("I", "F"):
        values = np.asarray(image, dtype=np.float32)
        peak = 65535.0 if mode.startswith("I;16") or values.max(initial=0) > 255 else 255.0
        gray = np.clip(values * (255.0 / peak) + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(gray).convert("RGB")
    if mode in ("RGBA", "LA") and image.getchannel("A").getextrema() == (255, 255):
        # opaque throughout (wallpapers often are): compositing on white changes nothing, and
        # skipping it saves three full-size passes (0.08-0.2 CPU s on a 9 MP PNG)
        return image.convert("RGB")
    if mode in ("RGBA", "LA", "PA", "La", "RGBa") or (mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return image.convert("RGB")  # L, P, CMYK (Adobe inversion handled by the decoder), YCbCr, 1


def _plain_webp(image: Image.Image) -> bool:
    """A still WebP without alpha: decoded through OpenCV (:func:`_decode_webp`)."""
    return (
        image.format == "WEBP" and image.mode == "RGB" and not getattr(image, "is_animated", False)
    )


def _webp_reduced(data: bytes, scale: int) -> Image.Image | None:
    """A still, opaque WebP decoded at 1/``scale`` by libwebp's scaler
    (:mod:`curation.webp_scaled`), or None (the caller then decodes at full size)."""
    from curation.webp_scaled import decode_reduced

    pixels = decode_reduced(data, scale)
    return None if pixels is None else Image.fromarray(pixels)


def _decode_webp(data: bytes) -> Image.Image | None:
    """A still, opaque WebP at full size through libwebp's plain decoder (OpenCV's), or None
    when OpenCV cannot decode it (the caller then lets Pillow decode and name the fault).

    Pillow decodes every WebP through libwebp's animation decoder (a canvas, then a copy):
    twice the CPU of the plain decode, 0.45 against 0.24 CPU s for a 4096x4096 wallpaper.
    The pixels are the same (both are libwebp; tests/test_probe_webp.py compares them).
    OpenCV is told to ignore EXIF orientation: the caller applies the header's.
    """
    import cv2

    bgr = cv2.imdecode(
        np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION
    )
    return None if bgr is None else Image.fromarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))


class Prober:
    """Header probe and reduced decode under one :class:`ProbeConfig`; thread-safe."""

    def __init__(self, config: ProbeConfig | None = None) -> None:
        self.config = config or ProbeConfig()
        # Set explicitly, not left to Pillow's default: Image.open then raises
        # DecompressionBombError above 2x this, and probe_header rejects above 1x.
        Image.MAX_IMAGE_PIXELS = self.config.max_pixels
        self._full_decodes = threading.BoundedSemaphore(self.config.full_decode_slots)

    def probe_header(self, data: bytes) -> HeaderProbe:
        cfg = self.config
        image = _open(data, "probe")
        fmt = image.format or "?"
        if fmt not in cfg.formats:
            raise Rejection("probe", "unsupported_format", fmt)
        width, height = image.size
        if width * height > cfg.max_pixels:
            raise Rejection(
                "probe", "decompression_bomb", f"{width}x{height} > {cfg.max_pixels} pixels"
            )
        orientation = _orientation(image)
        if orientation >= 5:  # 5..8 swap the axes
            width, height = height, width
        short, long = min(width, height), max(width, height)
        if short < cfg.min_side:
            raise Rejection(
                "probe", "too_small", f"{width}x{height}, shorter side < {cfg.min_side}"
            )
        if long > cfg.max_aspect * short:
            raise Rejection("probe", "bad_aspect", f"{width}x{height}, aspect > {cfg.max_aspect}")
        return HeaderProbe(
            fmt, EXTENSIONS.get(fmt, fmt.lower()), width, height, image.mode, orientation
        )

    def reduced_decode(self, data: bytes, header: HeaderProbe) -> Image.Image:
        """The one decode: RGB, upright, long side <= ``reduced_max_side``."""
        image = _open(data, "decode")
        width, height = image.size
        scale = _power_of_two_scale(max(width, height), self.config.reduced_max_side)
        try:
            if image.format in ("JPEG", "MPO"):
                image = self._decode_jpeg(image, scale)
            elif scale > 1 and _plain_webp(image) and (small := _webp_reduced(data, scale)):
                image = small  # libwebp's scaler: never at full size, so no decode slot
            else:
                with self._full_decodes:
                    image = self._decode_whole(data, image)
                    if scale > 1:
                        image = image.reduce(scale)
        except Image.DecompressionBombError as exc:
            raise Rejection("decode", "decompression_bomb", str(exc)) from None
        except (OSError, EOFError, SyntaxError, ValueError) as exc:
            message = f"{type(exc).__name__}: {exc}"
            truncated = isinstance(exc, EOFError) or "truncated" in str(exc).lower()
            raise Rejection("decode", "truncated" if truncated else "corrupt", message) from None
        transpose = _UPRIGHT.get(header.orientation)
        return image.transpose(transpose) if transpose is not None else image

    @staticmethod
    def _decode_whole(data: bytes, image: Image.Image) -> Image.Image:
        """Every format but JPEG: the whole image, RGB (a plain WebP through OpenCV)."""
        if _plain_webp(image):
            plain = _decode_webp(data)
            if plain is not None and plain.size == image.size:
                return plain
        image.load()
        return to_rgb(image)

    @staticmethod
    def _decode_jpeg(image: Image.Image, scale: int) -> Image.Image:
        width, height = image.size
        draft_scale = min(scale, 8)
        if draft_scale > 1:
            mode = "L" if image.mode == "L" else "RGB"
            image.draft(mode, (max(1, width // draft_scale), max(1, height // draft_scale)))
        image.load()
        image = to_rgb(image)
        if scale > draft_scale:  # over 8x: the DCT scaling stops at 1/8, finish with a box
            image = image.reduce(scale // draft_scale)
        return image
