"""Run one partition: fetch -> header probe -> sha256 -> reduced decode -> content filters.

Threads do the work (the fetch is I/O-bound; Pillow and numpy release the GIL while decoding and
measuring). Accepted records go to a ``sink`` as they complete (hashing, scoring, staging-shard
writing: the next helpers' job) or, without a sink, are returned in candidate order. Every
other candidate becomes exactly one :class:`~curation.records.Reject`.

Outputs in the partition's directory, ``rejects.parquet``, ``reject_samples.parquet`` (thumbnails
of some rejects, ``curation.reject_samples``) then ``_stats.json``: the stats file
is written last and is the done marker. A partition whose marker exists (for the same
candidates) is skipped; one killed before its marker is redone whole, and since every output
is written atomically under a fixed name, the redo replaces rather than duplicates.

Gates run cheapest first: the header (microseconds: format, size, aspect), then the sha256 of
the bytes (a copy of a sample the parent version holds is rejected as ``duplicate_of`` there,
before any decode: the sink's optional ``published_copy``), then the one reduced decode and
the content filters; only survivors reach the sink's hashing and scoring.

Timing: ``_stats.json`` holds ``stage_seconds``, stage -> ``{"cpu_s", "wall_s", "count"}``
(:class:`StageTimes`). Each stage is timed where it runs, with ``time.thread_time`` (CPU of
the calling thread only, so the pool's threads do not count each other's work) and
``time.perf_counter`` (wall, summed over threads: a stage's thread-seconds, waits included).
Stages: ``fetch`` (read or download, retries and politeness waits in its wall time),
``probe_decode`` (header probe and reduced decode), ``filters`` (content gates), ``hashes``
and ``iqa`` (the sink's), ``staging_write`` (the sink's serial
``accept`` and ``finish``). Work in other threads (torch's intra-op pool when it has more than
one thread, pyarrow's) is not in any stage: the build's benchmark runs torch on one thread.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from curation.config import CurationConfig
from curation.dedupe import REASON_DUPLICATE
from curation.dedupe import STAGE as DEDUPE_STAGE
from curation.fetch import Fetcher
from curation.filters import run_filters
from curation.hashing import sha256_hex
from curation.probe import Prober
from curation.reasons import code
from curation.records import AcceptedRecord, Candidate, Partition, Reject, Rejection
from curation.reject_samples import RejectSampler
from storage.atomic import atomic_write_bytes, atomic_write_json
from storage.build_area import REJECT_SAMPLES_FILE, REJECTS_FILE, STATS_FILE
from storage.devices import usable_cores
from storage.schemas import (
    REJECT_SAMPLES_SCHEMA,
    REJECTS_SCHEMA,
    SCHEMA_VERSION,
    parquet_bytes,
    table_from_rows,
)
from storage.uri import join, open_fs

log = logging.getLogger(__name__)

DUPLICATE_URL = code("duplicate_url", "source")
INTERNAL_ERROR = code("internal_error", "internal")


#: The build's stages in pipeline order (stats.json ``stage_seconds`` and the dashboard).
STAGES = (
    "fetch",
    "probe_decode",
    "filters",
    "hashes",
    "iqa",
    "staging_write",
    "dedupe",
    "publish",
)


class StageTimes:
    """CPU and wall seconds per stage, and how many items each stage handled; thread-safe.

    ``time(stage)`` measures the calling thread's CPU (``time.thread_time``) and wall time;
    ``add`` takes figures measured some other way (e.g. process CPU of a phase that runs
    alone). Each thread sums into its own table, so timing takes no lock on the fetch
    threads' path (a shared lock there cost a third of the fetch path's throughput under load,
    ``bench.fetch``); the tables are added up when read."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._local = threading.local()
        self._tables: list[dict[str, list[float]]] = []  # one per thread, and add()'s
        self._added = self._new_table()

    def _new_table(self) -> dict[str, list[float]]:
        table: dict[str, list[float]] = {}  # stage -> [cpu_s, wall_s, count]
        with self._lock:
            self._tables.append(table)
        return table

    def _figures(self, stage: str) -> list[float]:
        table = getattr(self._local, "table", None)
        if table is None:
            table = self._local.table = self._new_table()
        figures = table.get(stage)
        if figures is None:
            figures = table[stage] = [0.0, 0.0, 0]
        return figures

    def add(self, stage: str, cpu_s: float, wall_s: float, count: int = 1) -> None:
        with self._lock:
            figures = self._added.setdefault(stage, [0.0, 0.0, 0])
            figures[0] += cpu_s
            figures[1] += wall_s
            figures[2] += count

    def time(self, stage: str, count: int = 1) -> _StageTimer:
        """A context manager that adds its block's CPU and wall seconds to ``stage``."""
        return _StageTimer(self._figures(stage), count)

    def merge(self, other: Mapping[str, Mapping[str, float]] | None) -> None:
        """Add figures in :meth:`to_dict` form (e.g. a sink's)."""
        for stage, figures in (other or {}).items():
            self.add(stage, figures["cpu_s"], figures["wall_s"], int(figures.get("count", 0)))

    def to_dict(self) -> dict[str, dict[str, float]]:
        """Stage -> {"cpu_s", "wall_s", "count"}, in pipeline order (others after)."""
        figures: dict[str, list[float]] = {}
        with self._lock:
            for table in self._tables:
                for stage, (cpu_s, wall_s, count) in list(table.items()):
                    total = figures.setdefault(stage, [0.0, 0.0, 0])
                    total[0] += cpu_s
                    total[1] += wall_s
                    total[2] += count
        order = [s for s in STAGES if s in figures] + sorted(set(figures) - set(STAGES))
        return {
            stage: {
                "cpu_s": round(figures[stage][0], 4),
                "wall_s": round(figures[stage][1], 4),
                "count": int(figures[stage][2]),
            }
            for stage in order
        }


