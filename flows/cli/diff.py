"""`mird diff ROOT/NAME vA vB`: what changed between two published versions."""

from __future__ import annotations

import json

import typer


def register(app: typer.Typer) -> None:
    @app.command("diff")
    def diff(
        target: str = typer.Argument(..., help="ROOT/NAME: the dataset"),
        old: str = typer.Argument(..., help="The earlier version, e.g. v6"),
        new: str = typer.Argument(..., help="The later version, e.g. v7"),
        as_json: bool = typer.Option(False, "--json", help="Print the whole diff as JSON."),
        examples: int = typer.Option(5, min=0, help="URLs shown of the added and removed."),
    ) -> None:
        """Samples added (by source) and removed (by the later build's reject reason), the
        reject counts per reason of both builds, and the configuration fields that differ.

        Examples:

            mird diff data/datasets/million-ird v6 v7
            mird diff data/datasets/million-ird v1 v7 --json
        """
        from storage.verify import resolve_target
        from storage.version_diff import diff_lines, diff_versions

        dataset, versions = resolve_target(target)
        missing = [v for v in (old, new) if v not in versions]
        if missing:
            raise ValueError(
                f"{target}: no version {', '.join(missing)} (published: {', '.join(versions)})"
            )
        result = diff_versions(dataset, old, new, examples)
        if as_json:
            typer.echo(json.dumps(result.to_dict(), indent=2, default=str))
        else:
            for line in diff_lines(result):
                typer.echo(line)
