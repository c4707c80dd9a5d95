"""The data team's dashboard: one self-contained HTML page per dataset, built from a version.

``build_dashboard(ROOT/NAME)`` queries the version's Parquet manifest and rejects with DuckDB
and writes ``ROOT/NAME/dashboard/index.html`` (atomically): the funnel per stage and reason,
per-source counts, resolution and aspect histograms, IQA score distributions with the
thresholds drawn, near-duplicate clusters, seeded random kept and rejected examples, and the
history of every published version. Charts are hand-written SVG and the little CSS/JS there is
comes from ``assets/`` inlined, so the page needs no network to view.

Thumbnails: kept samples are read from the version's shards. Rejects are shown reason by
reason (``flows.dashboard.rejects``) from the thumbnails the version keeps of a sample of them
(``vN/reject_samples``: candidates rejected after their image was decoded). A reason without
stored thumbnails shows drawn examples: with an image where its bytes survive in a build's
staging area (``ROOT/NAME/_builds/*/partitions/*``, kept until the build area is removed),
otherwise as reason and detail only. The page says so.

Aggregations run inside DuckDB, so a manifest of millions of rows is never loaded into Python;
the page is deterministic (no clock, seeded sampling): the same version gives the same bytes.
"""

from __future__ import annotations

import base64
import html
import io
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
from PIL import Image, ImageOps, UnidentifiedImageError

from flows.dashboard.politeness import HostRefusals, host_refusals, section_politeness
from flows.dashboard.rejects import ReasonGroup, reason_groups, sample_files, section_rejected
from flows.dashboard.since import SinceData, section_since, since_previous
from flows.dashboard.stages import StageRow, section_stages, stage_rows
from storage.atomic import atomic_write_bytes
from storage.errors import StorageError, VersionNotFoundError
from storage.schemas import IQA_COLUMNS
from storage.shards import MemberLocation, MemberReader, index_tar
from storage.uri import is_local, join, unstrip
from storage.versions import Dataset, PublishedVersion

ASSETS = Path(__file__).with_name("assets")
THUMB_SIDE = 160
HIST_BINS = 24
KEPT_EXAMPLE_SHARDS = 4
#: Pipeline order of reject stages (curation.records); unknown stages follow alphabetically.
STAGE_ORDER = ("source", "fetch", "probe", "decode", "filter", "quality", "dedupe")
DUPLICATE_REASONS = ("duplicate_of", "near_duplicate_of")
#: Score direction of the metrics with manifest columns, for bare-number thresholds.
LOWER_IS_BETTER = {"niqe": True, "brisque": True, "piqe": True, "nima": False}
_METRIC_RE = re.compile(r"^[A-Za-z0-9_.-]+$")


class DashboardError(ValueError):
    """Input the dashboard cannot use (bad target, malformed stats.json field)."""


# =============================================================================== data


@dataclass
class Histogram:
    edges: list[float]
    counts: dict[str, list[int]]  # series name -> counts per bin ("kept", "rejected")

    @property
    def empty(self) -> bool:
        return not self.edges


@dataclass
class Thumb:
    key: str
    image: str | None  # data: URI of a small JPEG, or None when no bytes are reachable
    caption: list[str]
    reason: str | None = None
    detail: str | None = None
    missing: str = ""  # why there is no image


@dataclass
class MetricView:
    name: str
    hist: Histogram
    count: int
    p10: float | None
    median: float | None
    p90: float | None
    thresholds: list[tuple[str, float]]
    rejected: int  # candidates rejected as low_quality:<name>


@dataclass
class Cluster:
    kept: Thumb
    reasons: list[str]
    dropped: list[Thumb]
    size: int


@dataclass
class VersionRow:
    version: str
    created: str
    samples: int
    new_samples: int | None
    candidates: int | None
    rejects: int
    kept_ratio: float | None
    medians: dict[str, float | None]


@dataclass
class DashboardData:
    name: str
    uri: str
    version: str
    entry: dict[str, Any]
    stats: dict[str, Any]
    candidates: int
    new_kept: int
    reused: int
    rejected: int
    samples: int
    funnel_stages: list[tuple[str, int]]  # stage, rejected there (pipeline order)
    reasons: list[tuple[str, str, int]]  # stage, reason, count
    sources: list[dict[str, Any]]
    resolution: dict[str, Histogram]
    resolution_summary: dict[str, float | int | None]
    metrics: list[MetricView]
    duplicates: dict[str, int]
    clusters: list[Cluster]
    kept_examples: list[Thumb]
    rejected_examples: list[Thumb]
    staging_used: list[str]
    history: list[VersionRow]
    seed: int
    problems: list[str] = field(default_factory=list)
    reject_groups: list[ReasonGroup] = field(default_factory=list)  # stored reject thumbnails
    politeness: list[HostRefusals] = field(default_factory=list)  # refusals per host
    since: SinceData | None = None  # the diff from the parent version
    stages: list[StageRow] = field(default_factory=list)  # CPU and wall seconds per stage


# =============================================================================== inputs


def resolve_target(target: str | Dataset | PublishedVersion) -> tuple[Dataset, str | None]:
    """``ROOT/NAME`` (latest version), ``ROOT/NAME/vN``, a Dataset or a PublishedVersion."""
    if isinstance(target, PublishedVersion):
        return target.dataset, target.version
    if isinstance(target, Dataset):
        return target, None
    text = str(target).rstrip("/")
    head, _, tail = text.rpartition("/")
    version = None
    if head and re.fullmatch(r"v[1-9][0-9]*", tail):
        text, version = head, tail
    root, _, name = text.rpartition("/")
    if not name:
        raise DashboardError(f"{target!r}: expected ROOT/NAME or ROOT/NAME/vN")
    dataset = Dataset(root or ".", name)
    if not dataset.fs.exists(dataset.path):
        raise VersionNotFoundError(f"{dataset.uri}: no such dataset")
    return dataset, version