class _StageTimer:
    """One timed block (a class rather than a generator: it runs twice per stage per
    candidate, on the fetch threads)."""

    __slots__ = ("_figures", "_count", "_cpu", "_wall")

    def __init__(self, figures: list[float], count: int) -> None:
        self._figures, self._count = figures, count

    def __enter__(self) -> None:
        self._cpu, self._wall = time.thread_time(), time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        figures = self._figures
        figures[0] += time.thread_time() - self._cpu
        figures[1] += time.perf_counter() - self._wall
        figures[2] += self._count


def merge_stage_seconds(
    parts: Iterable[Mapping[str, Mapping[str, float]] | None],
) -> dict[str, dict[str, float]]:
    """Sum of several ``stage_seconds`` objects (partitions, dedupe, publish)."""
    total = StageTimes()
    for part in parts:
        total.merge(part)
    return total.to_dict()


class RecordSink(Protocol):
    """Where accepted records go, one at a time, from the runner's thread.

    ``accept`` may turn a record into a reject (e.g. a quality threshold); ``finish`` runs after
    the last record and before the done marker, and returns stats to merge under "downstream".
    A sink may also define ``prepare(record) -> Reject | None``: it runs in the worker threads,
    in parallel, right after the filters (the place for hashing and scoring, which release the
    GIL); it must be thread-safe. ``accept`` then only does what must be serial (writing).
    A sink may define ``published_copy(sha256) -> str | None``: the key of a published sample
    with these bytes, checked before any decode (the candidate becomes ``duplicate_of`` it).
    A ``"stage_seconds"`` entry of ``finish``'s stats (:meth:`StageTimes.to_dict`) is merged
    into the partition's own instead of staying under "downstream".
    """

    def accept(self, record: AcceptedRecord) -> Reject | None: ...

    def finish(self) -> dict[str, Any]: ...


Prepare = Callable[[AcceptedRecord], "Reject | None"]
PublishedCopy = Callable[[str], "str | None"]


@dataclass
class PartitionResult:
    partition_id: str
    out_uri: str
    stats: dict[str, Any]
    accepted: list[AcceptedRecord] = field(default_factory=list)  # empty when a sink is given
    rejects: list[Reject] = field(default_factory=list)
    skipped: bool = False  # True: the done marker existed, nothing was run


def candidates_digest(partition: Partition) -> str:
    """Fingerprint of a partition's candidate ids, stored in the marker to detect a changed
    source (e.g. an appended list that grew the last partition)."""
    digest = hashlib.sha256()
    for candidate in partition.candidates:
        digest.update(candidate.id.encode() + b"\n")
    return digest.hexdigest()


