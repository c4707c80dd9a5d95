"""`build-million-ird`: sources -> partitions -> global dedupe -> publish -> dashboard.

Thin by design: the work is done by ``curation.build``; this module resolves configuration,
fans partitions out (one task per partition, never per image: a task run costs 10-70 ms),
persists nothing of its own and reports to Prefect (progress, funnel table, summary).
A rerun of a failed build resumes: finished partitions have a done marker and are skipped.
On a Dask cluster (an address, or N local workers) the global dedupe's near-duplicate search
runs on the same cluster as the partitions; otherwise in this process.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.cache_policies import NO_CACHE
from prefect.futures import as_completed
from prefect.task_runners import ThreadPoolTaskRunner

from curation.build import (
    BuildPlan,
    NothingKeptError,
    finish_build,
    plan_build,
    process_partition,
)
from curation.config import BuildConfig
from curation.records import Partition
from storage.build_area import BuildArea
from storage.config_errors import validate_config
from storage.devices import usable_cores
from storage.versions import Dataset, VersionRef


@dataclass(frozen=True)
class BuildWatch:
    """How a local caller watches a build: ``progress(stage, done, total)`` for a bar, and
    ``notice(line)`` for what a build that publishes nothing says instead (the lines of its
    summary artifact: "no new candidates: NAME stays at vN", the known candidates)."""

    progress: Callable[[str, int, int], None] | None = None
    notice: Callable[[str], None] | None = None


# Why a context variable and not a flow parameter: a deployment's parameters are JSON (a
# callable is none), and `mird build` must still run the flow itself (a flow run, with its
# artifacts and logs, not a plain function call). A synchronous flow, and the subflows it
# calls, run in the caller's thread and context, so a value set around the call reaches
# them; set by `watching`, it is scoped to that call (never left behind after it, and
# separate for builds run in other threads). Deployment runs see the default: no watcher.
_WATCH: ContextVar[BuildWatch | None] = ContextVar("build_watch", default=None)


def _watch() -> BuildWatch:
    return _WATCH.get() or BuildWatch()


@contextmanager
def watching(
    progress: Callable[[str, int, int], None] | None = None,
    notice: Callable[[str], None] | None = None,
) -> Iterator[None]:
    """Builds (the flow, or the pipeline calling it) run inside this block report to
    ``progress`` and ``notice``."""
    token = _WATCH.set(BuildWatch(progress, notice))
    try:
        yield
    finally:
        _WATCH.reset(token)


def _report(stage: str, done: int, total: int) -> None:
    progress = _watch().progress
    if progress is not None:
        progress(stage, done, total)


@task(name="process-partition", cache_policy=NO_CACHE, retries=1, retry_delay_seconds=5)
def process_partition_task(
    partition: Partition, config: BuildConfig, build_id: str, parent: str | None = None
) -> dict[str, Any]:
    """One partition end to end; a retry redoes it whole (its marker was not written)."""
    area = BuildArea(Dataset(config.root, config.name), build_id)
    stats = process_partition(partition, config, area, parent=parent)
    return {k: v for k, v in stats.items() if k != "downstream"}


@contextmanager
def _dask_scheduler(
    dask_address: str | None, dask_workers: int, resources: dict[str, float] | None = None
) -> Iterator[str | None]:
    """The address of the Dask scheduler this build uses, or None for a build without Dask.

    With ``dask_workers`` the temporary LocalCluster is started here, not by the task runner:
    a DaskTaskRunner's own cluster lives only as long as the process-partitions subflow, and
    the global dedupe after it must run on the same workers. The cluster closes when the
    build ends, failed or not; a cluster given by address belongs to its owner.
    """
    if dask_address:
        yield dask_address
    elif dask_workers:
        from distributed import LocalCluster

        with LocalCluster(
            n_workers=dask_workers, threads_per_worker=1, resources=resources or None
        ) as cluster:
            yield cluster.scheduler_address
    else:
        yield None


def check_worker_resources(scheduler: str, resources: dict[str, float]) -> str:
    """Refuse (one line) a cluster where no worker offers ``resources``: tasks asking for them
    would wait forever. Returns what was found, for the log."""
    from distributed import Client

    with Client(scheduler, timeout="30s") as client:
        workers = client.scheduler_info(n_workers=-1)["workers"].values()
    offering = [
        w
        for w in workers
        if all(w.get("resources", {}).get(k, 0) >= v for k, v in resources.items())
    ]
    wanted = ", ".join(f"{k}={v:g}" for k, v in sorted(resources.items()))
    if not offering:
        raise ValueError(
            f"partition_resources {wanted}: none of the {len(workers)} Dask worker(s) at "
            f"{scheduler} offers them (start workers with `dask worker ... --resources "
            f"{wanted.replace(', ', ',')}`, or drop partition_resources)"
        )
    return f"partitions need {wanted}: {len(offering)} of {len(workers)} Dask workers offer it"


def _task_runner(scheduler: str | None):
    if scheduler:
        from prefect_dask import DaskTaskRunner

        return DaskTaskRunner(address=scheduler)
    return ThreadPoolTaskRunner(max_workers=usable_cores())


def _pair_search(scheduler: str | None):
    """The global dedupe's near-duplicate search: on the build's Dask cluster, if it has one."""
    if not scheduler:
        return None
    from curation.dedupe_dask import DaskPairSearch

    return DaskPairSearch(scheduler)


@contextmanager
def _annotated(resources: dict[str, float]) -> Iterator[None]:
    if not resources:
        yield
        return
    import dask

    with dask.annotate(resources=dict(resources)):
        yield


@flow(name="process-partitions")
def process_partitions(
    partitions: list[Partition], config: BuildConfig, build_id: str, parent: str | None = None
) -> list[dict[str, Any]]:
    logger = get_run_logger()
    total = len(partitions)
    progress_id = create_progress_artifact(
        0.0, key="build-partitions", description=f"{total} partitions of {config.name}"
    )
    # Dask reads the annotation when a task is submitted: partitions then go only to workers
    # offering config.partition_resources (a GPU for batched IQA). No-op on the thread pool.
    with _annotated(config.partition_resources):
        futures = [process_partition_task.submit(p, config, build_id, parent) for p in partitions]
    results, failures = [], []
    for done, future in enumerate(as_completed(futures), start=1):
        try:
            stats = future.result()
            results.append(stats)
            logger.info(
                "partition %s: %s accepted of %s%s",
                stats["partition"],
                stats.get("accepted"),
                stats.get("candidates"),
                " (done earlier, skipped)" if stats.get("skipped") else "",
            )
        except Exception as exc:  # noqa: BLE001 - collected, the flow fails after all finish
            failures.append(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        update_progress_artifact(progress_id, 100.0 * done / max(total, 1))
        _report("partitions", done, total)
    if failures:
        raise RuntimeError(
            f"{len(failures)} of {total} partitions failed (rerun to resume): {failures[0]}"
        )
    return results


def _funnel_rows(stats: dict[str, Any]) -> list[dict[str, Any]]:
    funnel = stats["funnel"]
    rows = [{"stage": "candidates", "reason": "", "count": funnel["candidates"]}]
    for stage, reasons in funnel["by_stage"].items():
        rows += [{"stage": stage, "reason": r, "count": n} for r, n in reasons.items()]
    rows.append({"stage": "kept", "reason": "", "count": funnel["kept"]})
    return rows


def _nothing_new(plan: BuildPlan) -> VersionRef:
    """An incremental build with no new candidate publishes nothing: its summary artifact
    says so and the flow returns the unchanged latest version (the run completes)."""
    lines = [plan.nothing_new_message(), plan.known_message()]
    create_markdown_artifact(
        f"# {lines[0]}\n\n- {lines[1]}\n- location: `{plan.dataset.version(plan.parent).uri}`",
        key="build-summary",
    )
    for line in lines:
        get_run_logger().info(line)
        notice = _watch().notice
        if notice is not None:
            notice(line)
    return plan.dataset.version(plan.parent).ref


def _nothing_kept(error: NothingKeptError) -> None:
    """A build that kept nothing fails; its summary artifact shows the funnel and where the
    rejects stay (the build area is kept)."""
    funnel = error.funnel
    create_table_artifact(_funnel_rows({"funnel": funnel}), key="build-funnel")
    create_markdown_artifact(
        f"# {error}\n\n- candidates: {funnel.get('candidates', 0):,}, rejected "
        f"{funnel.get('rejected', 0):,}\n- rejects kept in the build area: `{error.area}`\n"
        "- `publish.allow_empty: true` publishes such a build anyway",
        key="build-summary",
    )


@flow(name="build-million-ird", log_prints=True, validate_parameters=False)
def build_million_ird(
    config: BuildConfig, dask_address: str | None = None, dask_workers: int = 0
) -> VersionRef:
    """Build and publish the next version of the dataset; returns it (the unchanged latest
    one when an incremental build finds no new candidate). Progress: see :func:`watching`.

    Prefect's own parameter validation is off: ``config`` is validated here, so that a bad
    deployment parameter fails the run with every failing field, its value and its source
    (``storage.config_errors``), as the CLI reports it.
    """
    config = validate_config(BuildConfig, config, "flow parameter config")
    logger = get_run_logger()
    plan = plan_build(config)
    if plan.nothing_new:
        return _nothing_new(plan)
    logger.info(
        "build %s of %s: %d partitions (%d known candidates skipped), parent %s",
        plan.area.build_id,
        plan.dataset.uri,
        len(plan.partitions),
        plan.skipped_known,
        plan.parent or "none",
    )
    resources = config.partition_resources
    with _dask_scheduler(dask_address, dask_workers, resources) as scheduler:
        if resources and scheduler:
            logger.info(check_worker_resources(scheduler, resources))
        elif resources:
            logger.info("partition_resources ignored: this build runs without Dask")
        runner = _task_runner(scheduler)
        process_partitions.with_options(task_runner=runner)(
            plan.partitions, config, plan.area.build_id, plan.parent
        )
        pair_search = _pair_search(scheduler)
        logger.info(
            "global dedupe: near-duplicate search on %s",
            pair_search if pair_search is not None else "this process",
        )
        try:
            version = finish_build(config, plan, progress=_report, pair_search=pair_search)
        except NothingKeptError as error:
            _nothing_kept(error)
            raise
    stats = version.stats()
    dashboard = _build_dashboard(version)
    create_table_artifact(
        _funnel_rows(stats), key="build-funnel", description=f"{version.uri} funnel"
    )
    summary = [
        f"# {config.name} {version.version}",
        "",
        f"- samples: {stats['samples']:,} ({stats['new_samples']:,} new, "
        f"{stats['reused_samples']:,} reused) in {stats['shards']} shards",
        f"- candidates: {stats['funnel']['candidates']:,}, rejected "
        f"{stats['funnel']['rejected']:,}; {plan.known_message()}",
        f"- near-duplicate pairs: {stats['near_duplicate_pairs']:,}",
        *[
            f"- {metric}: median {s['median']} (p10 {s['p10']}, p90 {s['p90']})"
            for metric, s in stats["scores"].items()
        ],
        *_stage_lines(stats),
        f"- location: `{version.uri}`",
    ]
    if dashboard:
        summary.append(f"- dashboard: `{dashboard}`")
    create_markdown_artifact("\n".join(summary), key="build-summary")
    logger.info("published %s", version.uri)
    return version.ref


def _stage_lines(stats: dict[str, Any]) -> list[str]:
    """The summary's CPU per candidate, stage by stage (stats.json ``stage_seconds``)."""
    stages = stats.get("stage_seconds") or {}
    candidates = stats["funnel"]["candidates"]
    if not stages or not candidates:
        return []
    parts = [f"{name} {s['cpu_s'] / candidates:.3g}" for name, s in stages.items()]
    total = sum(s["cpu_s"] for s in stages.values()) / candidates
    return [f"- CPU s per candidate: {total:.3g} ({', '.join(parts)})"]


def _build_dashboard(version) -> str | None:  # noqa: ANN001
    """Regenerate the data team's dashboard; a failure there never fails the build."""
    try:
        from flows.dashboard import build_dashboard
    except ImportError:
        return None
    try:
        return str(build_dashboard(version.dataset))
    except Exception as exc:  # noqa: BLE001 - the version is published; report and go on
        get_run_logger().warning("dashboard not rebuilt: %s", exc)
        return None
