"""What the dashboard shows, as plain data: the dataclasses ``collect`` fills and the page
renders, the error it raises on input it cannot use, and each metric's score direction."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from typing import Any

from flows.dashboard.politeness import HostRefusals
from flows.dashboard.rejects import ReasonGroup
from flows.dashboard.since import SinceData
from flows.dashboard.stages import StageRow


class DashboardError(ValueError):
    """Input the dashboard cannot use (bad target, malformed stats.json field)."""


@cache
def lower_is_better(metric: str) -> bool | None:
    """pyiqa's score direction of a no-reference metric; None for a name pyiqa does not know
    as one (an ``iqa_extra`` key of some other scorer): the caller decides what that means."""
    from curation.quality import UnknownMetricError, metric_info

    try:
        info = metric_info(metric)
    except UnknownMetricError:
        return None
    return bool(info.get("lower_better", False))  # pyiqa's default: higher is better


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
