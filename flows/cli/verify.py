"""`mird verify ROOT/NAME[/vN]`: re-hash every sample, check manifest <-> shards."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    @app.command("verify")
    def verify(
        target: str = typer.Argument(..., help="ROOT/NAME (all versions) or ROOT/NAME/vN"),
        max_problems: int = typer.Option(50, help="How many problems to print at most."),
    ) -> None:
        """Verify published dataset versions; exits 1 on any problem.

        Re-hashes every sample of every shard and checks the manifest against the
        shards both ways (missing, extra or altered samples, shard checksums).

        Examples:

            mird verify data/datasets/million-ird
            mird verify data/datasets/million-ird/v2 --max-problems 10
        """
        from rich.console import Console

        from flows.cli.console import progress_bars
        from storage.verify import resolve_target, verify_version

        console = Console(stderr=True)
        dataset, versions = resolve_target(target)
        failed = False
        for name in versions:
            version = dataset.version(name)
            shards = version.entry.get("shards", 0)
            with progress_bars(console=console, transient=True) as progress:
                task = progress.add_task(f"verify {name}", total=shards or None)
                report = verify_version(version, on_shard=lambda _uri, t=task: progress.advance(t))
            status = "OK" if report.ok else f"FAILED ({len(report.problems)} problems)"
            typer.echo(
                f"{version.uri}: {status}: {report.samples_checked} samples, "
                f"{report.shards_checked} shards, {report.bytes_checked:,} bytes re-hashed"
            )
            for problem in report.problems[:max_problems]:
                typer.echo(f"  {problem}")
            if len(report.problems) > max_problems:
                typer.echo(f"  ... and {len(report.problems) - max_problems} more")
            failed |= not report.ok
        raise typer.Exit(1 if failed else 0)
