"""Sources: every URL-list format, folders, globs and object-store prefixes, and partitions
that stay the same from run to run."""

from __future__ import annotations

import csv
import gzip
import json
from pathlib import Path

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curation.config import CurationConfig, SourceConfig
from curation.sources import (
    SourceError,
    SourceNotFoundError,
    candidate_id,
    iter_all_partitions,
    iter_candidates,
    iter_partitions,
    source_name,
)

ROWS = [
    {
        "url": f"https://img.example.com/{i}.jpg",
        "caption": f"photo {i}",
        "license": "cc-by",
        "width": str(1000 + i),
    }
    for i in range(7)
]


def _write(path: Path, fmt: str, rows: list[dict], gz: bool = False) -> Path:
    opener = gzip.open if gz else open
    if fmt == "txt":
        with opener(path, "wt", encoding="utf-8") as handle:
            handle.write("\n".join(row["url"] for row in rows) + "\n\n")
    elif fmt in ("csv", "tsv"):
        with opener(path, "wt", encoding="utf-8", newline="") as handle:
            writer = csv.DictWriter(
                handle, fieldnames=list(rows[0]), delimiter="," if fmt == "csv" else "\t"
            )
            writer.writeheader()
            writer.writerows(rows)
    elif fmt == "jsonl":
        with opener(path, "wt", encoding="utf-8") as handle:
            handle.writelines(json.dumps(row) + "\n" for row in rows)
    else:
        pq.write_table(pa.Table.from_pylist(rows), path)
    return path


@pytest.mark.parametrize(
    ("name", "fmt", "gz"),
    [
        ("list.txt", "txt", False),
        ("list.txt.gz", "txt", True),
        ("list.csv", "csv", False),
        ("list.csv.gz", "csv", True),
        ("list.tsv", "tsv", False),
        ("list.jsonl", "jsonl", False),
        ("list.jsonl.gz", "jsonl", True),
        ("list.parquet", "parquet", False),
    ],
)
def test_url_lists(tmp_path: Path, name: str, fmt: str, gz: bool) -> None:
    path = _write(tmp_path / name, fmt, ROWS, gz)
    keep = [] if fmt == "txt" else ["width"]
    candidates = list(iter_candidates(SourceConfig(uri=str(path), keep_columns=keep)))
    assert [c.url for c in candidates] == [row["url"] for row in ROWS]
    assert [c.id for c in candidates] == [candidate_id(row["url"]) for row in ROWS]
    assert {c.source for c in candidates} == {"list"}
    assert not any(c.is_file for c in candidates)
    if fmt != "txt":
        assert candidates[3].caption == "photo 3" and candidates[3].license == "cc-by"
        assert candidates[3].extra == {"width": "1003"}


def test_ids_depend_on_the_url_only() -> None:
    assert candidate_id("https://a/b.jpg") == candidate_id("https://a/b.jpg")
    assert candidate_id("https://a/b.jpg") != candidate_id("https://a/c.jpg")
    assert len(candidate_id("x")) == 20


def test_partitions_are_deterministic_and_appending_keeps_them(tmp_path: Path) -> None:
    path = _write(tmp_path / "urls.txt", "txt", ROWS)
    source = SourceConfig(uri=str(path))
    first = list(iter_partitions(source, partition_size=3))
    again = list(iter_partitions(source, partition_size=3))
    assert first == again
    assert [p.id for p in first] == ["urls-000000", "urls-000001", "urls-000002"]
    assert [len(p.candidates) for p in first] == [3, 3, 1]
    more = ROWS + [{"url": f"https://img.example.com/new{i}.jpg"} for i in range(4)]
    _write(path, "txt", more)
    grown = list(iter_partitions(source, partition_size=3))
    assert grown[:2] == first[:2]  # full partitions are untouched by an append
    assert len(grown) == 4


def test_default_partition_size() -> None:
    assert CurationConfig().partition_size == 2000


