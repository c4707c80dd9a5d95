"""Training and evaluation flows, and the end-to-end `million-ird-pipeline`.

Training runs as a subprocess (`torchrun` for GPUs, plain Python on the CPU) in its own process
group: a cancelled or crashed flow run kills the whole group, so no orphaned DDP workers keep
a GPU; a flow-run process killed outright (SIGKILL) gets its trainer a SIGTERM from the kernel
(``flows.cli.lifetime``: parent-death signal), on which it checkpoints and torchrun stops its ranks.
The trainer checkpoints atomically and resumes by itself, so a retried run continues.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.context import FlowRunContext
from prefect.exceptions import MissingContextError
from pydantic import BaseModel, ConfigDict, Field

from curation.config import BuildConfig
from dynet.train_config import FinetuneConfig, PretrainConfig
from flows.cli.lifetime import popen_kwargs
from storage.config_errors import validate_config
from storage.versions import VersionRef

#: Where a deployment run's parameters come from, for configuration errors.
PARAMETER = "flow parameter config"

_RUNNING: dict[str, subprocess.Popen] = {}  # config file -> trainer process (group leader)
STOP_GRACE_S = 120.0  # time the trainer gets to write its SIGTERM checkpoint


def _kill_group(process: subprocess.Popen, grace: float = STOP_GRACE_S) -> None:
    """SIGTERM the trainer (torchrun forwards it to its ranks, each checkpoints and exits),
    then SIGKILL whatever of its process group is left (loader workers, stuck ranks)."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    process.wait()


def _kill_all(*_args: Any) -> None:
    """Flow-run hook (cancellation, crash): stop every trainer this process started."""
    for process in list(_RUNNING.values()):
        _kill_group(process)
    _RUNNING.clear()


def training_command(config_file: str, stage: str, gpus: int) -> list[str]:
    if gpus > 0:
        return [
            sys.executable, "-m", "torch.distributed.run", "--standalone",
            f"--nproc_per_node={gpus}", "-m", "dynet.train", "--config", config_file,
            "--stage", stage,
        ]  # fmt: skip
    return [sys.executable, "-m", "dynet.train", "--config", config_file, "--stage", stage]


def _logger() -> logging.Logger | logging.LoggerAdapter:
    try:
        return get_run_logger()
    except MissingContextError:  # called outside a flow run (tests, `flow.fn()`)
        return logging.getLogger("flows.train")


def _in_run() -> bool:
    """Inside a flow run (artifacts need one), not a plain call such as ``flow.fn()``."""
    return FlowRunContext.get() is not None


def run_trainer(config: PretrainConfig | FinetuneConfig, gpus: int) -> dict[str, Any]:
    """Run the trainer in its own process group; returns its JSON summary (last stdout line)."""
    logger = _logger()
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        handle.write(config.model_dump_json())
        config_file = handle.name
    command = training_command(config_file, config.stage, gpus)
    logger.info("starting: %s", " ".join(command))
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
        **popen_kwargs(signal.SIGTERM),  # this thread waits for it: it outlives the trainer
    )  # fmt: skip
    _RUNNING[config_file] = process
    previous = None
    try:
        previous = signal.signal(signal.SIGTERM, lambda *_: (_kill_all(), sys.exit(143)))
    except ValueError:  # not the main thread: the flow-run hooks still cover cancellation
        pass
    last_line = ""
    try:
        assert process.stdout is not None
        for line in process.stdout:
            line = line.rstrip()
            if line:
                last_line = line
                logger.info(line)
        code = process.wait()
    except BaseException:
        _kill_group(process)
        raise
    finally:
        _RUNNING.pop(config_file, None)
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        os.unlink(config_file)
    if code != 0:
        raise RuntimeError(f"training exited with status {code}: {last_line}")
    try:
        return json.loads(last_line)
    except ValueError as exc:
        raise RuntimeError(f"training printed no summary (last line: {last_line!r})") from exc


def _summary_artifact(key: str, summary: dict[str, Any]) -> None:
    if not _in_run():
        return
    rows = [{"field": k, "value": json.dumps(v) if isinstance(v, dict | list) else v}
            for k, v in summary.items()]  # fmt: skip
    create_table_artifact(rows, key=key, description="training summary")


