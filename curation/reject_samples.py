"""Thumbnails of rejected candidates, kept in the published version so false rejects can be seen.

**Which rejects.** Only those rejected after the reduced decode: content filters (stage
``filter``), quality thresholds (``quality``) and global dedupe (``dedupe``, whose bytes are
still in the staging shards at publish time). Earlier rejects (a 404, not an image, too small)
never had pixels in memory, and decoding them again would cost what the probe saved.

**How many.** Per (stage, reason), the thumbnails of the ``per_reason`` smallest candidate ids.
Ids are hashes of the URL, so this is a uniform random sample of the reason's rejects, and it
does not depend on which worker thread finished first. Each partition keeps its own smallest
``per_reason`` (:class:`RejectSampler`); publish keeps the smallest of their union
(:func:`select_per_reason`). The version's sample is inside that union whatever the
partitioning, so the cap holds for the version as a whole and the result is deterministic. A
partition encodes a thumbnail only for a reject that enters its current selection (about
k (1 + ln(n / k)) encodes for n rejects of a reason), in the worker threads.

**Where they live.** A table of their own, ``vN/reject_samples/*.parquet``
(``storage.schemas.REJECT_SAMPLES_SCHEMA``: the JPEG bytes, their size, the measurements and
the reject's detail), rather than nullable columns of the rejects table or members of shards:

- the rejects table has one row per reject (millions), read by every incremental build
  (``plan_build``) and scanned for the funnel; thumbnails concern a bounded few per reason, so
  columns there would be almost all null and would make readers of the rejects carry images;
- shards hold the dataset (streamed for training, checked by ``mird verify`` against the
  manifest): rejected images must not be trained on;
- ``REJECTS_SCHEMA`` stays as it was, so older versions and their readers stay valid; a version
  without the table reads as an empty one (``PublishedVersion.reject_samples``);
- bounded (k x reasons x a few KB), the table reads whole with DuckDB or pyarrow.

Each version holds the thumbnails of its own build's rejects, as its rejects table holds its
build's rejects; the versions before it keep theirs (published versions are never modified).
"""

from __future__ import annotations

import bisect
import io
import logging
import threading
from collections.abc import Iterable, Mapping
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from PIL import Image, ImageOps

from curation.config import RejectSampleConfig
from curation.records import Reject
from storage.schemas import IQA_COLUMNS, MEASUREMENT_COLUMNS
from storage.shards import MemberReader, index_tar
from storage.uri import join

log = logging.getLogger(__name__)

GroupKey = tuple[str, str]  # (stage, reason)


def thumbnail_jpeg(image: Image.Image, max_side: int, quality: int) -> tuple[bytes, int, int]:
    """(JPEG bytes, width, height) of ``image`` with its long side at most ``max_side``."""
    scale = min(1.0, max_side / max(image.size))
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    thumb = image if image.mode == "RGB" else image.convert("RGB")
    if size != thumb.size:
        thumb = thumb.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
    buffer = io.BytesIO()
    thumb.save(buffer, "JPEG", quality=quality, optimize=True)
    return buffer.getvalue(), size[0], size[1]


def measurement_map(values: Mapping[str, Any]) -> dict[str, float] | None:
    """Every numeric value of ``values`` as a float, by name (None: nothing numeric)."""
    out: dict[str, float] = {}
    for name, value in values.items():
        if value is None:
            continue
        try:
            out[str(name)] = float(value)
        except (TypeError, ValueError):
            continue
    return dict(sorted(out.items())) or None


def sample_row(
    reject: Reject | Mapping[str, Any],
    thumbnail: tuple[bytes, int, int],
    measurements: Mapping[str, Any],
) -> dict[str, Any]:
    """A REJECT_SAMPLES_SCHEMA row from a Reject (or a rejects-table row) and its thumbnail."""
    row = reject.to_row() if isinstance(reject, Reject) else dict(reject)
    data, width, height = thumbnail
    return {
        "candidate_id": row["candidate_id"],
        "url": row.get("url"),
        "source": row.get("source"),
        "stage": row["stage"],
        "reason": row["reason"],
        "detail": row.get("detail") or None,
        "thumbnail": data,
        "thumbnail_width": width,
        "thumbnail_height": height,
        "measurements": measurement_map(measurements),
    }


class _Smallest:
    """Per (stage, reason), the rows of the ``limit`` smallest candidate ids seen so far."""

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self.ids: dict[GroupKey, list[str]] = {}  # sorted
        self.rows: dict[GroupKey, dict[str, dict[str, Any]]] = {}

    def wants(self, key: GroupKey, candidate_id: str) -> bool:
        if self.limit == 0:
            return False
        ids = self.ids.get(key, [])
        if candidate_id in self.rows.get(key, {}):
            return False
        return self.limit is None or len(ids) < self.limit or candidate_id < ids[-1]

    def add(self, key: GroupKey, candidate_id: str, row: dict[str, Any]) -> None:
        if not self.wants(key, candidate_id):
            return
        ids = self.ids.setdefault(key, [])
        rows = self.rows.setdefault(key, {})
        bisect.insort(ids, candidate_id)
        rows[candidate_id] = row
        if self.limit is not None and len(ids) > self.limit:
            del rows[ids.pop()]

    def sorted_rows(self) -> list[dict[str, Any]]:
        return [self.rows[key][cid] for key in sorted(self.ids) for cid in self.ids[key]]


