"""`mird dashboard ROOT/NAME [--out DIR]`: the data team's static HTML dashboard."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    @app.command("dashboard")
    def dashboard(
        target: str = typer.Argument(..., help="ROOT/NAME (latest version) or ROOT/NAME/vN"),
        out: str | None = typer.Option(
            None, "--out", help="Output folder (default: ROOT/NAME/dashboard)."
        ),
        seed: int = typer.Option(0, help="Seed of the random kept/rejected examples."),
        examples: int = typer.Option(24, help="How many kept and rejected thumbnails each."),
    ) -> None:
        """Build a self-contained HTML dashboard of a dataset version; prints its path.

        Funnel per stage and reason, sources, resolutions, IQA distributions with
        their thresholds, near-duplicate clusters, kept and rejected examples. Needs
        no network to view.

        Examples:

            mird dashboard data/datasets/million-ird
            mird dashboard data/datasets/million-ird/v1 --out v1-dash --examples 48
        """
        from flows.dashboard import build_dashboard

        path = build_dashboard(
            target, out, seed=seed, kept_examples=examples, rejected_examples=examples
        )
        typer.echo(path)
