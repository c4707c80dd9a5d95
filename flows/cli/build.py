"""`mird build SOURCE... [KEY=VALUE...] --root ROOT --name NAME`: the build flow, run here."""

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
    config_file: Path | None,
    overrides: dict,
    sources: list[str],
    allow_hosts: list[str],
    allow_empty: bool = False,
    exclude: list[str] | None = None,
    settings: list[str] | None = None,
):
    """The one BuildConfig: file (YAML/JSON) first, then command-line options on top, then
    the ``KEY=VALUE`` ``settings`` (storage.config_overrides) on top of both.

    Validated once, merged: an error names the file, or "command line" for a field that an
    option or a setting set (so an option may also supply what the file lacks, e.g. ``--root``)."""
    from curation.build_options import merge_options
    from curation.config import BuildConfig
    from storage.config_errors import ConfigError, validate_config
    from storage.config_overrides import apply_overrides, override_origin

    data, origin = merge_options(
        config_file,
        sources=sources,
        allow_hosts=allow_hosts,
        overrides=overrides,
        allow_empty=allow_empty,
        exclude=exclude or [],
    )
    origin = override_origin(apply_overrides(data, settings or []), origin)

    problems: list[str] = []  # every problem at once: a misspelt key may explain the rest
    try:
        config = validate_config(BuildConfig, {"root": "", **data}, origin)
    except ConfigError as exc:
        problems.extend(exc.lines)
    if "root" not in data:
        problems.append("no storage root: give --root or `root` in --config")
    curation = data.get("curation")
    if not (isinstance(curation, dict) and curation.get("sources")):
        problems.append("no sources: give SOURCE arguments or `curation.sources` in --config")
    if problems:
        raise ConfigError(*problems)
    return config


#: Printed on stderr when a build keeps nothing and too_small leads the rejects: the
#: commonest surprise is the size minimum.
NOTHING_KEPT_HINT = (
    "nothing kept: see the rejects; e.g. too_small means the 1024 px minimum side, "
    "curation.probe.min_side"
)


def _reasons(funnel: dict) -> list[tuple[str, int]]:
    """Reject reasons across stages, commonest first."""
    reasons: dict[str, int] = {}
    for by_reason in funnel.get("by_stage", {}).values():
        for reason, count in by_reason.items():
            reasons[reason] = reasons.get(reason, 0) + count
    return sorted(reasons.items(), key=lambda item: (-item[1], item[0]))


def funnel_summary(funnel: dict, top: int = 3, known: int = 0) -> str:
    """One line from a version's stats.json funnel: kept N of M, and the commonest rejects.

    ``known``: candidates an incremental build skipped because the parent version already
    holds them or rejected them for good; the funnel counts only the new ones."""
    line = f"kept {funnel['kept']:,} of {funnel['candidates']:,} candidates"
    if known:
        line = (
            f"kept {funnel['kept']:,} of {funnel['candidates']:,} new candidates "
            f"({known:,} already known, skipped)"
        )
    commonest = _reasons(funnel)[:top]
    if commonest:
        line += "; top rejects: " + ", ".join(f"{r} {n:,}" for r, n in commonest)
    return line


def report_nothing_kept(error) -> None:  # noqa: ANN001 - curation.build.NothingKeptError
    """A build that kept nothing: the error, the funnel, where the rejects stay (stderr)."""
    typer.echo(f"mird: error: {error}", err=True)
    typer.echo(funnel_summary(error.funnel), err=True)
    typer.echo(
        f"rejects kept in {error.area}/partitions/*/rejects.parquet "
        "(--allow-empty publishes the build anyway)",
        err=True,
    )
    reasons = _reasons(error.funnel)
    if reasons and reasons[0][0] == "too_small":
        typer.echo(NOTHING_KEPT_HINT, err=True)