class RejectSampler:
    """A partition's reject thumbnails; ``offer`` is called from the worker threads.

    The thumbnail is encoded outside the lock, and only when the reject would enter the
    selection, so threads do not wait on each other's JPEG encoding.
    """

    def __init__(self, config: RejectSampleConfig | None = None) -> None:
        self.config = config or RejectSampleConfig()
        self._lock = threading.Lock()
        self._smallest = _Smallest(self.config.per_reason)

    def offer(
        self,
        reject: Reject,
        image: Image.Image | None,
        measurements: Mapping[str, Any] | None = None,
    ) -> bool:
        """Keep a thumbnail of ``image`` for ``reject`` if it belongs in the sample; never
        raises (a thumbnail is not worth losing the reject over). True when kept."""
        if image is None:
            return False
        key = (reject.stage, reject.reason)
        with self._lock:
            if not self._smallest.wants(key, reject.candidate.id):
                return False
        try:
            thumbnail = thumbnail_jpeg(image, self.config.max_side, self.config.quality)
        except Exception:  # an odd image mode, a Pillow bug: the reject stays, unillustrated
            log.exception("reject %s: no thumbnail", reject.candidate.id)
            return False
        values = reject.measurements if measurements is None else measurements
        row = sample_row(reject, thumbnail, values)
        with self._lock:
            self._smallest.add(key, reject.candidate.id, row)
        return True

    def rows(self) -> list[dict[str, Any]]:
        """REJECT_SAMPLES_SCHEMA rows, sorted by stage, reason and candidate id."""
        with self._lock:
            return self._smallest.sorted_rows()


def select_per_reason(
    batches: Iterable[Iterable[dict[str, Any]]], per_reason: int | None
) -> list[dict[str, Any]]:
    """The rows of the ``per_reason`` smallest candidate ids per (stage, reason), over
    ``batches`` read one at a time (a partition's table each: memory stays bounded by the
    selection plus one batch); sorted by stage, reason and candidate id."""
    smallest = _Smallest(per_reason)
    for batch in batches:
        for row in batch:
            smallest.add((row["stage"], row["reason"]), row["candidate_id"], row)
    return smallest.sorted_rows()


def _staged_measurements(row: Mapping[str, Any]) -> dict[str, Any]:
    """A staged manifest row's measurements and IQA scores, by the names the partition uses
    (``niqe``, not ``iqa_niqe``), so one map has the same keys whatever the stage."""
    values: dict[str, Any] = {name: row.get(name) for name in MEASUREMENT_COLUMNS}
    values.update({name: row.get(f"iqa_{name}") for name in IQA_COLUMNS})
    values.update(dict(row.get("iqa_extra") or ()))
    return values


def _decode_reduced(data: bytes, max_side: int) -> Image.Image:
    with Image.open(io.BytesIO(data)) as image:
        image.draft("RGB", (max_side, max_side))  # JPEG: decode at a reduced scale
        return ImageOps.exif_transpose(image).convert("RGB")


def dropped_samples(
    dataset_uri: str,
    staged: pa.Table,
    dropped: Mapping[str, Mapping[str, Any]],
    config: RejectSampleConfig,
) -> list[dict[str, Any]]:
    """Thumbnails of candidates that global dedupe dropped (key -> reject row), made from
    their bytes in the build's staging shards (``staged``: the staging manifest, whose
    ``shard`` is relative to ``dataset_uri``). The selection is made before reading any bytes;
    a sample whose bytes cannot be read or decoded is skipped with a warning."""
    chosen = select_per_reason([dropped.values()], config.per_reason)
    if not chosen:
        return []
    wanted = pa.array([row["candidate_id"] for row in chosen], pa.string())
    found = staged.filter(pc.is_in(staged.column("key"), wanted)).to_pylist()
    by_key = {row["key"]: row for row in found}
    rows: list[dict[str, Any]] = []
    indexes: dict[str, dict[str, Any]] = {}
    reader = MemberReader()
    try:
        for reject in chosen:
            staged_row = by_key.get(reject["candidate_id"])
            if staged_row is None:
                continue
            try:
                shard = join(dataset_uri, staged_row["shard"])
                if shard not in indexes:
                    indexes[shard] = index_tar(shard)
                image = _decode_reduced(
                    reader.read(indexes[shard][staged_row["key"]]), config.max_side
                )
                thumbnail = thumbnail_jpeg(image, config.max_side, config.quality)
            except Exception as exc:  # noqa: BLE001 - publish goes on without this thumbnail
                log.warning("reject %s: no thumbnail (%s)", reject["candidate_id"], exc)
                continue
            rows.append(sample_row(reject, thumbnail, _staged_measurements(staged_row)))
    finally:
        reader.close()
    return rows
