"""`mird calibrate SOURCE...`: propose IQA thresholds from a sample of your own sources."""

from __future__ import annotations

import sys
from pathlib import Path

import typer


def _progress_reporter(total: int):  # noqa: ANN202 - (callback, close)
    """A bar on a terminal; otherwise a line on stderr every 10 images (and at the end)."""
    from rich.progress import BarColumn, MofNCompleteColumn, TimeElapsedColumn

    from flows.cli.console import progress_bars

    bar = progress_bars(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        transient=True,
    )
    if not bar.disable:
        bar.start()
        task = bar.add_task("judging", total=total)
        return (lambda done, _total: bar.update(task, completed=done)), bar.stop

    def line(done: int, total: int) -> None:
        if done % 10 == 0 or done == total:
            print(f"mird calibrate: judged {done}/{total}", file=sys.stderr, flush=True)

    return line, lambda: None


def register(app: typer.Typer) -> None:
    @app.command("calibrate")
    def calibrate(
        sources: list[str] = typer.Argument(
            None,
            help="URL lists (.txt/.csv/.tsv/.jsonl/.parquet[.gz]), folders or globs; then "
            "any KEY=VALUE settings, e.g. curation.probe.min_side=512.",
            metavar="SOURCE... KEY=VALUE",
        ),
        sample: int = typer.Option(200, min=1, help="Candidates drawn from the sources."),
        percentile: list[float] = typer.Option(
            None, help="Percentiles to report (repeatable) [default: 95, 99]."
        ),
        use: float = typer.Option(99.0, help="The percentile whose thresholds are written."),
        out: Path = typer.Option(None, help="Write the YAML fragment here (else: stdout)."),
        config: Path = typer.Option(
            None, help="BuildConfig as YAML or JSON: curation, quality and sources."
        ),
        seed: int = typer.Option(0, help="Seed of the sample (same seed: same sample)."),
        allow_host: list[str] = typer.Option(
            None, help="Exempt a host/IP/CIDR from the SSRF guard (e.g. 127.0.0.1)."
        ),
    ) -> None:
        """Propose IQA thresholds from a sample of your sources.

        Draws a deterministic sample of the candidates (seeded), fetches and
        judges each as a build would, scores every IQA metric of quality.metrics
        on those that pass the probe and the content gates, and proposes per
        metric the score at percentile --use of the worst acceptable side (99:
        reject the worst 1 %). Prints a table (median, each percentile, the
        proposed and the current threshold, the share the current one rejects)
        and how many candidates failed before scoring, and why. Writes a YAML
        fragment (quality.metrics, quality.thresholds, the evidence in comments)
        that mird build --config reads. Sources: SOURCE arguments or
        curation.sources in --config; KEY=VALUE settings after them as in mird
        build.

        Examples:

            mird calibrate photos/ --sample 200 --out quality.yaml
            mird calibrate urls.parquet --percentile 90 --percentile 99 --use 99
            mird calibrate --config build.yaml --seed 1 --out quality.yaml
            mird calibrate photos/ curation.probe.min_side=512
        """
        from curation import calibrate as core
        from curation.calibrate import load_gate_config
        from curation.fetch import Fetcher
        from curation.gate import Gate
        from storage.config_overrides import split_overrides

        sources, settings = split_overrides(sources or [])
        build_config = load_gate_config(config, allow_host or [], sources, settings)
        if not build_config.curation.sources:
            raise core.CalibrationError(
                "no sources: give SOURCE arguments or `curation.sources` in --config"
            )
        percentiles = core.check_percentiles(percentile or core.DEFAULT_PERCENTILES, use)
        curation = build_config.curation
        chosen, listed = core.sample_candidates(
            curation.sources, sample, seed, curation.partition_size
        )
        if not chosen:
            raise core.CalibrationError("the sources list no candidate")
        typer.echo(f"sampled {len(chosen)} of {listed:,} candidates (seed {seed})", err=True)
        gate = Gate(curation, core.scoring_quality(build_config.quality))
        threads = min(curation.fetch.threads, 16)
        update, close = _progress_reporter(len(chosen))
        try:
            with Fetcher(curation.fetch) as fetcher:
                judged = core.judge_sample(chosen, gate, fetcher, threads, update)
        finally:
            close()
        result = core.summarize(
            judged,
            build_config.quality,
            gate.scorer.lower_better,
            percentiles,
            use,
            seed,
            listed,
        )
        for line in core.table_lines(result):
            typer.echo(line)
        typer.echo(core.failure_line(result))
        if not result.scored:  # a problem found (exit 1), not a usage error
            typer.echo(
                f"mird: error: none of the {len(chosen)} sampled candidates passed the probe "
                "and the content gates: nothing to calibrate (reasons above)",
                err=True,
            )
            raise typer.Exit(1)
        text = core.fragment_text(result, [s.uri for s in curation.sources])
        core.check_fragment(text)  # the fragment must be a valid build configuration
        if out is None:
            typer.echo("")
            typer.echo(text, nl=False)
        else:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(text, encoding="utf-8")
            typer.echo(f"wrote {out}: use it with mird build --config {out}")
