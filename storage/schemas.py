"""Every Arrow/Parquet schema of a dataset version: the one source of truth.

A schema change bumps ``SCHEMA_VERSION``; the version is written into each Parquet file's
metadata (``mird.schema_version``) and into ``stats.json`` so a reader can tell what it holds.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

SCHEMA_VERSION = 1

#: Measurements taken by curation's probe and content filters, one nullable column each in the
#: manifest (and available to rejects' ``detail``). ``curation.filters`` defines what each means;
#: a new measurement is added here, not elsewhere.
MEASUREMENT_COLUMNS: dict[str, pa.DataType] = {
    "exif_orientation": pa.int8(),
    "blur_laplacian_var": pa.float32(),
    "flat_fraction": pa.float32(),
    "mean_luma": pa.float32(),
    "colorfulness": pa.float32(),
    "white_fraction": pa.float32(),
    "distinct_colors": pa.int32(),
    "top_colors_fraction": pa.float32(),  # share of pixels in the 8 commonest colours
    "edge_density": pa.float32(),
    "text_score": pa.float32(),
    "dark_fraction": pa.float32(),  # share of crushed-black pixels (exposure)
    "clipped_fraction": pa.float32(),  # share of clipped highlights
    "luma_p01": pa.float32(),  # 1st luma percentile
    "luma_p99": pa.float32(),  # 99th luma percentile
    "focus_sharpness": pa.float32(),  # edge sharpness of the sharpest 10 % of tiles
    "global_sharpness": pa.float32(),  # the same ratio over the whole image
    "focus_fraction": pa.float32(),  # share of tiles in focus
    "noise_floor": pa.float32(),  # sensor-noise sigma in the smoothest cells
    "noise_median": pa.float32(),  # noise and texture sigma in the median cell
    "exact_flat_fraction": pa.float32(),  # exactly flat 2x2 blocks (drawn fills)
    "saturation": pa.float32(),  # mean HSV saturation
    "straight_edges": pa.float32(),  # reach of the longest pixel-aligned edges
}

#: IQA metrics with a dedicated manifest column (``iqa_<name>``); any other configured metric
#: lands in ``iqa_extra`` (a map) so the schema stays stable when configuration changes.
IQA_COLUMNS: tuple[str, ...] = ("niqe", "brisque", "piqe", "nima")

_MANIFEST_FIELDS: list[pa.Field] = [
    pa.field("key", pa.string(), nullable=False),
    pa.field("shard", pa.string(), nullable=False),  # path relative to the dataset root
    pa.field("source", pa.string()),
    pa.field("url", pa.string()),  # URL, or path/URI for folder and object-store sources
    pa.field("caption", pa.string()),
    pa.field("license", pa.string()),
    pa.field("sha256", pa.string(), nullable=False),
    pa.field("phash", pa.uint64()),  # 64-bit perceptual hash (bit order: curation.hashing)
    pa.field("phash256", pa.binary(32)),
    pa.field("width", pa.int32(), nullable=False),
    pa.field("height", pa.int32(), nullable=False),
    pa.field("format", pa.string(), nullable=False),  # file extension of the member: jpg, png...
    pa.field("bytes", pa.int64(), nullable=False),
    pa.field("parent_key", pa.string()),  # patches: the key of the image they were cut from
    pa.field("crop_box", pa.list_(pa.int32(), 4)),  # patches: left, top, right, bottom
    *[pa.field(f"iqa_{name}", pa.float32()) for name in IQA_COLUMNS],
    pa.field("iqa_extra", pa.map_(pa.string(), pa.float32())),
    *[pa.field(name, dtype) for name, dtype in MEASUREMENT_COLUMNS.items()],
]

REJECT_FIELDS: list[pa.Field] = [
    pa.field("candidate_id", pa.string(), nullable=False),
    pa.field("url", pa.string()),  # URL, or path/URI
    pa.field("source", pa.string()),
    pa.field("stage", pa.string(), nullable=False),  # fetch, probe, filter, dedupe, quality...
    pa.field("reason", pa.string(), nullable=False),  # stable machine-readable code
    pa.field("detail", pa.string()),  # human-readable; for duplicates the kept key
]

#: Thumbnails of a bounded sample of rejects (``curation.reject_samples`` says which and why
#: they live in a table of their own): only candidates rejected after the reduced decode.
REJECT_SAMPLE_FIELDS: list[pa.Field] = [
    pa.field("candidate_id", pa.string(), nullable=False),  # as in the rejects table
    pa.field("url", pa.string()),
    pa.field("source", pa.string()),
    pa.field("stage", pa.string(), nullable=False),  # filter, quality, dedupe
    pa.field("reason", pa.string(), nullable=False),
    pa.field("detail", pa.string()),  # the threshold that fired: "name=value < limit"
    pa.field("thumbnail", pa.binary(), nullable=False),  # JPEG bytes
    pa.field("thumbnail_width", pa.int32(), nullable=False),
    pa.field("thumbnail_height", pa.int32(), nullable=False),
    pa.field("measurements", pa.map_(pa.string(), pa.float32())),  # filter measurements, IQA
]

SHARD_STATS_FIELDS: list[pa.Field] = [
    pa.field("shard", pa.string(), nullable=False),
    pa.field("samples", pa.int64(), nullable=False),
    pa.field("bytes", pa.int64(), nullable=False),  # size of the tar file
    pa.field("sha256", pa.string(), nullable=False),  # of the whole tar file
]


def _with_version(fields: list[pa.Field], name: str) -> pa.Schema:
    return pa.schema(
        fields,
        metadata={b"mird.schema_version": str(SCHEMA_VERSION).encode(), b"mird.table": name},
    )


MANIFEST_SCHEMA = _with_version(_MANIFEST_FIELDS, "manifest")
REJECTS_SCHEMA = _with_version(REJECT_FIELDS, "rejects")
REJECT_SAMPLES_SCHEMA = _with_version(REJECT_SAMPLE_FIELDS, "reject_samples")
SHARD_STATS_SCHEMA = _with_version(SHARD_STATS_FIELDS, "shard_stats")


def table_from_rows(rows: list[dict], schema: pa.Schema) -> pa.Table:
    """Build a table with exactly ``schema``'s columns; missing keys become nulls.

    Unknown keys are an error (a typo must not silently drop a measurement).
    """
    names = set(schema.names)
    for row in rows:
        unknown = set(row) - names
        if unknown:
            table = schema.metadata.get(b"mird.table", b"?").decode()
            raise ValueError(f"unknown {table} column(s): {', '.join(sorted(unknown))}")
    columns = {name: [row.get(name) for row in rows] for name in schema.names}
    return pa.Table.from_pydict(columns, schema=schema)


def parquet_bytes(table: pa.Table) -> bytes:
    """A table as Parquet bytes; fixed writer settings (and no timestamps) keep the same table
    byte-identical on disk."""
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd", write_statistics=True)
    return sink.getvalue()


def read_parquet_files(fs: Any, paths: Iterable[str], schema: pa.Schema) -> pa.Table:
    """Read Parquet files of one schema through ``fs`` into one table (empty if no paths)."""
    tables = []
    for path in paths:
        with fs.open(path, "rb") as handle:
            tables.append(pq.read_table(handle, schema=schema))
    return pa.concat_tables(tables) if tables else schema.empty_table()
