"""A still WebP decoded straight to a reduced size by libwebp's own scaler.

libwebp can write its output rows through a rescaler (``WebPDecoderOptions.use_scaling``), so
a 4096x4096 wallpaper reduced 4x never exists at full size in RGB: the bitstream is decoded
row by row and each row is scaled as it comes. That halves the CPU of the reduced decode
(2.5 against 5.9 CPU s for the 14 4096x4096 wallpapers of the real set, bench/README.md,
Build) and needs no full-size buffer. Neither Pillow nor OpenCV exposes it (OpenCV decodes
at full size and resizes), so this module calls libwebp through ctypes: the copy Pillow's
wheel bundles, else the system's.

The pixels are libwebp's rescaler's, not the box reduction of a full decode: within a few
levels (mean absolute difference under 1 on the wallpapers measured; larger at sharp colour
edges, where libwebp scales the chroma planes before converting to RGB). Any failure (no
library, an unknown ABI, a bitstream libwebp refuses) returns None and the caller takes the
full decode, which names the fault.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import glob
import os

import numpy as np

# decode.h's WEBP_DECODER_ABI_VERSION whose struct layout is written below (libwebp >= 1.0);
# WebPInitDecoderConfigInternal refuses a library whose major ABI differs.
_ABI_VERSION = 0x0209
_MODE_RGB = 0
_VP8_STATUS_OK = 0


class _Features(ctypes.Structure):
    _fields_ = [
        ("width", ctypes.c_int),
        ("height", ctypes.c_int),
        ("has_alpha", ctypes.c_int),
        ("has_animation", ctypes.c_int),
        ("format", ctypes.c_int),
        ("pad", ctypes.c_uint32 * 5),
    ]


class _RGBABuffer(ctypes.Structure):
    _fields_ = [("rgba", ctypes.c_void_p), ("stride", ctypes.c_int), ("size", ctypes.c_size_t)]


class _YUVABuffer(ctypes.Structure):
    _fields_ = [
        *[(name, ctypes.c_void_p) for name in ("y", "u", "v", "a")],
        *[(name, ctypes.c_int) for name in ("y_stride", "u_stride", "v_stride", "a_stride")],
        *[(name, ctypes.c_size_t) for name in ("y_size", "u_size", "v_size", "a_size")],
    ]


class _Planes(ctypes.Union):
    _fields_ = [("RGBA", _RGBABuffer), ("YUVA", _YUVABuffer)]


class _DecBuffer(ctypes.Structure):
    _fields_ = [
        ("colorspace", ctypes.c_int),
        ("width", ctypes.c_int),
        ("height", ctypes.c_int),
        ("is_external_memory", ctypes.c_int),
        ("u", _Planes),
        ("pad", ctypes.c_uint32 * 4),
        ("private_memory", ctypes.c_void_p),
    ]


_OPTION_NAMES = (
    "bypass_filtering",
    "no_fancy_upsampling",
    "use_cropping",
    "crop_left",
    "crop_top",
    "crop_width",
    "crop_height",
    "use_scaling",
    "scaled_width",
    "scaled_height",
    "use_threads",
    "dithering_strength",
    "flip",
    "alpha_dithering_strength",
)


class _Options(ctypes.Structure):
    _fields_ = [*[(name, ctypes.c_int) for name in _OPTION_NAMES], ("pad", ctypes.c_uint32 * 5)]


class _DecoderConfig(ctypes.Structure):
    _fields_ = [("input", _Features), ("output", _DecBuffer), ("options", _Options)]


def _candidates() -> list[str]:
    """Pillow's bundled libwebp first (present wherever Pillow decodes WebP), then the system's."""
    paths = []
    try:
        import PIL

        bundled = os.path.join(os.path.dirname(os.path.dirname(PIL.__file__)), "pillow.libs")
        paths += sorted(glob.glob(os.path.join(bundled, "libwebp-*.so*")))
    except ImportError:  # pragma: no cover - Pillow is a dependency
        pass
    system = ctypes.util.find_library("webp")
    if system:
        paths.append(system)
    return paths


@functools.lru_cache(maxsize=1)
def library() -> ctypes.CDLL | None:
    """libwebp with the functions used here and a decoder ABI this module knows, or None."""
    for path in _candidates():
        try:
            lib = ctypes.CDLL(path)
            init = lib.WebPInitDecoderConfigInternal
            decode = lib.WebPDecode
            features = lib.WebPGetFeaturesInternal
        except (OSError, AttributeError):
            continue
        init.argtypes = [ctypes.POINTER(_DecoderConfig), ctypes.c_int]
        init.restype = ctypes.c_int
        decode.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.POINTER(_DecoderConfig)]
        decode.restype = ctypes.c_int
        features.argtypes = [
            ctypes.c_char_p,
            ctypes.c_size_t,
            ctypes.POINTER(_Features),
            ctypes.c_int,
        ]
        features.restype = ctypes.c_int
        if init(ctypes.byref(_DecoderConfig()), _ABI_VERSION):
            return lib
    return None


def decode_reduced(data: bytes, scale: int) -> np.ndarray | None:
    """RGB uint8 array of a still, opaque WebP reduced ``scale`` times on each side (sides
    rounded down: a last partial block of pixels is left out, where ``Image.reduce`` would
    average it alone), or None when libwebp is not usable here or refuses the bitstream, or
    it has alpha or animation (the caller's path)."""
    lib = library()
    if lib is None or scale < 1:
        return None
    config = _DecoderConfig()
    if not lib.WebPInitDecoderConfigInternal(ctypes.byref(config), _ABI_VERSION):
        return None
    status = lib.WebPGetFeaturesInternal(data, len(data), ctypes.byref(config.input), _ABI_VERSION)
    features = config.input
    if status != _VP8_STATUS_OK or features.has_alpha or features.has_animation:
        return None
    # whole blocks of scale x scale pixels only: libwebp's scaler then averages exactly the
    # pixels a box reduction would (a partial last row or column would shift its sampling grid)
    width, height = features.width // scale, features.height // scale
    if width < 1 or height < 1:
        return None
    out = np.empty((height, width, 3), dtype=np.uint8)
    options = config.options
    options.use_cropping = 1
    options.crop_width, options.crop_height = width * scale, height * scale
    options.use_scaling, options.scaled_width, options.scaled_height = 1, width, height
    buffer = config.output
    buffer.colorspace, buffer.is_external_memory = _MODE_RGB, 1
    buffer.u.RGBA.rgba = out.ctypes.data
    buffer.u.RGBA.stride = 3 * width
    buffer.u.RGBA.size = out.nbytes
    # ctypes releases the GIL for the call: fetch threads decode in parallel
    if lib.WebPDecode(data, len(data), ctypes.byref(config)) != _VP8_STATUS_OK:
        return None
    return out
