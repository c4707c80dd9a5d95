"""`mird demo` end to end, small: a real crawl over HTTP, the pipeline flow, a browser."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from flows.train_flow import PipelineConfig
from storage.verify import verify_version
from storage.versions import Dataset
from tests.browser import PAGE_CHECKS, Page, chromium

REPO = Path(__file__).resolve().parents[1]


def _mird(*args: str, home: Path) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "OMP_NUM_THREADS": "1",
    }
    command = [sys.executable, "-m", "flows.cli", *args]
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=1200)


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    tmp = tmp_path_factory.mktemp("demo")
    out = tmp / "demo-output"
    args = ["demo", "--out", str(out), "--candidates", "40"]
    run = _mird(*args, "--pretrain-steps", "1", "--finetune-steps", "1", home=tmp / "prefect")
    return out, run


@pytest.mark.integration
def test_demo_runs_the_whole_pipeline_and_says_where_everything_is(demo_run):
    out, run = demo_run
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    text = run.stdout
    for flow in ("build-million-ird", "extract-patches", "pretrain-dynet", "finetune-dynet",
                 "evaluate-dynet"):  # fmt: skip
        assert f"- {flow}" in text
    dataset = Dataset(str(out / "datasets"), "million-ird-demo")
    version = dataset.version()
    assert f"Dataset   {version.uri}" in text
    assert verify_version(version).ok
    assert text.count(": OK") == 2 and "FAILED" not in text and "unexpected" not in text
    # Every candidate got its planned outcome (the command exits 1 otherwise); some were kept.
    assert 0 < version.manifest().num_rows < 40
    weights = out / "runs" / "finetune" / "weights.safetensors"
    assert f"Weights   {weights}" in text and weights.is_file()
    results = out / "runs" / "finetune" / "evaluation" / "results.md"
    assert results.is_file() and "far from the paper's" in results.read_text()
    assert "| **DyNet-L (this run)** |" in text and "| **DyNet-S (this run)** |" in text
    assert "| Degraded input (no restoration) |" in text  # the bar beside the model rows
    # The at-scale parameters are what the deployments take.
    params = json.loads((out / "at-scale" / "pipeline-params.json").read_text())
    scaled = PipelineConfig.model_validate(params["config"])
    assert scaled.gpus == 8 and scaled.build.curation.fetch.allow_hosts == []
    assert "prefect deployment run 'million-ird-pipeline/default'" in text


@pytest.mark.integration
@pytest.mark.skipif(chromium() is None, reason="chromium not installed (apt-get install chromium)")
def test_demo_dashboard_opens_without_console_errors(demo_run, tmp_path):
    out, run = demo_run
    assert run.returncode == 0
    dashboard = out / "datasets" / "million-ird-demo" / "dashboard" / "index.html"
    assert f"Dashboard {dashboard}" in run.stdout
    with Page(dashboard, tmp_path / "profile") as page:
        checks = page.evaluate(PAGE_CHECKS)
        errors = page.errors()
    assert errors == []
    assert checks["ready"] == "1" and checks["images"] > 5 and checks["broken"] == 0


@pytest.mark.integration
def test_demo_never_clears_a_folder_it_did_not_write(tmp_path):
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.tex").write_text("years of work")
    run = _mird("demo", "--out", str(precious), home=tmp_path / "prefect")
    assert run.returncode == 2
    assert run.stderr.strip().startswith("mird: error:") and "not a demo output" in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1
    assert (precious / "thesis.tex").read_text() == "years of work"


def test_at_scale_parameters_validate_and_leave_the_demo_config_alone(tmp_path):
    from flows.demo.flow import DemoSettings, at_scale, deployment_params, pipeline_config

    demo = pipeline_config(DemoSettings(out=tmp_path), tmp_path / "u.txt", tmp_path, tmp_path / "d")
    before = demo.model_dump(mode="json")
    params = deployment_params(at_scale(demo))
    assert demo.model_dump(mode="json") == before  # a shallow copy once pointed the demo at S3
    scaled = PipelineConfig.model_validate(params["config"])
    assert scaled.build.curation.sources[0].url_column == "URL"
    assert scaled.pretrain.steps == 1_000_000 and scaled.gpus == 8  # the paper's 1 M
    assert demo.build.curation.fetch.allow_hosts == ["127.0.0.1"]
