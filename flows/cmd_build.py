"""`mird build SOURCE... --root ROOT --name NAME`: run the build flow here, with a progress bar."""

from __future__ import annotations

import os
from pathlib import Path

import typer


def quiet_prefect_services() -> None:
    """Prefect's background services log under their class names, outside the ``prefect``
    logger that PREFECT_LOGGING_LEVEL sets (e.g. "Still processing items" at shutdown)."""
    import logging

    for name in ("EventsWorker", "APILogWorker", "QueueService"):
        logging.getLogger(name).setLevel(logging.ERROR)


def load_build_config(
    config_file: Path | None, overrides: dict, sources: list[str], allow_hosts: list[str]
):
    """The one BuildConfig: file (YAML/JSON) first, then command-line options on top."""
    from curation.build import BuildConfig

    data: dict = {}
    if config_file is not None:
        if not config_file.is_file():
            raise FileNotFoundError(f"{config_file}: no such config file")
        data = BuildConfig.from_file(str(config_file)).model_dump(mode="json", exclude_unset=True)
    for key, value in overrides.items():
        if value is not None:
            data[key] = value
    curation = data.setdefault("curation", {})
    if sources:
        curation["sources"] = [{"uri": s} for s in sources]
    if allow_hosts:
        fetch = curation.setdefault("fetch", {})
        fetch["allow_hosts"] = [*fetch.get("allow_hosts", []), *allow_hosts]
    if not curation.get("sources"):
        raise ValueError("no sources: give SOURCE arguments or `curation.sources` in --config")
    if "root" not in data:
        raise ValueError("no storage root: give --root or `root` in --config")
    return BuildConfig.model_validate(data)


#: Printed on stderr when a build keeps nothing: the commonest surprise is the size minimum.
NOTHING_KEPT_HINT = (
    "nothing kept: see the rejects; e.g. too_small means the 1024 px minimum side, "
    "curation.probe.min_side"
)


def funnel_summary(funnel: dict, top: int = 3) -> str:
    """One line from a version's stats.json funnel: kept N of M, and the commonest rejects."""
    reasons: dict[str, int] = {}
    for by_reason in funnel.get("by_stage", {}).values():
        for reason, count in by_reason.items():
            reasons[reason] = reasons.get(reason, 0) + count
    line = f"kept {funnel['kept']:,} of {funnel['candidates']:,} candidates"
    if reasons:
        commonest = sorted(reasons.items(), key=lambda item: (-item[1], item[0]))[:top]
        line += "; top rejects: " + ", ".join(f"{r} {n:,}" for r, n in commonest)
    return line


def register(app: typer.Typer) -> None:
    @app.command("build")
    def build(
        sources: list[str] = typer.Argument(
            None, help="URL lists (.txt/.csv/.tsv/.jsonl/.parquet[.gz]), folders or prefixes."
        ),
        root: str = typer.Option(None, help="Storage root URI (path, s3://, gs://...)."),
        name: str = typer.Option(None, help="Dataset name [default: million-ird]."),
        config: Path = typer.Option(None, help="BuildConfig as YAML or JSON."),
        allow_host: list[str] = typer.Option(
            None, help="Exempt a host/IP/CIDR from the SSRF guard (e.g. 127.0.0.1)."
        ),
        full: bool = typer.Option(False, help="Ignore the latest version: a full rebuild."),
        dask_address: str = typer.Option(None, help="Run partitions on this Dask scheduler."),
        dask_local: int = typer.Option(0, help="Start a local Dask cluster of N workers."),
        verbose: bool = typer.Option(False, help="Show Prefect's logs."),
    ) -> None:
        """Build and publish the next version of a dataset (Prefect runs locally).

        Runs the flow build-million-ird: fetch, filters, dedupe, IQA, publish. A rerun
        skips finished partitions; by default the build adds to the latest version
        (--full: all again). Every option of the build is in --config (see
        docs/configuration.md); the options here override the file. Prints the
        published version's URI, then a line: kept N of M candidates and the top
        reject reasons.

        Examples:

            mird build urls.parquet photos/ --root data/datasets --name million-ird
            mird build --config build.yaml --dask-local 4
            mird build --config build.yaml --dask-address tcp://scheduler:8786
            mird build list.txt --root data/datasets --allow-host 127.0.0.1
        """
        # Quiet by default: a failed flow run makes Prefect log the traceback at ERROR, and the
        # CLI's contract is one line per error (main() prints it); --verbose shows it all.
        os.environ.setdefault("PREFECT_LOGGING_LEVEL", "INFO" if verbose else "CRITICAL")
        os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
        os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
        overrides = {"root": root, "name": name, "incremental": False if full else None}
        build_config = load_build_config(config, overrides, sources or [], allow_host or [])

        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

        import flows.build_flow as build_flow

        if not verbose:
            quiet_prefect_services()

        with Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            transient=False,
            console=Console(stderr=True),  # stdout is for the URI and the summary
        ) as progress:
            bars: dict[str, int] = {}

            def hook(stage: str, done: int, total: int) -> None:
                if stage not in bars:
                    bars[stage] = progress.add_task(stage, total=total)
                progress.update(bars[stage], completed=done, total=total)

            build_flow.PROGRESS_HOOK = hook
            try:
                uri = build_flow.build_million_ird(
                    build_config, dask_address=dask_address, dask_workers=dask_local
                )
            finally:
                build_flow.PROGRESS_HOOK = None
        typer.echo(uri)  # alone on the first line: scripts read it
        from storage.versions import Dataset

        version = Dataset(build_config.root, build_config.name).version(
            uri.rstrip("/").rsplit("/", 1)[-1]
        )
        funnel = version.stats()["funnel"]
        typer.echo(funnel_summary(funnel))
        if funnel["kept"] == 0:
            typer.echo(NOTHING_KEPT_HINT, err=True)