def process_candidate(
    candidate: Candidate,
    fetcher: Fetcher,
    prober: Prober,
    config: CurationConfig,
    prepare: Prepare | None = None,
    samples: RejectSampler | None = None,
    times: StageTimes | None = None,
    published_copy: PublishedCopy | None = None,
    cpu: threading.Semaphore | None = None,
) -> tuple[AcceptedRecord | Reject, int | None]:
    """One candidate end to end: (outcome, bytes fetched or None). Never raises.

    Cheapest gates first: header, then (with ``published_copy``) the exact copy of a published
    sample, then the reduced decode and content filters, then ``prepare``. A reject after the
    reduced decode is offered to ``samples`` here, in the worker thread, while its image is at
    hand. ``times`` receives each stage's thread CPU and wall seconds; ``cpu`` (see
    :func:`cpu_slots`) bounds how many candidates are past the header at once."""
    times = times or StageTimes()
    fetched_bytes: int | None = None
    try:
        with times.time("fetch"):
            fetched = fetcher.fetch(candidate)
        fetched_bytes = len(fetched.data)
        with times.time("probe_decode", count=0):  # counted once, with the decode below
            header = prober.probe_header(fetched.data)
        sha256 = None
        if published_copy is not None:
            with times.time("hashes", count=0):  # counted with the perceptual hashes
                sha256 = sha256_hex(fetched.data)
            if (original := published_copy(sha256)) is not None:
                return Reject(candidate, DEDUPE_STAGE, REASON_DUPLICATE, original), fetched_bytes
        # decode, filters, hashes and IQA: at most ``cpu`` candidates at once (fetches are not
        # bounded by it), so a wide fetch pool does not decode 32 images on 2 cores at a time
        with cpu if cpu is not None else contextlib.nullcontext():
            measurements: dict[str, float | int] = {"exif_orientation": header.orientation}
            image = None
            if config.filters.enabled:
                with times.time("probe_decode"):
                    image = prober.reduced_decode(fetched.data, header)
                with times.time("filters"):
                    verdict = run_filters(image, config.filters)
                measurements.update(verdict.measurements)
                if not verdict.passed:
                    reject = Reject(
                        candidate, "filter", verdict.reason or "", verdict.detail, measurements
                    )
                    if samples is not None:
                        samples.offer(reject, image)
                    return reject, fetched_bytes
            provenance = {
                "final_url": fetched.final_url,
                "http_status": fetched.status,
                "content_type": fetched.content_type,
                "sniffed_type": fetched.sniffed,
                "attempts": fetched.attempts,
                "fetch_seconds": round(fetched.seconds, 4),
                "mode": header.mode,
                **candidate.extra,
            }
            record = AcceptedRecord(
                candidate=candidate,
                data=fetched.data,
                image=image,
                format=header.extension,
                width=header.width,
                height=header.height,
                measurements=measurements,
                provenance=provenance,
                sha256=sha256,
            )
            if prepare is not None and (late_reject := prepare(record)) is not None:
                if samples is not None:
                    samples.offer(late_reject, image, {**measurements, **late_reject.measurements})
                return late_reject, fetched_bytes
            return record, fetched_bytes
    except Rejection as rejection:
        return Reject.from_rejection(candidate, rejection), fetched_bytes
    except Exception as exc:  # a bug or an unforeseen input: recorded, never fatal to the batch
        log.exception("candidate %s (%s) failed", candidate.id, candidate.url)
        detail = f"{type(exc).__name__}: {exc}"
        return Reject(candidate, "internal", INTERNAL_ERROR, detail), fetched_bytes


_CPU_SLOTS: dict[int, threading.BoundedSemaphore] = {}
_CPU_SLOTS_LOCK = threading.Lock()


def cpu_slots(slots: int = 0) -> threading.BoundedSemaphore:
    """The process's semaphore of ``slots`` candidates in their CPU stages at once (0: its
    usable cores), one per size and process, so that the partitions a Dask worker runs at
    the same time share it. Decoding 32 candidates at once on 2 cores costs CPU, not only
    memory: each switch evicts the others' images from the caches."""
    count = slots or usable_cores()
    with _CPU_SLOTS_LOCK:
        return _CPU_SLOTS.setdefault(count, threading.BoundedSemaphore(count))


def read_stats(out_uri: str) -> dict[str, Any] | None:
    """The partition's done marker, or None if the partition is not done."""
    fs, path = open_fs(join(out_uri, STATS_FILE))
    if not fs.exists(path):
        return None
    with fs.open(path, "rb") as handle:
        return json.loads(handle.read())


