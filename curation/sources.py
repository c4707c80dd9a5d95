"""Sources -> candidates -> deterministic partitions.

A source is a URL list (img2dataset's input formats: ``.txt``, ``.csv``, ``.tsv``, ``.jsonl``,
``.parquet``, the text ones optionally ``.gz``) or a folder, glob or object-store prefix read
through fsspec. Candidate ids are a hash of the URL/URI, and partitions are consecutive runs of
``partition_size`` candidates in the source's order (files: sorted by path), so an unchanged
source maps every candidate to the same partition on every run, and an appended list only
adds partitions at the end.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from collections.abc import Iterable, Iterator
from typing import IO, Any

import pyarrow.parquet as pq

from curation.config import SourceConfig
from curation.records import Candidate, Partition
from curation.urls import split_credentials
from storage.uri import open_fs, unstrip

LIST_FORMATS = ("txt", "csv", "tsv", "jsonl", "parquet")
_GLOB_CHARS = re.compile(r"[*?\[]")


class SourceError(ValueError):
    """A source that cannot be read as configured; the message names the file."""


class SourceNotFoundError(SourceError, FileNotFoundError):
    """A source file, folder or prefix that does not exist."""


def candidate_id(url: str) -> str:
    """Stable 80-bit id of a URL/URI (collisions are negligible below ~10^10 candidates)."""
    return hashlib.blake2b(url.encode("utf-8"), digest_size=10).hexdigest()


def source_name(source: SourceConfig) -> str:
    """The source's name: configured, else the file or folder stem, made path-safe."""
    if source.name:
        name = source.name
    else:
        fixed = _GLOB_CHARS.split(source.uri, 1)[0]
        if fixed != source.uri:  # a glob is named after the folder it starts in
            fixed = fixed.rsplit("/", 1)[0]
        base = fixed.rstrip("/").rsplit("/", 1)[-1]
        for suffix in (".gz", *(f".{fmt}" for fmt in LIST_FORMATS)):
            base = base.removesuffix(suffix)
        name = base or "source"
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._") or "source"


def detect_format(source: SourceConfig) -> str:
    if source.format != "auto":
        return source.format
    path = source.uri.lower().removesuffix(".gz")
    for fmt in LIST_FORMATS:
        if path.endswith(f".{fmt}"):
            return fmt
    return "files"


def iter_candidates(source: SourceConfig) -> Iterator[Candidate]:
    """Every candidate of ``source`` in a deterministic order."""
    fmt = detect_format(source)
    name = source_name(source)
    if source.keep_columns and fmt in ("files", "txt"):
        raise SourceError(
            f"source {source.uri}: keep_columns needs a csv/tsv/jsonl/parquet URL list, "
            f"not a {fmt} source"
        )
    if fmt == "files":
        yield from _file_candidates(source, name)
        return
    fs, path = open_fs(source.uri)
    if not fs.exists(path):
        raise SourceNotFoundError(f"source {source.uri}: no such file")
    compression = "gzip" if path.endswith(".gz") else None
    if fmt == "parquet":
        with fs.open(path, "rb", compression=compression) as raw:
            yield from _rows_to_candidates(_parquet_rows(raw, source), source, name)
        return
    with fs.open(path, "rb", compression=compression) as raw:
        text = io.TextIOWrapper(raw, encoding="utf-8", newline="")
        if fmt == "txt":
            rows: Iterable[dict[str, Any]] = (
                {source.url_column: line.strip()} for line in text if line.strip()
            )
        elif fmt in ("csv", "tsv"):
            rows = _csv_rows(text, source, delimiter="," if fmt == "csv" else "\t")
        else:
            rows = _jsonl_rows(text, source)
        yield from _rows_to_candidates(rows, source, name)


def iter_partitions(source: SourceConfig, partition_size: int = 2000) -> Iterator[Partition]:
    """Consecutive runs of ``partition_size`` candidates, named ``<source>-<index:06d>``."""
    if partition_size < 1:
        raise ValueError(f"partition_size must be >= 1, got {partition_size}")
    name = source_name(source)
    batch: list[Candidate] = []
    index = 0
    for candidate in iter_candidates(source):
        batch.append(candidate)
        if len(batch) == partition_size:
            yield Partition(f"{name}-{index:06d}", name, index, tuple(batch))
            batch, index = [], index + 1
    if batch:
        yield Partition(f"{name}-{index:06d}", name, index, tuple(batch))


