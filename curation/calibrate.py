"""IQA thresholds from a sample of your own sources: what ``mird calibrate`` computes.

A deterministic sample of a build's candidates (the ``size`` candidates whose seeded hash of
the candidate id is smallest: the same sources and seed give the same sample, whatever the
order, and appending to a list keeps most of it) is fetched and judged by
:class:`curation.gate.Gate` with every IQA threshold removed, so every metric scores every
image that passes the probe and the content gates. For each metric the proposed threshold is
the score at percentile P of the "worst acceptable" side: for a lower-is-better metric (NIQE,
BRISQUE, PIQE) the P-th percentile from the bottom, so P=99 rejects the worst 1 % of the
sample; for a higher-is-better one the (100 - P)-th. The result is a YAML fragment that
``mird build --config`` reads directly (``quality.metrics`` and ``quality.thresholds``), with
comments giving the evidence per metric.

No Prefect here: the CLI (``flows/cli/calibrate.py``) only parses options and prints.
"""

from __future__ import annotations

import hashlib
import heapq
import math
import re
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from curation.config import BuildConfig, SourceConfig
from curation.fetch import Fetched, Fetcher
from curation.gate import Gate
from curation.quality import QualityConfig
from curation.records import Candidate, Rejection
from curation.sources import iter_all_partitions

DEFAULT_SAMPLE = 200
DEFAULT_PERCENTILES: tuple[float, ...] = (95.0, 99.0)
DEFAULT_USE = 99.0
#: Fields of QualityConfig that change what a score means: a fragment repeats the ones that
#: differ from the defaults, so its thresholds apply to the proxy they were measured on.
PROXY_FIELDS = ("proxy", "max_side", "crop_size", "crops")
_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")


class CalibrationError(ValueError):
    """Calibration cannot proceed (no candidate, bad percentile): a usage or input error."""


# ------------------------------------------------------------------------------ configuration


def load_gate_config(
    config_file: str | Path | None,
    allow_hosts: Sequence[str] = (),
    sources: Sequence[str] = (),
    settings: Sequence[str] = (),
) -> BuildConfig:
    """The build configuration ``mird explain`` and ``mird calibrate`` judge with.

    As ``mird build`` reads it (same file formats, same SSRF allow list, sources and dotted
    ``KEY=VALUE`` ``settings`` from the command line on top), but no storage root is needed:
    nothing is written to a dataset. Errors are :class:`storage.config_errors.ConfigError`
    lines naming the file, or "command line" for what an option or a setting set."""
    from curation.build_options import merge_options
    from storage.config_errors import validate_config
    from storage.config_overrides import apply_overrides, override_origin

    data, origin = merge_options(config_file, sources=sources, allow_hosts=allow_hosts)
    origin = override_origin(apply_overrides(data, list(settings)), origin)
    return validate_config(BuildConfig, {"root": "", **data}, origin)


def scoring_quality(quality: QualityConfig) -> QualityConfig:
    """``quality`` with every threshold removed: each metric scores, none rejects."""
    return QualityConfig.model_validate({**quality.model_dump(), "thresholds": {}})


# ----------------------------------------------------------------------------------- sampling


def sample_key(candidate_id: str, seed: int) -> int:
    """The seeded rank of a candidate in the sample: a 64-bit hash of seed and id."""
    digest = hashlib.blake2b(f"{seed}:{candidate_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def sample_candidates(
    sources: Iterable[SourceConfig], size: int, seed: int = 0, partition_size: int = 2000
) -> tuple[list[Candidate], int]:
    """(sample, candidates listed): the ``size`` distinct candidates with the smallest
    :func:`sample_key`, in the sources' order. Streams the sources; memory is O(size)."""
    if size < 1:
        raise CalibrationError(f"--sample must be at least 1, got {size}")
    heap: list[tuple[int, int, Candidate]] = []  # (-key, -position, candidate): a max-heap
    in_heap: set[int] = set()
    position = 0
    for partition in iter_all_partitions(sources, partition_size):
        for candidate in partition.candidates:
            position += 1
            key = sample_key(candidate.id, seed)
            if key in in_heap:  # the same URL listed twice
                continue
            if len(heap) < size:
                heapq.heappush(heap, (-key, -position, candidate))
                in_heap.add(key)
            elif key < -heap[0][0]:
                dropped = heapq.heappushpop(heap, (-key, -position, candidate))
                in_heap.discard(-dropped[0])
                in_heap.add(key)
    chosen = sorted(heap, key=lambda item: -item[1])
    return [candidate for _, _, candidate in chosen], position


