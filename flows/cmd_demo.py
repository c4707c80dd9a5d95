"""`mird demo`: the main job, end to end, on embedded defaults.

Writes a small source of real photographs (scikit-image's) mixed with the rejects a scrape is
full of, runs the `build-million-ird` flow on it (Prefect, locally), cuts patches from the
published version, verifies every byte, and prints where everything is.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    @app.command("demo")
    def demo(
        out: Path = typer.Option(Path("demo-output"), help="Where the demo writes everything."),
    ) -> None:
        """Run the demo build: source -> filters -> dedupe -> IQA -> publish -> patches."""
        os.environ.setdefault("PREFECT_LOGGING_LEVEL", "CRITICAL")  # errors: one line
        os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
        os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
        from curation.build import BuildConfig
        from curation.demo_source import write_demo_source
        from curation.patches import PatchConfig, extract_patches
        from flows.build_flow import build_million_ird
        from flows.cmd_build import quiet_prefect_services

        quiet_prefect_services()
        from storage.verify import verify_version
        from storage.versions import Dataset

        out = out.resolve()
        source = out / "source"
        expected = write_demo_source(source)
        typer.echo(f"1/4 wrote {len(expected)} candidate images to {source}")
        config = BuildConfig(
            root=str(out / "datasets"),
            name="million-ird-demo",
            incremental=False,
            # scikit-image's photographs are 0.1-0.4 MP: the demo lowers LAION-HR's 1024 px.
            curation={"sources": [{"uri": str(source)}], "probe": {"min_side": 256}},
            quality={"max_side": 512},
            patches=PatchConfig(size=128, stride=128, max_per_image=4),
        )
        typer.echo("2/4 building (Prefect flow build-million-ird; a local server starts)...")
        uri = build_million_ird(config)
        dataset = Dataset(config.root, config.name)
        version = dataset.version(uri.rstrip("/").rsplit("/", 1)[-1])
        stats = version.stats()
        typer.echo(
            f"    published {version.uri}: kept {stats['funnel']['kept']} of "
            f"{stats['funnel']['candidates']} candidates"
        )
        for row in sorted(version.rejects().to_pylist(), key=lambda r: r["url"] or ""):
            name = (row["url"] or "").rsplit("/", 1)[-1]
            typer.echo(f"      rejected {name:<26} {row['reason']:<18} {row['detail'] or ''}")
        patches = extract_patches(
            version, Dataset(config.root, "million-ird-demo-patches"), config.patches
        )
        typer.echo(f"3/4 cut {patches.stats()['samples']} patches into {patches.uri}")
        reports = [verify_version(version), verify_version(patches)]
        ok = all(r.ok for r in reports)
        typer.echo(
            "4/4 verify: " + ", ".join(f"{r.version} {'OK' if r.ok else 'FAILED'}" for r in reports)
        )
        dashboard = Path(config.root) / config.name / "dashboard" / "index.html"
        if dashboard.exists():
            typer.echo(f"    dashboard: {dashboard}")
        # Which of two byte-identical files is kept is the keeper policy's call (same score
        # and size: the smaller key), so compare outcomes as counts.
        outcomes = Counter(reason for reason in expected.values())
        found = Counter(row["reason"] for row in version.rejects().to_pylist())
        found["keep"] = version.manifest().num_rows
        if found != outcomes:
            typer.echo(f"unexpected outcome: {dict(found)}, expected {dict(outcomes)}")
            ok = False
        raise typer.Exit(0 if ok else 1)