def _sql_str(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _sql_list(items: Iterable[str]) -> str:
    return "[" + ", ".join(_sql_str(i) for i in items) + "]"


def _parquet_files(dataset: Dataset, *parts: str) -> list[str]:
    """Full URIs (DuckDB-readable) of the Parquet files in a directory of the dataset."""
    fs, base = dataset.fs, join(dataset.path, *parts)
    if not fs.exists(base):
        raise VersionNotFoundError(f"{join(dataset.uri, *parts)}: missing")
    files = sorted(p for p in fs.ls(base, detail=False) if p.endswith(".parquet"))
    if not files:
        raise VersionNotFoundError(f"{join(dataset.uri, *parts)}: no Parquet files")
    return [unstrip(fs, p) for p in files]


def _connect(dataset: Dataset) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    if not is_local(dataset.fs):
        con.register_filesystem(dataset.fs)  # s3://, gs://, memory://... through fsspec
    return con


def _create_view(con: duckdb.DuckDBPyConnection, name: str, files: list[str]) -> None:
    con.execute(
        f"CREATE OR REPLACE VIEW {name} AS "
        f"SELECT * FROM read_parquet({_sql_list(files)}, union_by_name = true)"
    )


def parse_thresholds(stats: dict[str, Any], where: str) -> dict[str, list[tuple[str, float]]]:
    """``quality_thresholds``: metric -> {"max": x} / {"min": x} (or a bare number)."""
    raw = stats.get("quality_thresholds") or {}
    if not isinstance(raw, dict):
        raise DashboardError(f"{where}: quality_thresholds must be a mapping metric -> limit")
    out: dict[str, list[tuple[str, float]]] = {}
    for metric, spec in raw.items():
        name = str(metric).removeprefix("iqa_")
        if isinstance(spec, dict) and spec and set(spec) <= {"min", "max"}:
            out[name] = [(kind, float(spec[kind])) for kind in ("min", "max") if kind in spec]
        elif isinstance(spec, int | float) and not isinstance(spec, bool):
            out[name] = [("max" if LOWER_IS_BETTER.get(name, True) else "min", float(spec))]
        else:
            raise DashboardError(
                f"{where}: quality_thresholds[{metric!r}] must be {{'max': x}} or {{'min': x}}, "
                f"got {spec!r}"
            )
    return out


# =============================================================================== thumbnails


def thumbnail_data_uri(data: bytes, side: int = THUMB_SIDE) -> str:
    """A JPEG no larger than ``side`` x ``side``, as a data: URI (EXIF orientation applied)."""
    with Image.open(io.BytesIO(data)) as image:
        image.draft("RGB", (side * 2, side * 2))  # JPEG: decode at a reduced scale, fast
        image = ImageOps.exif_transpose(image).convert("RGB")
        image.thumbnail((side, side), Image.Resampling.LANCZOS)
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=80, optimize=True)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


class _ThumbSource:
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


# =============================================================================== queries


def _histogram(
    con: duckdb.DuckDBPyConnection,
    series: dict[str, str],
    *,
    bins: int = HIST_BINS,
    include: Sequence[float] = (),
) -> Histogram:
    """Equal-width histogram of each ``series`` (name -> SQL selecting a column ``v``) on one
    common range, computed in DuckDB. ``include`` widens the range (thresholds stay visible)."""
    union = " UNION ALL ".join(
        f"SELECT {_sql_str(name)} AS s, CAST(v AS DOUBLE) AS v FROM ({sql}) "
        f"WHERE v IS NOT NULL AND isfinite(CAST(v AS DOUBLE))"
        for name, sql in series.items()
    )
    lo, hi = con.execute(f"SELECT min(v), max(v) FROM ({union})").fetchone()
    if lo is None:
        return Histogram([], {})
    lo, hi = min([lo, *include]), max([hi, *include])
    if hi - lo < 1e-9:
        lo, hi = lo - 0.5, hi + 0.5
    width = (hi - lo) / bins
    rows = con.execute(
        f"SELECT s, least(greatest(floor((v - $lo) / $w), 0), {bins - 1})::INTEGER AS b, "
        f"count(*) FROM ({union}) GROUP BY ALL",
        {"lo": lo, "w": width},
    ).fetchall()
    counts = {name: [0] * bins for name in series}
    for name, b, n in rows:
        counts[name][b] = int(n)
    edges = [lo + i * width for i in range(bins + 1)]
    return Histogram(edges, counts)


def _ordered_stages(stages: Iterable[str]) -> list[str]:
    known = [s for s in STAGE_ORDER if s in stages]
    return known + sorted(s for s in set(stages) if s not in STAGE_ORDER)