# Prefect's parameter validation is off for the flows taking a configuration model: they
# validate it themselves, so that a bad deployment parameter names every failing field with
# its value (storage.config_errors), as the CLI does.
@flow(
    name="pretrain-dynet",
    on_cancellation=[_kill_all],
    on_crashed=[_kill_all],
    validate_parameters=False,
)
def pretrain_dynet(config: PretrainConfig, gpus: int = 0) -> dict[str, Any]:
    """Dynamic pre-training on patch shards; returns the trainer's summary (weights path...)."""
    config = validate_config(PretrainConfig, config, PARAMETER)
    summary = run_trainer(config, gpus)
    _summary_artifact("pretrain-summary", summary)
    return summary


@flow(
    name="finetune-dynet",
    on_cancellation=[_kill_all],
    on_crashed=[_kill_all],
    validate_parameters=False,
)
def finetune_dynet(config: FinetuneConfig, gpus: int = 0) -> dict[str, Any]:
    """All-in-one fine-tuning (denoise 15/25/50, derain, dehaze)."""
    config = validate_config(FinetuneConfig, config, PARAMETER)
    summary = run_trainer(config, gpus)
    _summary_artifact("finetune-summary", summary)
    return summary


@flow(name="evaluate-dynet")
def evaluate_dynet(
    weights: str,
    data: str,
    variant: str = "all",
    tasks: list[str] | None = None,
    out_dir: str = "eval-output",
    arch: str | None = None,
    note: str | None = None,
) -> dict[str, Any]:
    """The paper's protocol; publishes the comparison table as a Markdown artifact."""
    from dynet.eval_reports import results_markdown
    from dynet.evaluate import run_evaluation

    results, paths = run_evaluation(
        weights, data, arch=arch, variant=variant, tasks=tasks, out_dir=out_dir, note=note
    )
    if _in_run():
        create_markdown_artifact(results_markdown(results), key="evaluation-results")
    _logger().info("results written: %s", ", ".join(paths.values()))
    return {"results": paths}


class PipelineConfig(BaseModel):
    """build -> patches -> pre-training -> fine-tuning -> evaluation, one form in the UI."""

    model_config = ConfigDict(extra="forbid")

    build: BuildConfig
    pretrain: PretrainConfig = Field(default_factory=PretrainConfig)
    finetune: FinetuneConfig = Field(default_factory=FinetuneConfig)
    eval_data: str | None = Field(None, description="root of the official test layout")
    eval_note: str | None = Field(
        None, description="a sentence printed above the results table (what the data is)"
    )
    gpus: int = Field(0, ge=0)


@dataclass(frozen=True)
class PipelineResult:
    """What `million-ird-pipeline` made: both published versions, the trainer's summaries
    (``weights`` and the rest of its JSON line) and the evaluation's files (if it ran)."""

    version: VersionRef
    patches: VersionRef
    pretrain: dict[str, Any]
    finetune: dict[str, Any]
    evaluation: dict[str, Any] | None = None


@flow(name="million-ird-pipeline", validate_parameters=False)
def million_ird_pipeline(config: PipelineConfig) -> PipelineResult:
    from flows.build_flow import build_million_ird
    from flows.patches_flow import extract_patches_flow

    config = validate_config(PipelineConfig, config, PARAMETER)
    build = config.build
    version = build_million_ird(build)
    patches = extract_patches_flow(
        version.root, version.name, version.version, config=build.patches
    )
    pretrain = config.pretrain.model_copy(deep=True)
    pretrain.data.shards = []
    pretrain.data.dataset_root, pretrain.data.dataset = patches.root, patches.name
    pretrain.data.version = patches.version
    pre = pretrain_dynet(pretrain, config.gpus)
    finetune = config.finetune.model_copy(deep=True)
    finetune.model.init = pre["weights"]
    fine = finetune_dynet(finetune, config.gpus)
    evaluation = None
    if config.eval_data:
        out = str(Path(fine["weights"]).parent / "evaluation")
        evaluation = evaluate_dynet(
            fine["weights"], config.eval_data, out_dir=out, note=config.eval_note
        )
    return PipelineResult(version, patches, pre, fine, evaluation)