# ------------------------------------------------------------------------------------ judging


@dataclass
class Judged:
    """What became of one sampled candidate."""

    candidate: Candidate
    reason: str | None  # None: passed the probe and the content gates, and was scored
    stage: str | None
    scores: dict[str, float] = field(default_factory=dict)


def _fetch(fetcher: Fetcher, candidate: Candidate) -> Fetched | Rejection:
    try:
        return fetcher.fetch(candidate)
    except Rejection as rejection:
        return rejection


def fetched_in_order(
    candidates: Sequence[Candidate], fetcher: Fetcher, threads: int
) -> Iterator[tuple[Candidate, Fetched | Rejection]]:
    """Each candidate with its bytes (or its fetch rejection), in order, fetched ahead by
    ``threads`` threads; at most ``2 * threads`` bodies are held at once."""
    threads = max(1, min(threads, len(candidates)))
    pending = iter(candidates)
    window: deque[tuple[Candidate, Future]] = deque()
    with ThreadPoolExecutor(threads, thread_name_prefix="calibrate-fetch") as pool:
        for candidate in pending:
            window.append((candidate, pool.submit(_fetch, fetcher, candidate)))
            if len(window) >= 2 * threads:
                break
        while window:
            candidate, future = window.popleft()
            following = next(pending, None)
            if following is not None:
                window.append((following, pool.submit(_fetch, fetcher, following)))
            yield candidate, future.result()


def judge_sample(
    candidates: Sequence[Candidate],
    gate: Gate,
    fetcher: Fetcher,
    threads: int = 8,
    progress: Callable[[int, int], None] | None = None,
) -> list[Judged]:
    """Fetch and judge every candidate; IQA only for those that pass the content gates."""
    judged: list[Judged] = []
    for done, (candidate, fetched) in enumerate(fetched_in_order(candidates, fetcher, threads), 1):
        if isinstance(fetched, Rejection):
            judged.append(Judged(candidate, fetched.reason, fetched.stage))
        else:
            report = gate.judge(fetched.data, score_rejected=False)
            judged.append(Judged(candidate, report.reason, report.stage, dict(report.scores)))
        if progress is not None:
            progress(done, len(candidates))
    return judged


# -------------------------------------------------------------------------------- percentiles


def worst_acceptable(values: Sequence[float], percentile: float, lower_better: bool) -> float:
    """The score at ``percentile`` of the acceptable side: the threshold that rejects the worst
    ``100 - percentile`` % of ``values`` (linear interpolation between order statistics)."""
    quantile = percentile if lower_better else 100.0 - percentile
    return float(np.percentile(np.asarray(values, dtype=np.float64), quantile))


def rejected_share(values: Sequence[float], threshold: float, lower_better: bool) -> float:
    """Share of ``values`` a threshold rejects (a build's rule: strictly worse rejects)."""
    if not values:
        return 0.0
    array = np.asarray(values, dtype=np.float64)
    worse = array > threshold if lower_better else array < threshold
    return float(worse.mean())


def outward(value: float, lower_better: bool, decimals: int = 4) -> float:
    """``value`` rounded away from the sample (up for lower-is-better), so the written
    threshold never rejects more than the percentile it stands for."""
    scale = 10.0**decimals
    rounded = math.ceil(value * scale) if lower_better else math.floor(value * scale)
    return rounded / scale


