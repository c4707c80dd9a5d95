"""The records that flow through curation: a candidate, what became of it, and why.

A stage raises :class:`Rejection` (or a filter returns one); the partition runner turns it into
a :class:`Reject` row for the rejects table. Nothing else leaves a partition silently.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from curation import reasons


@dataclass(frozen=True)
class Candidate:
    """One image to try: a URL from a list, or a file in a folder / object-store prefix.

    ``id`` is a hash of ``url`` (see ``curation.sources.candidate_id``), so the same URL gets
    the same id, and therefore the same partition, on every run.
    """

    id: str
    url: str  # http(s) URL, or a path/URI for file sources
    source: str
    is_file: bool = False  # True: read through fsspec, not over HTTP
    caption: str | None = None
    license: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # other columns kept as provenance
    # "user:password" split off an http(s) URL (curation.urls): sent to that origin, never
    # written (``url`` holds the URL without it) and never shown (not in repr).
    credentials: str | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class Partition:
    """A deterministic slice of one source's candidates, processed as one unit of work."""

    id: str  # "<source>-<index:06d>": stable name of its output directory
    source: str
    index: int
    candidates: tuple[Candidate, ...]


class Rejection(Exception):
    """Raised by a stage to drop the current candidate with a stable reason code; the code
    (and the stage producing it) must be in :mod:`curation.reasons`."""

    def __init__(self, stage: str, reason: str, detail: str = "") -> None:
        super().__init__(f"{stage}/{reason}: {detail}")
        self.stage = stage
        self.reason = reasons.code(reason, stage)
        self.detail = detail


@dataclass(frozen=True)
class Reject:
    """A candidate that left the pipeline, with the machine-readable reason (REJECTS_SCHEMA)."""

    candidate: Candidate
    stage: str  # source, fetch, probe, decode, filter, ...
    reason: str  # a code of curation.reasons: http_404, timeout, too_small, blurry, ...
    detail: str = ""  # human-readable; measurements for filter rejects
    # What was measured before the reject (filter measurements, IQA scores): not a rejects
    # column, it goes with the reject's thumbnail (curation.reject_samples) when one is kept.
    measurements: dict[str, float] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_rejection(cls, candidate: Candidate, rejection: Rejection) -> Reject:
        return cls(candidate, rejection.stage, rejection.reason, rejection.detail)

    def to_row(self) -> dict[str, Any]:
        return {
            "candidate_id": self.candidate.id,
            "url": self.candidate.url,
            "source": self.candidate.source,
            "stage": self.stage,
            "reason": self.reason,
            "detail": self.detail or None,
        }


@dataclass
class AcceptedRecord:
    """A candidate that passed fetch, probe and filters, handed on to hashing and scoring.

    ``data`` are the original bytes (what gets published); ``image`` is the one reduced decode
    (RGB, EXIF orientation applied, long side <= ``ProbeConfig.reduced_max_side``) that every
    later stage reuses instead of decoding again. ``image`` is None only when content filters
    are disabled (a fetch-only run). ``width``/``height`` are the original's, after orientation.
    """

    candidate: Candidate
    data: bytes
    image: Image.Image | None
    format: str  # file extension of the original: jpg, png, webp, ...
    width: int
    height: int
    measurements: dict[str, float | int] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)  # final URL, status, attempts...
    # hex sha256 of ``data`` when the partition runner computed it already (it does when the
    # sink checks for copies of published samples); None: the sink computes it
    sha256: str | None = None

    @property
    def id(self) -> str:
        return self.candidate.id
