"""`mird demo`: the main job end to end, on embedded defaults (see `flows.demo.flow`)."""

from __future__ import annotations

import os
from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    @app.command("demo")
    def demo(
        out: Path = typer.Option(
            Path("demo-output"), help="Where the demo writes everything (cleared on rerun)."
        ),
        candidates: int = typer.Option(300, min=30, help="Web candidates the crawl sees."),
        pretrain_steps: int = typer.Option(16, min=1, help="Pre-training steps (CPU)."),
        finetune_steps: int = typer.Option(16, min=1, help="Fine-tuning steps (CPU)."),
    ) -> None:
        """Build a small Million-IRD from a local crawl, then pre-train, fine-tune and
        evaluate DyNet on it: the `million-ird-pipeline` flow, 5-8 minutes on 2 cores.

        \b
        Example:
            mird demo                          # everything lands in demo-output/
            mird demo --candidates 60 --pretrain-steps 2 --finetune-steps 2
        """
        os.environ.setdefault("PREFECT_LOGGING_LEVEL", "CRITICAL")  # errors: one line
        os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
        os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
        from flows.cli.build import quiet_prefect_services
        from flows.demo.flow import DemoSettings, run_demo

        quiet_prefect_services()
        from flows.cli.lifetime import start_prefect_server

        start_prefect_server()  # from this thread, so that it dies with this process
        settings = DemoSettings(
            out=out,
            candidates=candidates,
            pretrain_steps=pretrain_steps,
            finetune_steps=finetune_steps,
        )
        result = run_demo(settings, typer.echo)
        _print_summary(result, settings.out.resolve())
        raise typer.Exit(0 if result.ok else 1)


def _print_summary(result, out: Path) -> None:  # noqa: ANN001 - flows.demo.DemoResult
    echo = typer.echo
    funnel = result.funnel
    echo("")
    echo(f"Dataset   {result.version}")
    echo(f"          kept {funnel['kept']} of {funnel['candidates']} candidates; rejected:")
    for stage, reasons in funnel["by_stage"].items():
        echo(f"            {stage:<8} " + ", ".join(f"{r} {n}" for r, n in reasons.items()))
    for uri, ok in result.verified.items():
        echo(f"          mird verify {uri}: {'OK' if ok else 'FAILED'}")
    if result.outcome_mismatch:
        for outcome, (want, got) in result.outcome_mismatch.items():
            echo(f"          unexpected: {outcome} expected {want}, found {got}")
    echo(f"Patches   {result.patches}")
    echo(f"Dashboard {result.dashboard or '(not written)'}")
    echo(f"Weights   {result.weights['finetune']} (pre-trained: {result.weights['pretrain']})")
    results_md = result.results.get("md")
    if results_md:
        echo(f"Results   {results_md}")
        echo("")
        echo(_rgb_table(Path(result.results["json"])))
    echo("")
    echo("The same at scale: a Prefect server, a worker and the deployments of prefect.yaml;")
    echo(f"edit the BUCKET and /data paths in {out / 'at-scale'}/*.json first:")
    echo("    make serve")
    echo("    export PREFECT_API_URL=http://127.0.0.1:4200/api")
    for deployment, params in (
        ("million-ird-pipeline/default", "pipeline-params.json"),
        ("build-million-ird/weekly", "build-params.json"),
    ):
        echo(
            f"    .venv/bin/prefect deployment run '{deployment}' "
            f'--params "$(cat {out / "at-scale" / params})"'
        )


def _rgb_table(results_json: Path) -> str:
    """The evaluation's note and its comparison table (RGB), as results.md shows them."""
    import json

    from dynet.eval_reports import rgb_table

    results = json.loads(results_json.read_text())
    note = [f"> {results['note']}", ""] if results.get("note") else []
    return "\n".join([*note, *rgb_table(results)])
