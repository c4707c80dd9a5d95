"""Test-set decontamination: no image of a benchmark, nor a near copy of one, in the dataset.

Restoration benchmarks are public photographs (BSD68 comes from BSD500, Kodak24, Urban100,
the sources of Rain100L and SOTS); a crawl can pick them up, or resized and recompressed copies
of them, and a model pre-trained on those is then scored on its own training data. A build
given test sets (``dedupe.test_sets``, ``mird build --exclude DIR_OR_URI``) hashes every image
under each of them (any folder or object-store prefix, searched recursively, so the layouts
``mird evaluate`` reads work as they are: ``test/denoise/bsd68``, ``derain/Rain100L/...``)
with the same 64-bit perceptual hash the near-duplicate search uses, and rejects a candidate
within ``test_set_distance`` bits of any of them as ``test_set_overlap``, naming the test
image. The version's stats and card list the test sets it was checked against.
"""

from __future__ import annotations

import functools
import threading
from dataclasses import dataclass

import numpy as np
from PIL import Image

from curation.config import SourceConfig
from curation.hashing import perceptual_hash64
from curation.quality import open_reduced
from curation.reasons import code
from curation.records import Rejection
from curation.sources import iter_candidates
from storage.uri import open_fs

REASON = code("test_set_overlap", "dedupe")
_EXTENSIONS = ["jpg", "jpeg", "png", "webp", "tif", "tiff", "bmp", "ppm", "pgm"]


class TestSetError(ValueError):
    """A test set that cannot be read (the message names it)."""

    __test__ = False  # not a pytest class, whatever its name


@dataclass(frozen=True)
class TestSetIndex:
    """The perceptual hashes of every image of some test sets."""

    __test__ = False  # not a pytest class, whatever its name

    uris: tuple[str, ...]
    images: tuple[str, ...]  # URI of each hashed image
    hashes: np.ndarray  # uint64, one per image
    per_set: tuple[int, ...]  # images hashed per test set, in ``uris`` order

    def nearest(self, phash: int) -> tuple[str, int] | None:
        """(the closest test image, its Hamming distance), or None without test images."""
        if not self.images:
            return None
        distances = np.bitwise_count(self.hashes ^ np.uint64(phash))
        best = int(np.argmin(distances))
        return self.images[best], int(distances[best])

    def check(self, phash: int, distance: int) -> None:
        """Raise ``test_set_overlap`` if ``phash`` is within ``distance`` of a test image."""
        found = self.nearest(phash)
        if found is not None and found[1] <= distance:
            image, bits = found
            raise Rejection("dedupe", REASON, f"{bits} bits from test image {image}")

    def summary(self) -> list[dict[str, object]]:
        return [{"uri": u, "images": n} for u, n in zip(self.uris, self.per_set, strict=True)]


def _hash(uri: str) -> int:
    fs, path = open_fs(uri)
    try:
        image = open_reduced(fs.cat_file(path), 1024)
        return perceptual_hash64(image.convert("RGB") if image.mode != "RGB" else image)
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise TestSetError(f"test image {uri}: cannot be read ({exc})") from None


_LOCK = threading.Lock()


@functools.lru_cache(maxsize=4)
def _cached(uris: tuple[str, ...]) -> TestSetIndex:
    images: list[str] = []
    hashes: list[int] = []
    per_set: list[int] = []
    for uri in uris:
        try:
            found = [c.url for c in iter_candidates(SourceConfig(uri=uri, extensions=_EXTENSIONS))]
        except FileNotFoundError:
            raise TestSetError(f"test set {uri}: no such folder or prefix") from None
        if not found:
            raise TestSetError(f"test set {uri}: no image in it")
        images.extend(found)
        hashes.extend(_hash(image) for image in found)
        per_set.append(len(found))
    array = np.array(hashes, dtype=np.uint64)
    return TestSetIndex(tuple(uris), tuple(images), array, tuple(per_set))


def test_set_index(uris: list[str] | tuple[str, ...]) -> TestSetIndex:
    """The index of ``uris``, built once per process (partitions of a build share it)."""
    with _LOCK:
        return _cached(tuple(uris))


test_set_index.__test__ = False  # type: ignore[attr-defined]