def iter_all_partitions(
    sources: Iterable[SourceConfig], partition_size: int = 2000
) -> Iterator[Partition]:
    """Partitions of every source in turn; source names must be unique (they name outputs)."""
    seen: dict[str, str] = {}
    for source in sources:
        name = source_name(source)
        if name in seen:
            raise SourceError(
                f"sources {seen[name]} and {source.uri} share the name {name!r}; set `name`"
            )
        seen[name] = source.uri
        yield from iter_partitions(source, partition_size)


# -- URL lists ----------------------------------------------------------------------------------


def _check_columns(present: Iterable[str], source: SourceConfig) -> None:
    present = set(present)
    if source.url_column not in present:
        raise SourceError(
            f"source {source.uri}: no {source.url_column!r} column "
            f"(columns: {', '.join(sorted(present)) or 'none'}); set url_column"
        )
    missing = [c for c in source.keep_columns if c not in present]
    if missing:
        raise SourceError(f"source {source.uri}: keep_columns not found: {', '.join(missing)}")


def _csv_rows(text: IO[str], source: SourceConfig, delimiter: str) -> Iterator[dict[str, Any]]:
    reader = csv.DictReader(text, delimiter=delimiter)
    _check_columns(reader.fieldnames or [], source)
    try:
        yield from reader
    except csv.Error as exc:
        raise SourceError(f"source {source.uri}: line {reader.line_num}: {exc}") from None


def _jsonl_rows(text: IO[str], source: SourceConfig) -> Iterator[dict[str, Any]]:
    for number, line in enumerate(text, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise SourceError(f"source {source.uri}: line {number}: bad JSON ({exc})") from None
        if not isinstance(row, dict):
            raise SourceError(f"source {source.uri}: line {number}: not a JSON object")
        if source.url_column not in row:
            raise SourceError(f"source {source.uri}: line {number}: no {source.url_column!r}")
        missing = [c for c in source.keep_columns if c not in row]
        if missing:
            raise SourceError(f"source {source.uri}: line {number}: no {', '.join(missing)}")
        yield row


def _parquet_rows(raw: IO[bytes], source: SourceConfig) -> Iterator[dict[str, Any]]:
    try:
        parquet = pq.ParquetFile(raw)
    except Exception as exc:  # pyarrow raises ArrowInvalid and friends
        raise SourceError(f"source {source.uri}: not a Parquet file ({exc})") from None
    names = parquet.schema_arrow.names
    _check_columns(names, source)
    wanted = [source.url_column, *source.keep_columns]
    wanted += [c for c in (source.caption_column, source.license_column) if c and c in names]
    columns = list(dict.fromkeys(wanted))
    for batch in parquet.iter_batches(batch_size=10_000, columns=columns):
        yield from batch.to_pylist()


def _text_or_none(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value)
    return text if text else None


def _rows_to_candidates(
    rows: Iterable[dict[str, Any]], source: SourceConfig, name: str
) -> Iterator[Candidate]:
    for row in rows:
        url, credentials = split_credentials(str(row.get(source.url_column) or "").strip())
        yield Candidate(
            id=candidate_id(url),  # of the URL without credentials: they never leave memory
            url=url,
            credentials=credentials,
            source=name,
            caption=_text_or_none(row.get(source.caption_column)),  # .get(None) is None
            license=_text_or_none(row.get(source.license_column)),
            extra={c: url if c == source.url_column else row.get(c) for c in source.keep_columns},
        )


# -- folders, globs, object-store prefixes -----------------------------------------------------


def _file_candidates(source: SourceConfig, name: str) -> Iterator[Candidate]:
    fs, path = open_fs(source.uri)
    if _GLOB_CHARS.search(path):
        paths = fs.glob(path)
    elif fs.isdir(path):
        paths = fs.find(path)
    elif fs.exists(path):
        paths = [path]
    else:
        raise SourceNotFoundError(f"source {source.uri}: no such folder, prefix or file")
    extensions = {f".{ext.lower().lstrip('.')}" for ext in source.extensions}
    for file_path in sorted(paths):
        if not any(file_path.lower().endswith(ext) for ext in extensions):
            continue
        uri = unstrip(fs, file_path)
        yield Candidate(id=candidate_id(uri), url=uri, source=name, is_file=True)
