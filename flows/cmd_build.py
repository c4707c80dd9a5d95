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
        published version's URI.

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
        typer.echo(uri)