def run_partition(
    partition: Partition,
    out_uri: str,
    config: CurationConfig | None = None,
    *,
    fetcher: Fetcher | None = None,
    sink: RecordSink | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> PartitionResult:
    """Process ``partition`` into ``out_uri`` (a directory URI), or skip it if done."""
    config = config or CurationConfig()
    digest = candidates_digest(partition)
    done = read_stats(out_uri)
    if done is not None and done.get("candidates_digest") == digest:
        return PartitionResult(partition.id, out_uri, done, skipped=True)
    if done is not None:
        log.warning(
            "partition %s: candidates changed since %s was written; redoing it",
            partition.id,
            STATS_FILE,
        )

    started_at = datetime.now(UTC)
    started = time.monotonic()
    order: dict[str, int] = {}  # id -> first position, to return results in list order
    for index, candidate in enumerate(partition.candidates):
        order.setdefault(candidate.id, index)
    rejects: list[Reject] = []
    unique: list[Candidate] = []
    seen: set[str] = set()
    for candidate in partition.candidates:
        if candidate.id in seen:
            rejects.append(Reject(candidate, "source", DUPLICATE_URL, "listed earlier"))
        else:
            seen.add(candidate.id)
            unique.append(candidate)

    accepted: list[AcceptedRecord] = []
    fetched = bytes_fetched = bytes_accepted = 0
    own_fetcher = fetcher is None
    fetcher = fetcher or Fetcher(config.fetch)
    prober = Prober(config.probe)
    prepare: Prepare | None = getattr(sink, "prepare", None)
    published_copy: PublishedCopy | None = getattr(sink, "published_copy", None)
    samples = RejectSampler(config.reject_samples)
    times = StageTimes()
    cpu = cpu_slots(config.cpu_slots)
    try:
        with ThreadPoolExecutor(config.fetch.threads, thread_name_prefix="curate") as pool:
            # Finished futures arrive through a queue (O(1) each, unlike repeated wait() over
            # the pending set) and are dropped once read, so a record's bytes are freed as soon
            # as the sink is done with them.
            finished: queue.SimpleQueue[Future] = queue.SimpleQueue()
            for candidate in unique:
                pool.submit(
                    process_candidate,
                    candidate,
                    fetcher,
                    prober,
                    config,
                    prepare,
                    samples,
                    times,
                    published_copy,
                    cpu,
                ).add_done_callback(finished.put)
            try:
                for done_count in range(1, len(unique) + 1):
                    outcome, n_bytes = finished.get().result()
                    if n_bytes is not None:
                        fetched += 1
                        bytes_fetched += n_bytes
                    if isinstance(outcome, Reject):
                        rejects.append(outcome)
                    elif sink is None:
                        accepted.append(outcome)
                        bytes_accepted += len(outcome.data)
                    else:
                        with times.time("staging_write"):
                            late_reject = sink.accept(outcome)
                        if late_reject is None:
                            bytes_accepted += len(outcome.data)
                        else:
                            rejects.append(late_reject)
                            measured = {**outcome.measurements, **late_reject.measurements}
                            samples.offer(late_reject, outcome.image, measured)
                    del outcome
                    if progress is not None:
                        progress(done_count, len(unique))
            except BaseException:
                pool.shutdown(wait=True, cancel_futures=True)  # don't fetch the rest for nothing
                raise
        downstream: dict[str, Any] = {}
        if sink is not None:
            with times.time("staging_write", count=0):
                downstream = dict(sink.finish())
            times.merge(downstream.pop("stage_seconds", None))
    finally:
        if own_fetcher:
            fetcher.close()

    accepted.sort(key=lambda record: order[record.id])
    rejects.sort(key=lambda reject: (order[reject.candidate.id], reject.stage))
    n_accepted = len(partition.candidates) - len(rejects)
    sample_rows = samples.rows()
    stats: dict[str, Any] = {
        "partition": partition.id,
        "source": partition.source,
        "index": partition.index,
        "candidates": len(partition.candidates),
        "candidates_digest": digest,
        "fetched": fetched,
        "accepted": n_accepted,
        "rejected": len(rejects),
        "rejects_by_reason": dict(sorted(Counter(r.reason for r in rejects).items())),
        "rejects_by_stage": dict(sorted(Counter(r.stage for r in rejects).items())),
        "bytes_fetched": bytes_fetched,
        "bytes_accepted": bytes_accepted,
        "reject_samples": len(sample_rows),
        "seconds": round(time.monotonic() - started, 3),
        "stage_seconds": times.to_dict(),
        "started_at": started_at.isoformat(),
        "finished_at": datetime.now(UTC).isoformat(),
        "schema_version": SCHEMA_VERSION,
        "downstream": downstream,
    }
    write_rejects(join(out_uri, REJECTS_FILE), rejects)
    table = table_from_rows(sample_rows, REJECT_SAMPLES_SCHEMA)
    atomic_write_bytes(join(out_uri, REJECT_SAMPLES_FILE), parquet_bytes(table))
    atomic_write_json(join(out_uri, STATS_FILE), stats)  # last: the done marker
    return PartitionResult(partition.id, out_uri, stats, accepted, rejects)


def write_rejects(uri: str, rejects: list[Reject]) -> None:
    table = table_from_rows([reject.to_row() for reject in rejects], REJECTS_SCHEMA)
    atomic_write_bytes(uri, parquet_bytes(table))