class _Collector:
    """Runs every query of one dashboard; one DuckDB connection, views ``manifest``/``rejects``."""

    def __init__(self, dataset: Dataset, version: PublishedVersion, seed: int) -> None:
        self.dataset = dataset
        self.version = version
        self.seed = seed
        self.problems: list[str] = []
        self.stats = version.stats()
        self.con = _connect(dataset)
        _create_view(self.con, "manifest", _parquet_files(dataset, version.version, "manifest"))
        _create_view(self.con, "rejects", _parquet_files(dataset, version.version, "rejects"))
        self.thumbs = _ThumbSource(dataset, self.problems)
        self.stats_uri = join(version.uri, "stats.json")

    def close(self) -> None:
        self.thumbs.close()
        self.con.close()

    def scalar(self, sql: str, params: Any = None) -> Any:
        return self.con.execute(sql, params).fetchone()[0]

    # ----------------------------------------------------------------- funnel and sources
    def funnel(self) -> tuple[dict[str, int], list[tuple[str, int]], list[tuple[str, str, int]]]:
        reasons = [
            (stage, reason, int(n))
            for stage, reason, n in self.con.execute(
                "SELECT stage, reason, count(*) AS n FROM rejects GROUP BY ALL "
                "ORDER BY stage, n DESC, reason"
            ).fetchall()
        ]
        per_stage: dict[str, int] = {}
        for stage, _, n in reasons:
            per_stage[stage] = per_stage.get(stage, 0) + n
        stages = [(s, per_stage[s]) for s in _ordered_stages(per_stage)]
        order = {s: i for i, (s, _) in enumerate(stages)}
        reasons.sort(key=lambda r: (order[r[0]], -r[2], r[1]))
        samples = int(self.scalar("SELECT count(*) FROM manifest"))
        rejected = sum(per_stage.values())
        funnel = self.stats.get("funnel") or {}
        reused = int(self.stats.get("reused_samples") or 0)
        new_kept = int(funnel.get("kept", self.stats.get("new_samples", samples - reused)))
        candidates = int(funnel.get("candidates") or 0) or new_kept + rejected
        if candidates != new_kept + rejected:
            self.problems.append(
                f"{self.stats_uri}: funnel does not add up: {candidates:,} candidates but "
                f"{new_kept:,} kept + {rejected:,} rejected"
            )
        counts = {
            "candidates": candidates,
            "new_kept": new_kept,
            "reused": reused,
            "rejected": rejected,
            "samples": samples,
        }
        return counts, stages, reasons

    def sources(self) -> list[dict[str, Any]]:
        rows = self.con.execute(
            """
            WITH k AS (
                SELECT coalesce(source, '(none)') AS source, count(*) AS kept,
                       median(width::BIGINT * height / 1e6) AS mp, sum(bytes) AS bytes
                FROM manifest GROUP BY 1),
            r AS (SELECT coalesce(source, '(none)') AS source, count(*) AS rejected
                  FROM rejects GROUP BY 1)
            SELECT source, coalesce(kept, 0), coalesce(rejected, 0), mp, coalesce(bytes, 0)
            FROM k FULL OUTER JOIN r USING (source)
            ORDER BY coalesce(kept, 0) + coalesce(rejected, 0) DESC, source
            """
        ).fetchall()
        return [
            {"source": s, "kept": int(k), "rejected": int(r), "median_mp": mp, "bytes": int(b)}
            for s, k, r, mp, b in rows
        ]

    # ----------------------------------------------------------------- distributions
    def resolution(self) -> tuple[dict[str, Histogram], dict[str, float | int | None]]:
        def one(expr: str) -> Histogram:
            return _histogram(self.con, {"kept": f"SELECT {expr} AS v FROM manifest"})

        hists = {
            "megapixels": one("width::BIGINT * height / 1e6"),
            "shorter side (px)": one("least(width, height)"),
            "aspect (width / height)": one("width / nullif(height, 0)"),
        }
        mp, short_min, short_med, landscape = self.con.execute(
            "SELECT median(width::BIGINT * height / 1e6), min(least(width, height)), "
            "median(least(width, height)), avg(CASE WHEN width >= height THEN 1 ELSE 0 END) "
            "FROM manifest"
        ).fetchone()
        summary = {
            "median megapixels": mp,
            "smallest shorter side": short_min,
            "median shorter side": short_med,
            "landscape share": landscape,
        }
        return hists, summary

    def metrics(self) -> list[MetricView]:
        thresholds = parse_thresholds(self.stats, self.stats_uri)
        exprs = {name: f"iqa_{name}" for name in IQA_COLUMNS}
        extra = self.con.execute(
            "SELECT DISTINCT unnest(map_keys(iqa_extra)) AS k FROM manifest "
            "WHERE iqa_extra IS NOT NULL ORDER BY k"
        ).fetchall()
        for (name,) in extra:
            if name not in exprs and _METRIC_RE.match(name):
                exprs[name] = f"map_extract_value(iqa_extra, {_sql_str(name)})"
        # Quality rejects carry every failing score in `detail` ("niqe=9.1 > 8; brisque=..."):
        # split once into (metric, value) rows.
        self.con.execute(
            "CREATE OR REPLACE TEMP TABLE quality_scores AS SELECT "
            "split_part(part, '=', 1) AS metric, "
            "TRY_CAST(split_part(split_part(part, '=', 2), ' ', 1) AS DOUBLE) AS v FROM ("
            "SELECT unnest(string_split(detail, '; ')) AS part FROM rejects "
            "WHERE stage = 'quality' AND detail IS NOT NULL)"
        )
        views = []
        for name, expr in exprs.items():
            count, p10, median, p90 = self.con.execute(
                f"SELECT count({expr}), quantile_cont({expr}, 0.1), median({expr}), "
                f"quantile_cont({expr}, 0.9) FROM manifest"
            ).fetchone()
            if not count and name not in thresholds:
                continue
            # the rejected part: what the threshold cut off
            rejected_sql = f"SELECT v FROM quality_scores WHERE metric = {_sql_str(name)}"
            limits = [value for _, value in thresholds.get(name, [])]
            hist = _histogram(
                self.con,
                {"kept": f"SELECT {expr} AS v FROM manifest", "rejected": rejected_sql},
                include=limits,
            )
            rejected = int(
                self.scalar(
                    "SELECT count(*) FROM rejects WHERE reason = $r", {"r": f"low_quality:{name}"}
                )
            )
            views.append(
                MetricView(
                    name, hist, int(count), p10, median, p90, thresholds.get(name, []), rejected
                )
            )
        return views

    # ----------------------------------------------------------------- examples
    def _kept_thumb(self, row: dict[str, Any]) -> Thumb:
        image, missing = self.thumbs.image(row["shard"], row["key"])
        caption = [row["key"], f"{row['width']}x{row['height']} · {row['source'] or '(none)'}"]
        scores = [
            f"{m} {row[f'iqa_{m}']:.3g}" for m in IQA_COLUMNS if row.get(f"iqa_{m}") is not None
        ]
        if scores:
            caption.append(" · ".join(scores))
        return Thumb(row["key"], image, caption, missing=missing)

    def _manifest_rows(self, where: str, params: Any = None, order: str = "key") -> list[dict]:
        cursor = self.con.execute(
            "SELECT key, shard, source, width, height, "
            + ", ".join(f"iqa_{m}" for m in IQA_COLUMNS)
            + f" FROM manifest WHERE {where} ORDER BY {order}",
            params,
        )
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def kept_examples(self, n: int, max_shards: int = KEPT_EXAMPLE_SHARDS) -> list[Thumb]:
        """``n`` seeded-random kept samples from at most ``max_shards`` seeded-random shards:
        finding a member means reading the tar's headers, which on an object store costs
        about a whole ~1 GB shard, so the draw touches few shards."""
        rows = self._manifest_rows(
            "shard IN (SELECT DISTINCT shard FROM manifest "
            f"ORDER BY md5(shard || ':' || $seed), shard LIMIT {int(max_shards)})",
            {"seed": str(self.seed)},
            order=f"md5(key || ':' || $seed), key LIMIT {int(n)}",
        )
        return [self._kept_thumb(r) for r in rows]

    def staging_shards(self, keys: Sequence[str]) -> tuple[dict[str, str], list[str]]:
        """Where rejected candidates' bytes survive in a build staging area: key -> shard."""
        if not keys:
            return {}, []
        fs = self.dataset.fs
        build = self.stats.get("build_id")
        build_glob = str(build) if build and re.fullmatch(r"[\w.-]+", str(build)) else "*"
        pattern = join(self.dataset.path, "_builds", build_glob, "partitions", "*")
        files = sorted(fs.glob(join(pattern, "manifest.parquet")))
        if not files:
            return {}, []
        uris = [unstrip(fs, f) for f in files]
        rows = self.con.execute(
            f"SELECT key, min(shard) FROM read_parquet({_sql_list(uris)}, union_by_name = true) "
            "WHERE list_contains($keys, key) GROUP BY key",
            {"keys": list(keys)},
        ).fetchall()
        areas = sorted({u.split("/partitions/")[0] for u in uris})
        return dict(rows), areas

    def rejected_examples(self, n: int) -> tuple[list[Thumb], list[str]]:
        """Up to ``n`` rejects, spread over reasons (seeded), with staged images when present."""
        reasons = int(self.scalar("SELECT count(DISTINCT (stage, reason)) FROM rejects"))
        if not reasons or n <= 0:
            return [], []
        per_reason = max(1, math.ceil(n / reasons))
        # arg_min(..., n): a top-n per group in one pass (a window sort is ~3x slower at 1 M)
        groups = self.con.execute(
            "SELECT stage, reason, arg_min(struct_pack(candidate_id, detail, url, source), "
            "md5(candidate_id || ':' || $seed), $per) FROM rejects GROUP BY ALL",
            {"seed": str(self.seed), "per": per_reason},
        ).fetchall()
        picked = [
            (rank, stage, reason, r["candidate_id"], r["detail"], r["url"], r["source"])
            for stage, reason, chosen in groups
            for rank, r in enumerate(chosen)
        ]
        rows = [p[3:4] + p[1:3] + p[4:] for p in sorted(picked)[:n]]
        staged, areas = self.staging_shards([r[0] for r in rows])
        stage_rank = {s: i for i, s in enumerate(_ordered_stages({r[1] for r in rows}))}
        rows.sort(key=lambda r: (stage_rank[r[1]], r[2], r[0]))
        thumbs = []
        for candidate_id, stage, reason, detail, url, source in rows:
            image, missing = None, "bytes not kept for rejected candidates"
            if candidate_id in staged:
                image, missing = self.thumbs.image(staged[candidate_id], candidate_id)
            caption = [candidate_id, " · ".join(t for t in (source, url) if t)]
            thumbs.append(
                Thumb(candidate_id, image, caption, f"{stage}/{reason}", detail, missing=missing)
            )
        return thumbs, areas

    def duplicates(self, n_clusters: int, per_cluster: int) -> tuple[dict[str, int], list[Cluster]]:
        reasons = "(" + ", ".join(_sql_str(r) for r in DUPLICATE_REASONS) + ")"
        exact, near, clusters = self.con.execute(
            f"SELECT count(*) FILTER (reason = 'duplicate_of'), "
            f"count(*) FILTER (reason = 'near_duplicate_of'), count(DISTINCT detail) "
            f"FROM rejects WHERE reason IN {reasons}"
        ).fetchone()
        summary = {"exact": int(exact), "near": int(near), "clusters": int(clusters)}
        rows = self.con.execute(
            f"""
            SELECT detail AS keeper, count(*) AS n, list(DISTINCT reason ORDER BY reason),
                   list(candidate_id ORDER BY candidate_id)[1:{per_cluster}]
            FROM rejects
            WHERE reason IN {reasons} AND detail IS NOT NULL
            GROUP BY detail ORDER BY n DESC, keeper LIMIT {n_clusters}
            """
        ).fetchall()
        dropped_keys = [k for row in rows for k in row[3]]
        staged, _ = self.staging_shards(dropped_keys)
        keepers = {
            r["key"]: r
            for r in self._manifest_rows("list_contains($k, key)", {"k": [r[0] for r in rows]})
        }
        out = []
        for keeper, size, kinds, dropped in rows:
            if keeper in keepers:
                kept = self._kept_thumb(keepers[keeper])
            else:
                kept = Thumb(keeper, None, [keeper], missing="keeper not in this version")
            thumbs = []
            for key in dropped:
                image, missing = None, "bytes not kept"
                if key in staged:
                    image, missing = self.thumbs.image(staged[key], key)
                thumbs.append(Thumb(key, image, [key], missing=missing))
            out.append(Cluster(kept, list(kinds), thumbs, int(size)))
        return summary, out

    # ----------------------------------------------------------------- history
    def history(self) -> list[VersionRow]:
        rows = []
        for entry in self.dataset.index()["versions"]:
            version = self.dataset.version(entry["version"])
            stats = self.stats if version.version == self.version.version else version.stats()
            funnel = stats.get("funnel") or {}
            candidates = funnel.get("candidates") or None
            kept = funnel.get("kept", stats.get("new_samples"))
            scores = stats.get("scores")
            if scores is None:  # not written by this builder: ask the manifest
                scores = self._medians(version)
            rows.append(
                VersionRow(
                    version=version.version,
                    created=str(entry.get("created", "")),
                    samples=int(stats.get("samples", entry.get("samples", 0))),
                    new_samples=stats.get("new_samples"),
                    candidates=candidates,
                    rejects=int(stats.get("rejects", 0)),
                    kept_ratio=(kept / candidates) if candidates and kept is not None else None,
                    medians={m: (scores.get(m) or {}).get("median") for m in IQA_COLUMNS},
                )
            )
        return rows

    def _medians(self, version: PublishedVersion) -> dict[str, dict[str, float | None]]:
        files = _parquet_files(self.dataset, version.version, "manifest")
        values = self.con.execute(
            "SELECT "
            + ", ".join(f"median(iqa_{m})" for m in IQA_COLUMNS)
            + f" FROM read_parquet({_sql_list(files)}, union_by_name = true)"
        ).fetchone()
        return {m: {"median": v} for m, v in zip(IQA_COLUMNS, values, strict=True)}


