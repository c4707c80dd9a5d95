"""The dashboard's data: a version's Parquet manifest and rejects queried with DuckDB.

``collect`` runs every query of one page on one DuckDB connection (views ``manifest`` and
``rejects``) and returns a :class:`~flows.dashboard.model.DashboardData`; the section modules
(``rejects``, ``politeness``, ``since``, ``stages``) add theirs on the same connection.
Aggregations run inside DuckDB, so a manifest of millions of rows is never loaded into Python;
sampling is seeded (no clock, no unseeded random): the same version gives the same data.

Kept samples' thumbnails are read from the version's shards; a drawn reject's comes from a
build's staging area (``ROOT/NAME/_builds/*/partitions/*``) while its bytes survive there.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from typing import Any

import duckdb

from flows.dashboard.model import (
    Cluster,
    DashboardData,
    DashboardError,
    Histogram,
    MetricView,
    Thumb,
    VersionRow,
    lower_is_better,
)
from flows.dashboard.politeness import host_refusals
from flows.dashboard.rejects import reason_groups, sample_files
from flows.dashboard.since import since_previous
from flows.dashboard.stages import stage_rows
from flows.dashboard.thumbs import ThumbSource
from storage.errors import VersionNotFoundError
from storage.schemas import IQA_COLUMNS
from storage.uri import is_local, join, unstrip
from storage.versions import Dataset, PublishedVersion

HIST_BINS = 24
KEPT_EXAMPLE_SHARDS = 4
#: Pipeline order of reject stages (curation.records); unknown stages follow alphabetically.
STAGE_ORDER = ("source", "fetch", "probe", "decode", "filter", "quality", "dedupe")
DUPLICATE_REASONS = ("duplicate_of", "near_duplicate_of")
_METRIC_RE = re.compile(r"^[A-Za-z0-9_.-]+$")


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
            # the direction pyiqa gives the metric; an unknown one counts as lower-is-better
            kind = "min" if lower_is_better(name) is False else "max"
            out[name] = [(kind, float(spec))]
        else:
            raise DashboardError(
                f"{where}: quality_thresholds[{metric!r}] must be {{'max': x}} or {{'min': x}}, "
                f"got {spec!r}"
            )
    return out


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
        self.thumbs = ThumbSource(dataset, self.problems)
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