@dataclass
class MetricSummary:
    metric: str
    lower_better: bool
    values: list[float]  # finite scores of the scored images
    unmeasurable: int  # scored images the metric could not measure (NaN)
    at: dict[float, float]  # percentile -> worst acceptable score
    current: float | None  # the threshold in force (config or default), if any

    @property
    def n(self) -> int:
        return len(self.values)

    def share(self, threshold: float | None) -> float | None:
        """Share of the scored sample ``threshold`` rejects; an unmeasurable score rejects."""
        if threshold is None or not self.values and not self.unmeasurable:
            return None
        rejected = rejected_share(self.values, threshold, self.lower_better) * self.n
        return (rejected + self.unmeasurable) / (self.n + self.unmeasurable)


@dataclass
class Calibration:
    """Everything ``mird calibrate`` reports and writes."""

    quality: QualityConfig  # as configured (thresholds: the ones in force)
    percentiles: list[float]
    use: float
    seed: int
    candidates: int  # candidates the sources list
    judged: list[Judged]
    metrics: list[MetricSummary]

    @property
    def scored(self) -> list[Judged]:
        return [j for j in self.judged if j.reason is None]

    @property
    def failures(self) -> Counter[str]:
        """Reasons of the sampled candidates that failed before scoring, commonest first."""
        return Counter(j.reason for j in self.judged if j.reason is not None)

    @property
    def failure_stages(self) -> dict[str, str]:
        return {j.reason: j.stage or "" for j in self.judged if j.reason is not None}

    def proposed(self) -> dict[str, float]:
        """Threshold per metric at the chosen percentile (metrics never measured: none)."""
        return {s.metric: outward(s.at[self.use], s.lower_better) for s in self.metrics if s.n}


def check_percentiles(percentiles: Sequence[float], use: float) -> list[float]:
    """The percentiles to report, sorted, with ``use`` among them; each in (0, 100]."""
    wanted = sorted({float(p) for p in [*percentiles, use]})
    for p in wanted:
        if not 0.0 < p <= 100.0:
            raise CalibrationError(f"percentile {p:g} is outside (0, 100]")
    return wanted


def summarize(
    judged: list[Judged],
    quality: QualityConfig,
    lower_better: dict[str, bool],
    percentiles: Sequence[float],
    use: float,
    seed: int,
    candidates: int,
) -> Calibration:
    wanted = check_percentiles(percentiles, use)
    summaries = []
    for metric in quality.metrics:
        raw = [j.scores.get(metric, math.nan) for j in judged if j.reason is None]
        values = [float(v) for v in raw if math.isfinite(v)]
        lower = lower_better[metric]
        at = {p: worst_acceptable(values, p, lower) for p in wanted} if values else {}
        summaries.append(
            MetricSummary(
                metric, lower, values, len(raw) - len(values), at, quality.thresholds.get(metric)
            )
        )
    return Calibration(quality, wanted, float(use), seed, candidates, judged, summaries)


# ---------------------------------------------------------------------------------- reporting


def _pct(share: float | None) -> str:
    return "-" if share is None else f"{100 * share:.1f} %"


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def _p(percentile: float) -> str:
    return f"p{percentile:g}"


def failure_line(calibration: Calibration) -> str:
    failures = calibration.failures
    total = len(calibration.judged)
    if not failures:
        return f"failed before scoring: 0 of {total}"
    stages = calibration.failure_stages
    listed = ", ".join(
        f"{reason} ({stages[reason]}) {count}" for reason, count in failures.most_common()
    )
    return f"failed before scoring: {sum(failures.values())} of {total}: {listed}"