def register(app: typer.Typer) -> None:
    @app.command("build")
    def build(
        sources: list[str] = typer.Argument(
            None,
            help="URL lists (.txt/.csv/.tsv/.jsonl/.parquet[.gz]), folders or prefixes; then "
            "any KEY=VALUE settings, e.g. curation.probe.min_side=512.",
            metavar="SOURCE... KEY=VALUE",
        ),
        root: str = typer.Option(None, help="Storage root URI (path, s3://, gs://...)."),
        name: str = typer.Option(None, help="Dataset name [default: million-ird]."),
        config: Path = typer.Option(None, help="BuildConfig as YAML or JSON."),
        allow_host: list[str] = typer.Option(
            None, help="Exempt a host/IP/CIDR from the SSRF guard (e.g. 127.0.0.1)."
        ),
        exclude: list[str] = typer.Option(
            None,
            help="A test set (folder or prefix) to keep out: its images and near copies "
            "are rejected as test_set_overlap. Repeat for several.",
        ),
        full: bool = typer.Option(False, help="Ignore the latest version: a full rebuild."),
        allow_empty: bool = typer.Option(
            False, help="Publish even a build that keeps no sample (an empty version)."
        ),
        dask_address: str = typer.Option(None, help="Run partitions on this Dask scheduler."),
        dask_local: int = typer.Option(0, help="Start a local Dask cluster of N workers."),
        verbose: bool = typer.Option(False, help="Show Prefect's logs."),
    ) -> None:
        """Build and publish the next version of a dataset (Prefect runs locally).

        Runs the flow build-million-ird: fetch, filters, dedupe, IQA, publish. A rerun
        skips finished partitions; by default the build adds to the latest version
        (--full: all again). Every option of the build is in --config (see
        docs/configuration.md); the options here override the file, and KEY=VALUE
        settings after the sources (dotted names, values read as YAML) override
        both. Prints the published version's URI, then a line: kept N of M
        candidates and the top reject reasons. With no new candidate it publishes
        nothing and says "no new candidates: NAME stays at vN". A build that keeps
        nothing publishes nothing and exits 1 (--allow-empty: publish it anyway).

        Examples:

            mird build urls.parquet photos/ --root data/datasets --name million-ird
            mird build --config build.yaml --dask-local 4
            mird build photos/ --root data/datasets curation.probe.min_side=512
            mird build --config build.yaml --dask-address tcp://scheduler:8786
            mird build list.txt --root data/datasets --allow-host 127.0.0.1
            mird build list.txt --root data/datasets --exclude data/test
        """
        # Quiet by default: a failed flow run makes Prefect log the traceback at ERROR, and the
        # CLI's contract is one line per error (main() prints it); --verbose shows it all.
        os.environ.setdefault("PREFECT_LOGGING_LEVEL", "INFO" if verbose else "CRITICAL")
        os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
        os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
        from storage.config_overrides import split_overrides

        sources, settings = split_overrides(sources or [])
        overrides = {"root": root, "name": name, "incremental": False if full else None}
        build_config = load_build_config(
            config, overrides, sources, allow_host or [], allow_empty, exclude, settings
        )

        from rich.progress import BarColumn, MofNCompleteColumn, TimeElapsedColumn

        import flows.build_flow as build_flow
        from curation.build import NothingKeptError
        from flows.cli.console import progress_bars
        from flows.cli.lifetime import start_prefect_server

        if not verbose:
            quiet_prefect_services()
        start_prefect_server()  # from this thread, so that it dies with this process

        notices: list[str] = []
        with progress_bars(  # on stderr: stdout is for the URI and the summary
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
        ) as progress:
            bars: dict[str, int] = {}

            def hook(stage: str, done: int, total: int) -> None:
                if stage not in bars:
                    bars[stage] = progress.add_task(stage, total=total)
                progress.update(bars[stage], completed=done, total=total)

            try:
                with build_flow.watching(progress=hook, notice=notices.append):
                    published = build_flow.build_million_ird(
                        build_config, dask_address=dask_address, dask_workers=dask_local
                    )
            except NothingKeptError as error:
                progress.stop()
                report_nothing_kept(error)
                raise typer.Exit(1) from None
        if notices:  # nothing new: nothing published, and no URI of a new version to print
            for line in notices:
                typer.echo(line)
            return
        typer.echo(published.uri)  # alone on the first line: scripts read it
        stats = published.open().stats()
        typer.echo(funnel_summary(stats["funnel"], known=stats.get("skipped_known_candidates", 0)))