def collect(
    dataset: Dataset,
    version: str | None = None,
    *,
    seed: int = 0,
    kept_examples: int = 24,
    rejected_examples: int = 24,
    clusters: int = 6,
    per_cluster: int = 6,
) -> DashboardData:
    """Everything the page shows, as plain data (tests and other front ends can use it)."""
    published = dataset.version(version)
    collector = _Collector(dataset, published, seed)
    try:
        counts, stages, reasons = collector.funnel()
        resolution, resolution_summary = collector.resolution()
        dup_summary, dup_clusters = collector.duplicates(clusters, per_cluster)
        rejected, areas = collector.rejected_examples(rejected_examples)
        return DashboardData(
            name=dataset.name,
            uri=dataset.uri,
            version=published.version,
            entry=published.entry,
            stats=collector.stats,
            candidates=counts["candidates"],
            new_kept=counts["new_kept"],
            reused=counts["reused"],
            rejected=counts["rejected"],
            samples=counts["samples"],
            funnel_stages=stages,
            reasons=reasons,
            sources=collector.sources(),
            resolution=resolution,
            resolution_summary=resolution_summary,
            metrics=collector.metrics(),
            duplicates=dup_summary,
            clusters=dup_clusters,
            kept_examples=collector.kept_examples(kept_examples),
            rejected_examples=rejected,
            staging_used=areas,
            history=collector.history(),
            seed=seed,
            problems=collector.problems,
            reject_groups=reason_groups(
                collector.con,
                sample_files(dataset, published.version),
                reasons,
                parse_thresholds(collector.stats, collector.stats_uri),
            ),
            politeness=host_refusals(collector.con),
            since=since_previous(dataset, published.version, collector.thumbs.image),
            stages=stage_rows(collector.stats),
        )
    finally:
        collector.close()