def test_folder_glob_and_prefix(tmp_path: Path) -> None:
    for rel in ["b/2.jpg", "a/1.JPG", "a/deep/3.png", "a/notes.txt", "c.webp"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    folder = list(iter_candidates(SourceConfig(uri=str(tmp_path), name="photos")))
    assert [Path(c.url).relative_to(tmp_path).as_posix() for c in folder] == [
        "a/1.JPG",
        "a/deep/3.png",
        "b/2.jpg",
        "c.webp",
    ]
    assert all(c.is_file and c.source == "photos" for c in folder)
    globbed = list(iter_candidates(SourceConfig(uri=f"{tmp_path}/**/*.jpg")))
    assert [Path(c.url).name for c in globbed] == ["2.jpg"]


def test_object_store_prefix() -> None:
    fs = fsspec.filesystem("memory")
    for key in ["bucket/set/x/1.jpg", "bucket/set/2.png", "bucket/other/3.jpg"]:
        fs.pipe(f"/{key}", b"data")
    candidates = list(iter_candidates(SourceConfig(uri="memory://bucket/set/")))
    # URIs as fsspec writes them back (the memory store keeps a root slash): readable as given.
    assert [c.url.split("bucket/", 1)[1] for c in candidates] == ["set/2.png", "set/x/1.jpg"]
    assert all(
        c.url.startswith("memory://") and fsspec.open(c.url).open().read() == b"data"
        for c in candidates
    )
    assert candidates[0].id == candidate_id(candidates[0].url)
    assert candidates[0].source == "set"
    fs.rm("/bucket", recursive=True)


def test_missing_source_names_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.csv"
    with pytest.raises(SourceNotFoundError, match="nope.csv"):
        list(iter_candidates(SourceConfig(uri=str(missing))))
    with pytest.raises(FileNotFoundError):
        list(iter_candidates(SourceConfig(uri=str(tmp_path / "no-folder"))))


def test_missing_url_column_names_the_file(tmp_path: Path) -> None:
    path = _write(tmp_path / "bad.csv", "csv", [{"link": "https://a/b.jpg"}])
    with pytest.raises(SourceError, match=r"bad\.csv.*'url' column"):
        list(iter_candidates(SourceConfig(uri=str(path))))
    assert [c.url for c in iter_candidates(SourceConfig(uri=str(path), url_column="link"))] == [
        "https://a/b.jpg"
    ]


def test_bad_json_line_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.jsonl"
    path.write_text('{"url": "https://a/1.jpg"}\n{not json\n')
    with pytest.raises(SourceError, match=r"broken\.jsonl: line 2"):
        list(iter_candidates(SourceConfig(uri=str(path))))


def test_not_a_parquet_file(tmp_path: Path) -> None:
    path = tmp_path / "fake.parquet"
    path.write_text("hello")
    with pytest.raises(SourceError, match="fake.parquet"):
        list(iter_candidates(SourceConfig(uri=str(path))))


def test_source_names_must_be_unique(tmp_path: Path) -> None:
    (tmp_path / "x").mkdir()
    a = _write(tmp_path / "urls.txt", "txt", ROWS)
    b = _write(tmp_path / "x" / "urls.txt", "txt", ROWS)
    with pytest.raises(SourceError, match="share the name"):
        list(iter_all_partitions([SourceConfig(uri=str(a)), SourceConfig(uri=str(b))]))
    named = [SourceConfig(uri=str(a)), SourceConfig(uri=str(b), name="mirror")]
    assert [p.id for p in iter_all_partitions(named)] == ["urls-000000", "mirror-000000"]


@pytest.mark.parametrize(
    ("uri", "name"),
    [
        ("/data/photos/**/*.jpg", "photos"),
        ("s3://bucket/prefix/", "prefix"),
        ("/lists/laion-hr.parquet", "laion-hr"),
        ("/lists/urls.txt.gz", "urls"),
        ("/lists/my list.csv", "my_list"),
    ],
)
def test_source_names(uri: str, name: str) -> None:
    assert source_name(SourceConfig(uri=uri)) == name
    assert source_name(SourceConfig(uri=uri, name="given")) == "given"
