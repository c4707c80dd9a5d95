"""`mird explain IMAGE_OR_URL`: every curation gate's verdict on one image, and why."""

from __future__ import annotations

import json
import math
from pathlib import Path
from urllib.parse import urlsplit

import typer


class ExplainInputError(ValueError):
    """An image that cannot be read or fetched (the message names it and why)."""


def read_image(target: str, fetch_config):  # noqa: ANN001, ANN201 - FetchConfig -> bytes
    """The bytes of a local file, an fsspec URI or an http(s) URL (through the build's
    Fetcher: its SSRF guard, timeouts and size cap). Failures are ExplainInputError."""
    from curation.fetch import Fetcher
    from curation.records import Rejection
    from curation.urls import redact_url

    scheme = urlsplit(target).scheme.lower()
    is_url = scheme in ("http", "https")
    if not is_url and "://" not in target:  # a local path: say plainly what is wrong
        path = Path(target)
        if not path.exists():
            raise ExplainInputError(f"{target}: no such file")
        if path.is_dir():
            raise ExplainInputError(
                f"{target} is a folder: explain takes one image (mird calibrate takes folders)"
            )
    with Fetcher(fetch_config) as fetcher:
        try:
            fetched = fetcher.fetch_url(target) if is_url else fetcher.fetch_file(target)
        except Rejection as rejection:
            hint = ""
            if rejection.reason == "blocked_address":
                hint = " (the SSRF guard; allow the host with --allow-host)"
            verb = "fetch" if is_url else "read"
            shown = redact_url(target)  # credentials in a URL are never printed
            raise ExplainInputError(
                f"cannot {verb} {shown}: {rejection.reason}: {rejection.detail}{hint}"
            ) from None
    return fetched.data


def _value(value: float | int) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if math.isfinite(value) else str(value)
    return str(value)


def report_lines(report, lower_better: dict[str, bool]) -> list[str]:  # noqa: ANN001
    """The text of ``mird explain``: the decision first, then the header, the gates in
    order, the measurements and the IQA scores."""
    if report.kept:
        lines = ["kept"]
    else:
        lines = [f"rejected: {report.reason} ({report.stage}) - {report.detail}"]
    header = report.header
    if header is None:
        lines.append("header: none (the probe rejected the image)")
    else:
        lines.append(
            f"header: {header.format} {header.width}x{header.height} {header.mode}, "
            f"EXIF orientation {header.orientation}"
        )
    lines.append("gates:")
    width = max((len(d.gate) for d in report.decisions), default=0)
    for decision in report.decisions:
        verdict = "PASS" if decision.passed else "FAIL"
        detail = decision.detail if decision.passed else f"{decision.reason}: {decision.detail}"
        lines.append(f"  {verdict} {decision.gate.ljust(width)}  {detail}".rstrip())
    if report.measurements:
        lines.append("measurements:")
        lines += [f"  {name} = {_value(v)}" for name, v in report.measurements.items()]
    if report.scores:
        lines.append("IQA scores:")
        for name, value in report.scores.items():
            better = lower_better.get(name)
            note = "" if better is None else f"  ({'lower' if better else 'higher'} is better)"
            lines.append(f"  {name} = {_value(value)}{note}")
    return lines


def register(app: typer.Typer) -> None:
    @app.command("explain")
    def explain(
        image: str = typer.Argument(..., help="Image file, fsspec URI or http(s) URL."),
        settings: list[str] = typer.Argument(
            None,
            help="KEY=VALUE settings on top of --config, e.g. curation.probe.min_side=512.",
            metavar="KEY=VALUE",
        ),
        config: Path = typer.Option(
            None, help="BuildConfig as YAML or JSON: its curation and quality settings."
        ),
        allow_host: list[str] = typer.Option(
            None, help="Exempt a host/IP/CIDR from the SSRF guard (e.g. 127.0.0.1)."
        ),
        as_json: bool = typer.Option(False, "--json", help="Print the full report as JSON."),
    ) -> None:
        """Why a build would keep or reject one image: every gate, every measurement.

        Runs what a build runs on one candidate (header probe, reduced decode,
        every content gate, every IQA threshold), but does not stop at the first
        reject. Prints the decision first (kept, or rejected: REASON (stage) -
        detail), the header, one PASS/FAIL line per gate with its evidence and
        threshold, then every measurement and IQA score. The settings are a
        build's: --config (see docs/configuration.md), KEY=VALUE settings and
        --allow-host as in mird build. Exit status: 0 kept, 1 rejected, 2 an
        input error.

        Examples:

            mird explain photo.jpg
            mird explain photo.jpg --config build.yaml --json
            mird explain photo.jpg curation.probe.min_side=512
            mird explain http://127.0.0.1:8000/a.jpg --allow-host 127.0.0.1
        """
        from curation.calibrate import load_gate_config

        build_config = load_gate_config(config, allow_host or [], settings=settings or [])
        data = read_image(image, build_config.curation.fetch)  # before loading the metrics

        from curation.gate import Gate

        gate = Gate(build_config.curation, build_config.quality)
        report = gate.judge(data)
        if as_json:
            typer.echo(json.dumps(report.to_dict(), indent=2))
        else:
            lower_better = gate.scorer.lower_better if gate.scorer is not None else {}
            for line in report_lines(report, lower_better):
                typer.echo(line)
        raise typer.Exit(0 if report.kept else 1)
