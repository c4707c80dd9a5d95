"""Content hashes of accepted records: sha256 of the original bytes and a perceptual hash.

The perceptual hash is computed from the one reduced decode the caller already holds (a PIL
image of at most ~1024 px on its long side), never from a second decode of the original.

Bit order of the 64-bit hashes: imagehash returns a boolean ``hash_size x hash_size`` array;
it is flattened row-major and the first element becomes the most significant bit. The integer
is therefore ``int(str(imagehash_value), 16)`` (imagehash's own hex form), and the Hamming
distance of two hashes is ``popcount(a ^ b)``.

Storage: 64-bit hashes are ``uint64`` in numpy and in Arrow/Parquet (Parquet's INT64 with the
unsigned logical type; DuckDB reads it as UBIGINT). Engines without unsigned integers can keep
the same bits as int64 via :func:`to_int64` / :func:`from_int64` (a reinterpretation, not a
conversion, so XOR/popcount give the same distances). The 256-bit verification phash
(``hash_size=16``) is 32 big-endian bytes (Arrow ``fixed_size_binary(32)``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Literal

import imagehash
import numpy as np
from PIL import Image

HashKind = Literal["phash", "dhash", "whash"]
HASH_KINDS: tuple[str, ...] = ("phash", "dhash", "whash")

# whash picks its working resolution from the image size by default, so a resized copy would
# be hashed at another scale; a fixed scale keeps copies of different sizes comparable.
WHASH_IMAGE_SCALE = 64

_HASHERS: dict[str, Callable[[Image.Image], imagehash.ImageHash]] = {
    "phash": lambda im: imagehash.phash(im, hash_size=8),
    "dhash": lambda im: imagehash.dhash(im, hash_size=8),
    "whash": lambda im: imagehash.whash(im, hash_size=8, image_scale=WHASH_IMAGE_SCALE),
}


class HashingError(ValueError):
    """An image cannot be hashed as asked (an unknown hash kind)."""


def sha256_hex(data: bytes) -> str:
    """Hex sha256 of the original (undecoded) bytes."""
    return hashlib.sha256(data).hexdigest()


def bits_to_bytes(bits: np.ndarray) -> bytes:
    """Boolean hash array -> big-endian bytes, first (row-major) bit most significant."""
    return np.packbits(np.asarray(bits, dtype=bool).ravel()).tobytes()


def perceptual_hash64(image: Image.Image, kind: HashKind = "phash") -> int:
    """64-bit perceptual hash of ``image`` as an unsigned int (see the module doc for bit order)."""
    if kind not in _HASHERS:
        raise HashingError(f"unknown hash kind {kind!r}; expected one of {', '.join(HASH_KINDS)}")
    return int.from_bytes(bits_to_bytes(_HASHERS[kind](image).hash), "big")


def phash256(image: Image.Image) -> bytes:
    """256-bit phash (hash_size=16) as 32 big-endian bytes, for verifying candidate pairs."""
    return bits_to_bytes(imagehash.phash(image, hash_size=16).hash)


def hamming64(a: int, b: int) -> int:
    """Hamming distance of two 64-bit hashes."""
    return (int(a) ^ int(b)).bit_count()


def hamming_bytes(a: bytes, b: bytes) -> int:
    """Hamming distance of two equally long byte hashes (e.g. two 256-bit phashes)."""
    if len(a) != len(b):
        raise ValueError(f"hash lengths differ: {len(a)} and {len(b)} bytes")
    return (int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).bit_count()


def to_int64(hashes: np.ndarray) -> np.ndarray:
    """Reinterpret uint64 hashes as int64 (same bits) for engines without unsigned ints."""
    return np.ascontiguousarray(hashes, dtype=np.uint64).view(np.int64)


def from_int64(hashes: np.ndarray) -> np.ndarray:
    """Inverse of :func:`to_int64`."""
    return np.ascontiguousarray(hashes, dtype=np.int64).view(np.uint64)
