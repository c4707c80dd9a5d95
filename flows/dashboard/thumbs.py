"""Thumbnails for the dashboard: small JPEG data: URIs of samples read from tar shards."""

from __future__ import annotations

import base64
import io

from PIL import Image, ImageOps, UnidentifiedImageError

from storage.errors import StorageError
from storage.shards import MemberLocation, MemberReader, index_tar
from storage.uri import join
from storage.versions import Dataset

THUMB_SIDE = 160


def thumbnail_data_uri(data: bytes, side: int = THUMB_SIDE) -> str:
    """A JPEG no larger than ``side`` x ``side``, as a data: URI (EXIF orientation applied)."""
    with Image.open(io.BytesIO(data)) as image:
        image.draft("RGB", (side * 2, side * 2))  # JPEG: decode at a reduced scale, fast
        image = ImageOps.exif_transpose(image).convert("RGB")
        image.thumbnail((side, side), Image.Resampling.LANCZOS)
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=80, optimize=True)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


class ThumbSource:
    """Reads sample bytes from tar shards (relative to ROOT/NAME) and makes thumbnails."""

    def __init__(self, dataset: Dataset, problems: list[str]) -> None:
        self.dataset = dataset
        self.problems = problems
        self._indexes: dict[str, dict[str, MemberLocation] | None] = {}  # None: unreadable
        self._reader = MemberReader()

    def image(self, shard: str, key: str) -> tuple[str | None, str]:
        """(data URI, "") or (None, why not); unreadable bytes are reported as problems."""
        uri = join(self.dataset.uri, shard)
        try:
            if uri not in self._indexes:
                self._indexes[uri] = None  # reported once, below, if index_tar fails
                self._indexes[uri] = index_tar(uri)
            index = self._indexes[uri]
            if index is None:
                return None, "unreadable"
            location = index.get(key)
            if location is None:
                raise StorageError(f"{uri}: no member for sample {key!r}")
            return thumbnail_data_uri(self._reader.read(location)), ""
        except (StorageError, OSError, UnidentifiedImageError, Image.DecompressionBombError) as exc:
            message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            if uri not in message:
                message = f"{uri}: {key}: {message}"
            self.problems.append(message)
            return None, "unreadable"

    def close(self) -> None:
        self._reader.close()