def table_lines(calibration: Calibration) -> list[str]:
    """The table: one row per metric, columns aligned (plain text: it goes to logs too)."""
    head = ["metric", "better", "n", "median", *map(_p, calibration.percentiles)]
    head += [f"proposed ({_p(calibration.use)})", "current", "current rejects"]
    rows = [head]
    for s in calibration.metrics:
        n = f"{s.n}" + (f" (+{s.unmeasurable} NaN)" if s.unmeasurable else "")
        median = float(np.median(s.values)) if s.values else None
        row = [s.metric, "lower" if s.lower_better else "higher", n, _num(median)]
        row += [_num(s.at.get(p)) for p in calibration.percentiles]
        row += [
            _num(calibration.proposed().get(s.metric)),
            _num(s.current),
            _pct(s.share(s.current)),
        ]
        rows.append(row)
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    return [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]


def _yaml_key(name: str) -> str:
    return name if _PLAIN_KEY.fullmatch(name) else '"' + name.replace('"', '\\"') + '"'


def fragment_text(calibration: Calibration, sources: Sequence[str] = ()) -> str:
    """The YAML fragment: ``quality.metrics`` and ``quality.thresholds`` (plus the proxy
    settings when they differ from the defaults), commented with the evidence."""
    quality = calibration.quality
    scored = len(calibration.scored)
    use = _p(calibration.use)
    lines = [
        "# IQA thresholds proposed by `mird calibrate`: use as is with",
        "#   mird build --config THIS_FILE SOURCE... --root ROOT",
        "# or copy the quality section into your build configuration.",
    ]
    if sources:
        lines.append(f"# Sources: {', '.join(sources)}")
    lines += [
        f"# Sample: {len(calibration.judged)} of {calibration.candidates} candidates "
        f"(seed {calibration.seed}); {scored} passed the probe and content gates and were scored.",
        f"# {failure_line(calibration)}",
        f"# Each threshold is the sample's {use} on the worst side: a lower-is-better score",
        "# above it (a higher-is-better score below it) rejects, as does a score that is not",
        f"# finite. Scores are on the proxy: {quality.proxy}, max_side {quality.max_side}"
        + (f", {quality.crops} crops of {quality.crop_size}" if quality.proxy == "crops" else "")
        + ".",
        "quality:",
    ]
    defaults = QualityConfig()
    for name in PROXY_FIELDS:
        value = getattr(quality, name)
        if value != getattr(defaults, name):
            lines.append(f"  {name}: {value}")
    lines.append("  metrics: [" + ", ".join(_yaml_key(m) for m in quality.metrics) + "]")
    proposed = calibration.proposed()
    lines.append("  thresholds:" + ("" if proposed else " {}"))
    for s in calibration.metrics:
        direction = "lower" if s.lower_better else "higher"
        if not s.n:
            lines.append(
                f"    # {s.metric} ({direction} is better): no image measurable, no "
                "threshold (scored, never rejects)"
            )
            continue
        median = float(np.median(s.values))
        nan = f" (+{s.unmeasurable} not measurable)" if s.unmeasurable else ""
        lines.append(
            f"    # {s.metric} ({direction} is better): n={s.n}{nan}, min {min(s.values):.4g}, "
            f"median {median:.4g}, max {max(s.values):.4g}"
        )
        for p in calibration.percentiles:
            threshold = outward(s.at[p], s.lower_better)
            lines.append(
                f"    #   {_p(p)} {threshold:.4g} would reject {_pct(s.share(threshold))} "
                "of the scored sample"
            )
        if s.current is not None:
            lines.append(f"    #   current {s.current:g} rejects {_pct(s.share(s.current))}")
        lines.append(f"    {_yaml_key(s.metric)}: {proposed[s.metric]:.4f}")
    return "\n".join(lines) + "\n"


def check_fragment(text: str) -> dict[str, Any]:
    """Parse a fragment and validate it as a BuildConfig (with a placeholder root)."""
    import yaml

    data = yaml.safe_load(text)
    BuildConfig.model_validate({"root": "check", **data})
    return data
