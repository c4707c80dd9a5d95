"""The main job end to end on embedded defaults: what `mird demo` (and `make demo`) runs.

A crawl of a local web server (real and generated photographs among the junk a scrape is full
of) is built into Million-IRD by the `million-ird-pipeline` flow, which then cuts patches,
pre-trains DyNet on them, fine-tunes it all-in-one on generated data in the official layout
and evaluates it: one Prefect flow run with five subflows, as a deployment runs it at scale.
Everything is small enough for two CPU cores; nothing is downloaded.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from curation.config import BuildConfig
from curation.patches import PatchConfig
from dynet.train_config import FinetuneConfig, PretrainConfig
from flows.train_flow import PipelineConfig

#: A file the demo writes into its output folder; only such a folder is ever cleared.
MARKER = ".mird-demo"
DATASET = "million-ird-demo"
EVAL_NOTE = (
    "Demo run: {pre} pre-training and {fine} fine-tuning steps on a CPU, tested on generated "
    "stand-ins for BSD68, Rain100L and SOTS. These numbers are far from the paper's and say "
    "nothing about it; the published rows are there to show the table's layout. The degraded "
    "input row scores the inputs themselves: a trained restorer lands above it (see "
    "`python -m bench.learning`), a few CPU steps need not."
)


class DemoFolderError(ValueError):
    """The output folder exists and was not written by the demo: it is never cleared."""


@dataclass(frozen=True)
class DemoSettings:
    out: Path = Path("demo-output")
    candidates: int = 300
    pretrain_steps: int = 16
    finetune_steps: int = 16
    batch_size: int = 4
    crop: int = 64
    test_size: int = 96  # the generated test images' side (a multiple of 16, as evaluated)


@dataclass
class DemoResult:
    version: str
    patches: str
    weights: dict[str, str]
    results: dict[str, str]
    verified: dict[str, bool]
    dashboard: str | None
    funnel: dict[str, Any]
    outcome_mismatch: dict[str, tuple[int, int]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(self.verified.values()) and not self.outcome_mismatch


def prepare_output(out: Path) -> None:
    """Start from an empty folder: clear a previous demo's output, refuse anything else."""
    if out.exists() and any(out.iterdir()):
        if not (out / MARKER).is_file():
            raise DemoFolderError(
                f"{out} exists and is not a demo output folder ({MARKER} missing); "
                "choose another --out"
            )
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text("written by `mird demo`; the demo clears this folder on rerun\n")


def pipeline_config(
    settings: DemoSettings, url_list: Path, layout_root: Path, denoise_list: Path
) -> PipelineConfig:
    """The demo's pipeline: library defaults except what a 2-core, 15-minute run needs."""
    out = settings.out
    build = BuildConfig(
        root=str(out / "datasets"),
        name=DATASET,
        incremental=False,
        curation={
            "sources": [{"uri": str(url_list)}],
            # Private and loopback addresses are refused unless allowed, by name.
            "fetch": {"allow_hosts": ["127.0.0.1"]},
        },
        patches=PatchConfig(size=128, stride=128, max_per_image=8),
    )
    common: dict[str, Any] = {"batch_size": settings.batch_size, "crop": settings.crop}
    log = {"every_steps": 2, "progress": False}
    pretrain = PretrainConfig.model_validate(
        {
            **common,
            "steps": settings.pretrain_steps,
            "optim": {"lr": 2e-4, "warmup_steps": 2},
            "data": {"workers": 1, "shuffle_buffer": 64},
            "checkpoint": {"dir": str(out / "runs" / "pretrain"), "every_steps": 8},
            "log": {**log, "dir": str(out / "runs" / "pretrain" / "logs")},
        }
    )
    finetune = FinetuneConfig.model_validate(
        {
            **common,
            "steps": settings.finetune_steps,
            "warmup_epochs": 1,
            "cosine_epochs": 10,
            "data": {
                "root": str(layout_root / "Train"),
                "denoise_list": str(denoise_list),
                "repeats": {},
                "workers": 1,
            },
            "checkpoint": {"dir": str(out / "runs" / "finetune"), "every_steps": 8},
            "log": {**log, "dir": str(out / "runs" / "finetune" / "logs")},
        }
    )
    note = EVAL_NOTE.format(pre=settings.pretrain_steps, fine=settings.finetune_steps)
    return PipelineConfig(
        build=build, pretrain=pretrain, finetune=finetune, eval_data=str(layout_root),
        eval_note=note,
    )  # fmt: skip


def at_scale(config: PipelineConfig) -> PipelineConfig:
    """The same pipeline at scale: paper-sized training; the data paths are placeholders."""
    build = config.build.model_copy(  # deep: the demo's own config must stay as it is
        update={"root": "s3://BUCKET/datasets", "name": "million-ird", "incremental": True},
        deep=True,
    )
    build.curation.sources = [build.curation.sources[0].model_copy(
        update={"uri": "s3://BUCKET/laion-hr/part-00000.parquet", "url_column": "URL",
                "caption_column": "TEXT"}
    )]  # fmt: skip
    build.curation.fetch.allow_hosts = []
    build.patches = PatchConfig()
    return PipelineConfig(
        build=build,
        pretrain=PretrainConfig(checkpoint={"dir": "s3://BUCKET/runs/pretrain"}),
        finetune=FinetuneConfig(
            data={"root": "/data/allinone/Train"}, checkpoint={"dir": "s3://BUCKET/runs/finetune"}
        ),
        eval_data="/data/allinone",
        gpus=8,
    )