# =============================================================================== SVG charts


def fmt(value: float | int | None, digits: int = 3) -> str:
    """Counts with thousands separators, other numbers with ``digits`` significant digits."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if isinstance(value, int) or float(value).is_integer() and abs(value) >= 1000:
        return f"{int(value):,}"
    return f"{value:.{digits}g}"


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


_SERIES_CLASS = {"kept": "bar-kept", "rejected": "bar-rej", "all": "bar-acc"}


def svg_hbars(
    rows: Sequence[tuple[str, Sequence[tuple[str, float]]]],
    *,
    width: int = 620,
    label_width: int = 170,
    row_height: int = 22,
    title: str = "",
) -> str:
    """Horizontal stacked bars: each row a label and (series, value) segments."""
    if not rows:
        return '<p class="note">Nothing to show.</p>'
    total_max = max((sum(v for _, v in segs) for _, segs in rows), default=0) or 1
    plot = width - label_width - 80
    height = row_height * len(rows) + 6
    out = [
        f'<svg viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
        f'aria-label="{_e(title)}">'
    ]
    for i, (label, segments) in enumerate(rows):
        y = 3 + i * row_height
        short = label if len(label) <= 26 else label[:25] + "…"
        out.append(
            f'<text x="{label_width - 6}" y="{y + row_height * 0.65:.1f}" '
            f'text-anchor="end">{_e(short)}</text>'
        )
        x = float(label_width)
        for series, value in segments:
            w = plot * value / total_max
            if w > 0:
                out.append(
                    f'<rect class="{_SERIES_CLASS.get(series, "bar-acc")}" x="{x:.1f}" '
                    f'y="{y + 2}" width="{max(w, 1):.1f}" height="{row_height - 6}">'
                    f"<title>{_e(label)}: {series} {fmt(value)}</title></rect>"
                )
            x += w
        total = sum(v for _, v in segments)
        out.append(f'<text x="{x + 5:.1f}" y="{y + row_height * 0.65:.1f}">{fmt(total)}</text>')
    out.append("</svg>")
    return "".join(out)


def svg_histogram(
    hist: Histogram,
    *,
    xlabel: str,
    thresholds: Sequence[tuple[str, float]] = (),
    median: float | None = None,
    width: int = 400,
    height: int = 200,
) -> str:
    """Stacked histogram (kept, then rejected) with threshold and median lines."""
    if hist.empty:
        return f'<p class="note">{_e(xlabel)}: no values.</p>'
    left, right, top, bottom = 44, 12, 16, 34
    plot_w, plot_h = width - left - right, height - top - bottom
    bins = len(hist.edges) - 1
    totals = [sum(c[i] for c in hist.counts.values()) for i in range(bins)]
    peak = max(totals) or 1
    lo, hi = hist.edges[0], hist.edges[-1]

    def xpos(value: float) -> float:
        return left + plot_w * (value - lo) / (hi - lo)

    out = [
        f'<svg viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
        f'aria-label="{_e(xlabel)} histogram">',
        f'<line class="grid" x1="{left}" y1="{top}" x2="{left + plot_w}" y2="{top}"/>',
        f'<text x="{left - 4}" y="{top + 4}" text-anchor="end">{fmt(peak)}</text>',
        f'<text x="{left - 4}" y="{top + plot_h}" text-anchor="end">0</text>',
    ]
    bar_w = plot_w / bins
    for i in range(bins):
        base = top + plot_h
        for series in ("kept", "rejected", *[s for s in hist.counts if s not in _SERIES_CLASS]):
            count = hist.counts.get(series, [0] * bins)[i]
            if not count:
                continue
            h = plot_h * count / peak
            base -= h
            out.append(
                f'<rect class="{_SERIES_CLASS.get(series, "bar-acc")}" x="{left + i * bar_w:.1f}" '
                f'y="{base:.1f}" width="{max(bar_w - 1, 1):.1f}" height="{h:.1f}">'
                f"<title>{fmt(hist.edges[i])} – {fmt(hist.edges[i + 1])}: {series} {count:,}"
                f"</title></rect>"
            )
    axis_y = top + plot_h
    out.append(f'<line class="axis" x1="{left}" y1="{axis_y}" x2="{left + plot_w}" y2="{axis_y}"/>')
    for j in range(5):
        value = lo + (hi - lo) * j / 4
        x = xpos(value)
        out.append(
            f'<line class="axis" x1="{x:.1f}" y1="{axis_y}" x2="{x:.1f}" y2="{axis_y + 4}"/>'
        )
        out.append(f'<text x="{x:.1f}" y="{axis_y + 15}" text-anchor="middle">{fmt(value)}</text>')
    out.append(
        f'<text x="{left + plot_w / 2:.1f}" y="{height - 3}" text-anchor="middle">'
        f"{_e(xlabel)}</text>"
    )
    if median is not None and lo <= median <= hi:
        x = xpos(median)
        out.append(
            f'<line class="med" x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{axis_y}">'
            f"<title>median {fmt(median)}</title></line>"
        )
    for kind, value in thresholds:
        x = xpos(value)
        anchor = "end" if x > left + plot_w * 0.8 else "start"
        dx = -4 if anchor == "end" else 4
        out.append(
            f'<line class="thr" x1="{x:.1f}" y1="{top - 6}" x2="{x:.1f}" y2="{axis_y}">'
            f"<title>threshold: {kind} {fmt(value)}</title></line>"
            f'<text x="{x + dx:.1f}" y="{top - 4}" text-anchor="{anchor}">'
            f"{kind} {fmt(value)}</text>"
        )
    out.append("</svg>")
    return "".join(out)


_LINE_COLOURS = ("#2c5fa8", "#c2452d", "#2f7d4f", "#8a4fb0", "#d18a00", "#3a8f9a")


def svg_lines(
    labels: Sequence[str],
    series: dict[str, Sequence[float | None]],
    *,
    ylabel: str,
    width: int = 400,
    height: int = 190,
    percent: bool = False,
) -> str:
    """One line per series over the version labels (gaps where a value is missing)."""
    values = [v for vs in series.values() for v in vs if v is not None]
    if not values:
        return f'<p class="note">{_e(ylabel)}: no values.</p>'
    left, right, top, bottom = 48, 12, 14, 40
    plot_w, plot_h = width - left - right, height - top - bottom
    lo, hi = min(min(values), 0.0), max(values)
    if hi - lo < 1e-12:
        hi = lo + 1
    step = plot_w / max(len(labels) - 1, 1)

    def point(i: int, v: float) -> tuple[float, float]:
        x = left + (i * step if len(labels) > 1 else plot_w / 2)
        return x, top + plot_h * (1 - (v - lo) / (hi - lo))

    def label(v: float) -> str:
        return f"{v:.0%}" if percent else fmt(v)

    out = [
        f'<svg viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
        f'aria-label="{_e(ylabel)} per version">',
        f'<line class="axis" x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" '
        f'y2="{top + plot_h}"/>',
        f'<text x="{left - 4}" y="{top + 4}" text-anchor="end">{label(hi)}</text>',
        f'<text x="{left - 4}" y="{top + plot_h}" text-anchor="end">{label(lo)}</text>',
    ]
    for i, name in enumerate(labels):
        x, _ = point(i, lo)
        out.append(
            f'<text x="{x:.1f}" y="{top + plot_h + 14}" text-anchor="middle">{_e(name)}</text>'
        )
    for n, (name, vs) in enumerate(series.items()):
        colour = _LINE_COLOURS[n % len(_LINE_COLOURS)]
        segments: list[list[tuple[float, float]]] = [[]]
        for i, v in enumerate(vs):
            if v is None:
                segments.append([])
                continue
            x, y = point(i, v)
            segments[-1].append((x, y))
            out.append(
                f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{colour}">'
                f"<title>{_e(name)} {_e(labels[i])}: {label(v)}</title></circle>"
            )
        for seg in segments:
            if len(seg) > 1:
                pts = " ".join(f"{x:.1f},{y:.1f}" for x, y in seg)
                out.append(f'<polyline class="line" stroke="{colour}" points="{pts}"/>')
        out.append(
            f'<rect x="{left + n * 90}" y="{height - 14}" width="10" height="10" '
            f'fill="{colour}"/><text x="{left + n * 90 + 14}" y="{height - 5}">{_e(name)}</text>'
        )
    out.append("</svg>")
    return "".join(out)


# =============================================================================== HTML


def _table(headers: Sequence[str], rows: Iterable[Sequence[Any]], numeric: set[int]) -> str:
    head = "".join(
        f'<th class="num">{_e(h)}</th>' if i in numeric else f"<th>{_e(h)}</th>"
        for i, h in enumerate(headers)
    )
    body = []
    for row in rows:
        cells = []
        for i, cell in enumerate(row):
            if isinstance(cell, tuple):  # (sort value, HTML)
                cells.append(f'<td class="num" data-v="{_e(cell[0])}">{cell[1]}</td>')
            elif i in numeric:
                raw = "" if cell is None else cell
                cells.append(f'<td class="num" data-v="{_e(raw)}">{_e(fmt(cell))}</td>')
            else:
                cells.append(f"<td>{_e(cell)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return (
        f'<table class="sortable"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table>"
    )


def _figure(thumb: Thumb, css: str = "") -> str:
    if thumb.image:
        img = f'<img src="{thumb.image}" alt="{_e(thumb.key)}" width="160" height="120">'
    else:
        img = f'<div class="noimg">{_e(thumb.missing or "no image")}</div>'
    lines = [f"<div>{_e(line)}</div>" for line in thumb.caption]
    if thumb.reason:
        lines.insert(0, f'<div class="reason">{_e(thumb.reason)}</div>')
    if thumb.detail:
        lines.append(f'<div class="detail">{_e(thumb.detail)}</div>')
    reason = f' data-reason="{_e(thumb.reason)}"' if thumb.reason else ""
    cls = f' class="{css}"' if css else ""
    return f"<figure{cls}{reason}>{img}<figcaption>{''.join(lines)}</figcaption></figure>"


def _kpi(value: str, label: str) -> str:
    return f'<div class="kpi"><b>{_e(value)}</b><span>{_e(label)}</span></div>'


def _pct(part: int | float, whole: int | float) -> str:
    return f"{part / whole:.1%}" if whole else "–"


def _section_funnel(d: DashboardData) -> str:
    remaining = d.candidates
    rows: list[tuple[str, list[tuple[str, float]]]] = [("candidates", [("all", d.candidates)])]
    for stage, n in d.funnel_stages:
        # One bar per stage: what entered it (the number), green passed on, red rejected.
        remaining -= n
        rows.append((f"{stage} (−{n:,})", [("kept", max(remaining, 0)), ("rejected", n)]))
    rows.append(("kept (this build)", [("kept", d.new_kept)]))
    bars = svg_hbars(rows, title="funnel")
    table = _table(
        ["stage", "reason", "rejected", "% of candidates"],
        [
            (
                stage,
                reason,
                n,
                (
                    n / d.candidates if d.candidates else 0,
                    f'<span class="pct" style="width:{100 * n / max(d.candidates, 1):.1f}px">'
                    f"</span>{_pct(n, d.candidates)}",
                ),
            )
            for stage, reason, n in d.reasons
        ],
        numeric={2},
    )
    reused = (
        f" This version also lists {d.reused:,} samples of its parent unchanged (not part of "
        "this build's funnel)."
        if d.reused
        else ""
    )
    return (
        '<section id="funnel"><h2>Funnel: what this build kept, dropped and why</h2>'
        f'<p class="note">Candidates of this build, stage by stage in pipeline order: each bar '
        f"is what entered the stage, green what it passed on, red what it rejected.{reused}</p>"
        f'<div class="row"><div class="chart">{bars}</div></div>'
        f"<h3>Rejects by stage and reason</h3>{table}</section>"
    )


def _section_sources(d: DashboardData) -> str:
    bars = svg_hbars(
        [(s["source"], [("kept", s["kept"]), ("rejected", s["rejected"])]) for s in d.sources],
        title="per source",
    )
    table = _table(
        ["source", "kept (in version)", "rejected (this build)", "kept %", "median MP", "bytes"],
        [
            (
                s["source"],
                s["kept"],
                s["rejected"],
                (
                    s["kept"] / max(s["kept"] + s["rejected"], 1),
                    _pct(s["kept"], s["kept"] + s["rejected"]),
                ),
                s["median_mp"],
                s["bytes"],
            )
            for s in d.sources
        ],
        numeric={1, 2, 4, 5},
    )
    return (
        '<section id="sources"><h2>Per source</h2>'
        '<p class="note"><span class="legend" style="background:var(--kept)"></span>kept'
        '<span class="legend" style="background:var(--rejected)"></span>rejected</p>'
        f'<div class="chart">{bars}</div>{table}</section>'
    )


def _section_resolution(d: DashboardData) -> str:
    charts = "".join(
        f'<div class="chart">{svg_histogram(h, xlabel=name)}</div>'
        for name, h in d.resolution.items()
    )
    summary = "".join(
        _kpi(f"{v:.0%}" if "share" in k and v is not None else fmt(v), k)
        for k, v in d.resolution_summary.items()
    )
    return (
        '<section id="resolution"><h2>Resolution and aspect (kept samples)</h2>'
        f'<div class="kpis">{summary}</div><div class="row">{charts}</div></section>'
    )


def _section_quality(d: DashboardData) -> str:
    if not d.metrics:
        return (
            '<section id="quality"><h2>IQA scores</h2>'
            '<p class="note">No IQA scores in this version.</p></section>'
        )
    charts = []
    for m in d.metrics:
        lower = LOWER_IS_BETTER.get(m.name)
        if lower is None and m.thresholds:  # other metrics: the threshold tells the direction
            lower = m.thresholds[0][0] == "max"
        if lower is None:
            direction = "direction unknown"
        else:
            direction = "lower is better" if lower else "higher is better"
        charts.append(
            f'<div class="chart"><h3>{_e(m.name)} <span class="note">({direction})</span></h3>'
            + svg_histogram(m.hist, xlabel=m.name, thresholds=m.thresholds, median=m.median)
            + "</div>"
        )
    table = _table(
        ["metric", "scored", "p10", "median", "p90", "threshold", "rejected (low quality)"],
        [
            (
                m.name,
                m.count,
                m.p10,
                m.median,
                m.p90,
                ", ".join(f"{k} {fmt(v)}" for k, v in m.thresholds) or "none",
                m.rejected,
            )
            for m in d.metrics
        ],
        numeric={1, 2, 3, 4, 6},
    )
    return (
        '<section id="quality"><h2>IQA score distributions</h2>'
        '<p class="note"><span class="legend" style="background:var(--kept)"></span>kept'
        '<span class="legend" style="background:var(--rejected)"></span>rejected as low quality '
        "(scores read from the rejects' detail; only the failing metrics are listed there)"
        '<span class="legend" style="background:var(--thr)"></span>threshold '
        "(stats.json <code>quality_thresholds</code>); dotted: median of kept.</p>"
        f'<div class="row">{"".join(charts)}</div>{table}</section>'
    )


def _section_duplicates(d: DashboardData) -> str:
    kpis = (
        _kpi(fmt(d.duplicates["exact"]), "exact duplicates dropped")
        + _kpi(fmt(d.duplicates["near"]), "near duplicates dropped")
        + _kpi(fmt(d.duplicates["clusters"]), "clusters (kept samples with copies)")
    )
    blocks = []
    for c in d.clusters:
        more = f" (showing {len(c.dropped)})" if c.size > len(c.dropped) else ""
        dropped = "".join(_figure(t) for t in c.dropped)
        blocks.append(
            f'<div class="cluster">{_figure(c.kept, "keeper")}'
            f'<div class="arrow">kept; dropped {c.size:,} as {_e(", ".join(c.reasons))}{more}'
            f" →</div>{dropped}</div>"
        )
    body = "".join(blocks) or '<p class="note">No duplicates were dropped.</p>'
    return (
        '<section id="duplicates"><h2>Near-duplicate clusters</h2>'
        f'<div class="kpis">{kpis}</div>'
        '<p class="note">Largest clusters first: the kept sample (green frame) and the keys '
        "dropped as its copies.</p>"
        f"{body}</section>"
    )


def _section_kept(d: DashboardData) -> str:
    grid = "".join(_figure(t) for t in d.kept_examples)
    return (
        '<section id="kept"><h2>Random kept samples</h2>'
        f'<p class="note">{len(d.kept_examples)} samples drawn with seed {d.seed} '
        "(same seed, same samples).</p>"
        f'<div class="grid-thumbs">{grid}</div></section>'
    )


def _section_rejected(d: DashboardData) -> str:
    """Reason by reason (flows.dashboard.rejects); drawn examples where none is stored."""
    stored = {g.label for g in d.reject_groups if g.samples}
    drawn = [t for t in d.rejected_examples if t.reason and t.reason not in stored]
    fallback: dict[str, list[str]] = {}
    for thumb in drawn:
        fallback.setdefault(thumb.reason or "", []).append(_figure(thumb))
    shown = sum(1 for t in drawn if t.image)
    if d.staging_used:
        where = "build staging area " + ", ".join(d.staging_used)
        source = f"{shown} of them have an image, from the {where}"
    else:
        source = "no build staging area is left, so none has an image"
    note = (
        f"The other reasons show {len(drawn)} rejects drawn with seed {d.seed}: {source}; "
        "the others show their reason and detail only."
    )
    return section_rejected(d.reject_groups, fallback, _e(note))


def _ratio_cell(ratio: float | None) -> tuple[Any, str]:
    return ("", "–") if ratio is None else (ratio, f"{ratio:.1%}")


def _section_history(d: DashboardData) -> str:
    labels = [h.version for h in d.history]
    metrics = [m for m in IQA_COLUMNS if any(h.medians.get(m) is not None for h in d.history)]
    counts = svg_lines(
        labels,
        {
            "samples": [h.samples for h in d.history],
            "new": [h.new_samples for h in d.history],
            "rejects": [h.rejects for h in d.history],
        },
        ylabel="counts",
    )
    ratio = svg_lines(
        labels, {"kept ratio": [h.kept_ratio for h in d.history]}, ylabel="kept ratio", percent=True
    )
    medians = "".join(
        f'<div class="chart"><h3>median {m}</h3>'
        + svg_lines(labels, {m: [h.medians.get(m) for h in d.history]}, ylabel=f"median {m}")
        + "</div>"
        for m in metrics
    )
    table = _table(
        ["version", "created", "samples", "new", "candidates", "rejects", "kept ratio"]
        + [f"median {m}" for m in metrics],
        [
            [
                h.version,
                h.created,
                h.samples,
                h.new_samples,
                h.candidates,
                h.rejects,
                _ratio_cell(h.kept_ratio),
            ]
            + [h.medians.get(m) for m in metrics]
            for h in d.history
        ],
        numeric={2, 3, 4, 5, *range(7, 7 + len(metrics))},
    )
    return (
        '<section id="history"><h2>History across versions</h2>'
        '<p class="note">Kept ratio: kept / candidates of the build that made the version.</p>'
        f'<div class="row"><div class="chart"><h3>counts</h3>{counts}</div>'
        f'<div class="chart"><h3>kept ratio</h3>{ratio}</div>{medians}</div>{table}</section>'
    )


def render_html(d: DashboardData) -> str:
    """The whole page: CSS and JS inlined, images as data: URIs, nothing fetched."""
    css = (ASSETS / "dashboard.css").read_text(encoding="utf-8")
    js = (ASSETS / "dashboard.js").read_text(encoding="utf-8")
    size = sum(s["bytes"] for s in d.sources)
    kpis = "".join(
        [
            _kpi(fmt(d.samples), "samples in version"),
            _kpi(fmt(d.new_kept), "kept by this build"),
            _kpi(fmt(d.candidates), "candidates"),
            _kpi(fmt(d.rejected), "rejected"),
            _kpi(_pct(d.new_kept, d.candidates), "kept ratio"),
            _kpi(fmt(d.stats.get("shards", d.entry.get("shards"))), "shards"),
            _kpi(f"{size / 1e9:.2f} GB" if size >= 1e8 else f"{size / 1e6:.2f} MB", "image bytes"),
        ]
    )
    problems = ""
    if d.problems:
        items = "".join(f"<li>{_e(p)}</li>" for p in d.problems[:50])
        more = f"<li>… and {len(d.problems) - 50} more</li>" if len(d.problems) > 50 else ""
        problems = (
            f'<section class="warn" id="problems"><b>{len(d.problems)} problem(s) while '
            f"building this page</b><ul>{items}{more}</ul></section>"
        )
    parent = d.entry.get("parent")
    sub = f"version {d.version}" + (f" (parent {parent})" if parent else "")
    sub += f" · published {d.entry.get('created', '?')} · {d.uri}"
    nav = "".join(
        f'<a href="#{a}">{t}</a>'
        for a, t in [
            ("funnel", "Funnel"),
            *([("stages", "Stages")] if d.stages else []),
            ("sources", "Sources"),
            ("resolution", "Resolution"),
            ("quality", "IQA scores"),
            ("duplicates", "Duplicates"),
            ("kept", "Kept"),
            ("rejected", "Rejected"),
            ("history", "History"),
        ]
    )
    sections = "".join(
        [
            _section_funnel(d),
            section_stages(d.stages),
            _section_sources(d),
            _section_resolution(d),
            _section_quality(d),
            _section_duplicates(d),
            _section_kept(d),
            _section_rejected(d),
            section_politeness(d.politeness),
            section_since(d.since),
            _section_history(d),
        ]
    )
    # The CSP forbids every network fetch: the page must work from a USB stick.
    csp = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'"
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{csp}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(d.name)} {_e(d.version)} · Million-IRD dashboard</title>"
        f"<style>{css}</style></head><body>"
        f'<header><h1>{_e(d.name)}: data dashboard</h1><div class="sub">{_e(sub)}</div>'
        f"</header><nav>{nav}</nav><main>"
        f'<section id="overview"><div class="kpis">{kpis}</div></section>'
        f"{problems}{sections}"
        f'<p class="note">Generated by <code>mird dashboard</code> from the version\'s Parquet '
        f"manifest and rejects (DuckDB) and stats.json.</p>"
        f"</main><script>{js}</script></body></html>\n"
    )


# =============================================================================== entry point


def build_dashboard(
    target: str | Dataset | PublishedVersion,
    out_dir: str | None = None,
    *,
    version: str | None = None,
    seed: int = 0,
    kept_examples: int = 24,
    rejected_examples: int = 24,
    clusters: int = 6,
) -> str:
    """Build the dashboard of a dataset version; returns the URI of ``index.html``.

    ``target``: ``ROOT/NAME`` (latest version), ``ROOT/NAME/vN``, a Dataset or a
    PublishedVersion. ``out_dir`` defaults to ``ROOT/NAME/dashboard``.
    """
    for label, count in (
        ("kept_examples", kept_examples),
        ("rejected_examples", rejected_examples),
        ("clusters", clusters),
    ):
        if count < 0:
            raise DashboardError(f"{label} must be >= 0, got {count}")
    dataset, target_version = resolve_target(target)
    data = collect(
        dataset,
        version or target_version,
        seed=seed,
        kept_examples=kept_examples,
        rejected_examples=rejected_examples,
        clusters=clusters,
    )
    page = render_html(data).encode("utf-8")
    out = join(out_dir or join(dataset.uri, "dashboard"), "index.html")
    atomic_write_bytes(out, page)
    return out