def deployment_params(config: BuildConfig | PipelineConfig) -> dict[str, Any]:
    """``prefect deployment run --params`` JSON for a flow taking ``config``."""
    return {"config": config.model_dump(mode="json", exclude_defaults=True)}


class FlowLogEcho(logging.Handler):
    """Shows the flow runs' own log lines (stage starts, results) on the console, briefly."""

    def __init__(self, echo: Callable[[str], None]) -> None:
        super().__init__(logging.INFO)
        self.echo = echo

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message.startswith("Beginning subflow run"):
            flow_name = message.rsplit("for flow ", 1)[-1].strip("'")
            self.echo(f"  - {flow_name}")
        elif message.startswith(("published ", "results written", "step ")):
            self.echo(f"    {message}")


def echo_flow_logs(echo: Callable[[str], None]) -> Callable[[], None]:
    """Route Prefect's flow-run log lines to ``echo``; returns the undo."""
    logger = logging.getLogger("prefect.flow_runs")
    handler, level, propagate = FlowLogEcho(echo), logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False  # Prefect's console handler stays quiet

    def undo() -> None:
        logger.removeHandler(handler)
        logger.setLevel(level)
        logger.propagate = propagate

    return undo


def compare_outcomes(expected: dict[str, str], version) -> dict[str, tuple[int, int]]:  # noqa: ANN001
    """Outcome -> (expected, found) where they differ. Which of two identical files is kept is
    the keeper policy's call, so outcomes are compared as counts."""
    want = Counter(expected.values())
    found = Counter(row["reason"] for row in version.rejects().to_pylist())
    found["keep"] = version.manifest().num_rows
    return {k: (want[k], found[k]) for k in sorted(set(want) | set(found)) if want[k] != found[k]}


def write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")


class StageProgress:
    """The build's progress hook: a line per stage at each quarter, not a line per item."""

    def __init__(self, echo: Callable[[str], None]) -> None:
        self.echo = echo
        self.shown: dict[str, int] = {}

    def __call__(self, stage: str, done: int, total: int) -> None:
        quarter = 4 * done // max(total, 1)
        if self.shown.get(stage, -1) < quarter and (quarter > 0 or done == total):
            self.shown[stage] = quarter
            self.echo(f"    {stage}: {done}/{total}")


def run_demo(settings: DemoSettings, echo: Callable[[str], None]) -> DemoResult:
    """Source -> server -> `million-ird-pipeline` -> verify; everything under ``settings.out``."""
    import flows.build_flow as build_flow
    from flows.demo.layout import write_demo_layout
    from flows.demo.server import DemoServer, write_url_list
    from flows.demo.source import web_candidates
    from flows.train_flow import million_ird_pipeline
    from storage.verify import verify_version

    out = settings.out.resolve()
    settings = DemoSettings(**{**settings.__dict__, "out": out})
    prepare_output(out)
    candidates = web_candidates(settings.candidates)
    expected = {name: outcome for name, (_, outcome) in candidates.items()}
    kinds = Counter(expected.values())
    echo(f"1/3 generated {len(candidates)} web candidates: " + ", ".join(
        f"{n} {k}" for k, n in sorted(kinds.items(), key=lambda kv: -kv[1])
    ))  # fmt: skip
    layout = write_demo_layout(out / "allinone", test_size=settings.test_size)
    echo(f"    and all-in-one data in the official layout: {layout.root}")
    with DemoServer({name: data for name, (data, _) in candidates.items()}) as server:
        url_list = out / "source" / "urls.txt"
        write_url_list(server, url_list)
        echo(f"    serving them on {server.url} (URL list {url_list})")
        config = pipeline_config(settings, url_list, layout.root, layout.denoise_list)
        scaled = at_scale(config)
        write_json(out / "at-scale" / "pipeline-params.json", deployment_params(scaled))
        write_json(out / "at-scale" / "build-params.json", deployment_params(scaled.build))
        echo("2/3 running the Prefect flow million-ird-pipeline (a temporary local server starts):")
        undo = echo_flow_logs(echo)
        try:
            with build_flow.watching(progress=StageProgress(echo)):
                flow_result = million_ird_pipeline(config)
        finally:
            undo()
    version, patches = flow_result.version.open(), flow_result.patches.open()
    echo("3/3 verifying every byte of both versions")
    reports = [verify_version(version), verify_version(patches)]
    dashboard = Path(config.build.root) / DATASET / "dashboard" / "index.html"
    return DemoResult(
        version=version.uri,
        patches=patches.uri,
        weights={
            "pretrain": flow_result.pretrain["weights"],
            "finetune": flow_result.finetune["weights"],
        },
        results=(flow_result.evaluation or {}).get("results", {}),
        verified={v.uri: r.ok for v, r in zip((version, patches), reports, strict=True)},
        dashboard=str(dashboard) if dashboard.is_file() else None,
        funnel=version.stats()["funnel"],
        outcome_mismatch=compare_outcomes(expected, version),
    )
