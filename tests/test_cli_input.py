"""Bad input at the door, through the CLI as a user runs it: sources without candidates, builds
that keep nothing, zero-sample versions and configuration errors publish nothing, exit with
the documented status and say so in one line (one per failing field), with no blank line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from curation.config import BuildConfig
from flows.cli.build import NOTHING_KEPT_HINT
from storage.config_errors import ConfigError, validate_config

REPO = Path(__file__).resolve().parents[1]


def mird(*args: str, home: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """`mird ARGS` in the folder ``home`` (relative defaults such as runs/ land there)."""
    home.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    return subprocess.run(
        [sys.executable, "-m", "flows.cli", *args],
        cwd=home, env=env, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


def lines(text: str) -> list[str]:
    """The output's lines; a blank one anywhere fails the test (no stray blank lines)."""
    found = text.splitlines()
    assert "" not in [line.strip() for line in found], f"blank line in {text!r}"
    return found


def assert_error(run: subprocess.CompletedProcess, status: int, first: str) -> list[str]:
    assert run.returncode == status, run.stdout[-2000:] + run.stderr[-2000:]
    assert "Traceback" not in run.stdout + run.stderr
    errors = lines(run.stderr)
    assert errors[0] == first
    return errors


# ------------------------------------------------------------------ configuration errors


def test_build_config_file_error_names_file_field_reason_and_value(tmp_path):
    config = tmp_path / "build.yaml"
    config.write_text(
        f"root: {tmp_path / 'out'}\ncuration:\n  sourcez: []\n  fetch: {{threads: 0}}\n"
    )
    run = mird("build", "--config", str(config), home=tmp_path / "prefect")
    errors = assert_error(
        run, 2, f"mird: error: {config}: curation.fetch.threads: "
        "Input should be greater than or equal to 1 (got 0)",
    )  # fmt: skip
    assert errors[1:] == [
        f"mird: error: {config}: curation.sourcez: Extra inputs are not permitted (got [])",
        "mird: error: no sources: give SOURCE arguments or `curation.sources` in --config",
    ]
    assert not (tmp_path / "out").exists()


def test_build_option_errors_name_the_command_line(tmp_path):
    config = tmp_path / "build.yaml"
    config.write_text("curation: {sources: [{uri: photos}]}\npatches: {size: 3}\n")
    # --root supplies what the file lacks; the file's own mistake still names the file
    run = mird("build", "--config", str(config), "--root", str(tmp_path), home=tmp_path / "p")
    assert_error(
        run, 2,
        f"mird: error: {config}: patches.size: Input should be greater than or equal to 16 (got 3)",
    )  # fmt: skip


def test_train_and_patches_errors_are_one_line_per_field(tmp_path):
    config = tmp_path / "pretrain.yaml"
    config.write_text("steps: 0\noptim: {lrr: 1}\n")
    run = mird("train", "pretrain", "--config", str(config), "batch_size=-3", home=tmp_path)
    errors = assert_error(
        run, 2, f"mird: error: {config}: steps: Input should be greater than or equal to 1 (got 0)"
    )
    assert errors[1:] == [
        "mird: error: command line: batch_size: Input should be greater than or equal to 1 "
        "(got -3)",
        f"mird: error: {config}: optim.lrr: Extra inputs are not permitted (got 1)",
    ]


def test_flow_parameters_get_the_same_lines():
    from flows.build_flow import build_million_ird
    from flows.patches_flow import extract_patches_flow
    from flows.train_flow import million_ird_pipeline, pretrain_dynet

    for flow in (build_million_ird, extract_patches_flow, million_ird_pipeline, pretrain_dynet):
        assert not flow.should_validate_parameters  # the flow validates: our lines, not Prefect's
    with pytest.raises(ConfigError) as caught:
        build_million_ird.fn({"root": "/r", "curation": {"sourcez": [], "partition_size": 0}})
    assert caught.value.lines == [
        "flow parameter config: curation.partition_size: Input should be greater than or "
        "equal to 1 (got 0)",
        "flow parameter config: curation.sourcez: Extra inputs are not permitted (got [])",
    ]
    with pytest.raises(ConfigError, match=r"^flow parameter config: steps: .* \(got 0\)$"):
        pretrain_dynet.fn({"steps": 0})


def test_validation_lines_cut_long_values_and_skip_missing():
    with pytest.raises(ConfigError) as caught:
        validate_config(BuildConfig, {"name": "x" * 200, "curation": {"fetch": 5}}, "here")
    assert caught.value.lines[0] == "here: root: Field required"
    assert caught.value.lines[1].startswith("here: curation.fetch: ")
    assert caught.value.lines[1].endswith("(got 5)")


# ------------------------------------------------------------------ empty sources and builds


def test_empty_folder_publishes_nothing(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    root = tmp_path / "out"
    run = mird("build", str(empty), "--root", str(root), "--name", "y", home=tmp_path / "p")
    errors = assert_error(
        run, 2, f"mird: error: no candidates in {empty}: nothing to build, nothing published"
    )
    assert len(errors) == 1 and run.stdout == ""
    assert not (root / "y" / "versions.json").exists()


@pytest.mark.slow
def test_all_rejected_publishes_nothing_and_empty_versions_are_refused(tmp_path):
    small = tmp_path / "small"
    small.mkdir()
    for n in range(3):
        Image.new("RGB", (64 + n, 48), (40 * n, 90, 160)).save(small / f"tiny{n}.jpg")
    root, home = tmp_path / "out", tmp_path / "prefect"
    build = ("build", str(small), "--root", str(root), "--name", "s")

    # 1. Every candidate rejected: nothing published, exit 1, the rejects summarised and kept.
    run = mird(*build, home=home)
    errors = assert_error(
        run, 1, "mird: error: nothing kept: all 3 candidates of s were rejected; nothing published"
    )
    assert errors[1] == "kept 0 of 3 candidates; top rejects: too_small 3"
    assert errors[2].startswith(f"rejects kept in {root / 's' / '_builds'}/")
    assert errors[-1] == NOTHING_KEPT_HINT and run.stdout == ""
    assert not (root / "s" / "versions.json").exists()
    assert list((root / "s" / "_builds").glob("*/partitions/*/rejects.parquet"))

    # 2. --allow-empty publishes the same build (its area is reused, nothing refetched).
    run = mird(*build, "--allow-empty", home=home)
    assert run.returncode == 0, run.stderr
    assert lines(run.stdout) == [f"{root}/s/v1", "kept 0 of 3 candidates; top rejects: too_small 3"]
    index = (root / "s" / "versions.json").read_bytes()

    # 3. A zero-sample version is no dataset: patches and training refuse it in one line.
    run = mird("patches", str(root / "s"), home=home)
    assert assert_error(run, 2, f"mird: error: {root}/s/v1: 0 samples, nothing to cut patches from")
    assert not (root / "s-patches").exists()
    run = mird("train", "pretrain", f"data.dataset_root={root}", "data.dataset=s", home=home)
    assert assert_error(run, 2, f"mird: error: {root}/s/v1: 0 samples, nothing to train on")
    assert not (home / "runs").exists()  # refused before any log or checkpoint is written

    # 4. The same build again: nothing new, nothing published.
    run = mird(*build, home=home)
    assert run.returncode == 0, run.stderr
    assert lines(run.stdout) == [
        "no new candidates: s stays at v1",
        "3 candidates already known, skipped",
    ]
    assert (root / "s" / "versions.json").read_bytes() == index


def test_verify_and_missing_dataset_print_no_blank_line(tmp_path):
    run = mird("patches", str(tmp_path / "nope"), home=tmp_path)
    assert_error(run, 2, f"mird: error: {tmp_path / 'nope'}: no such dataset")
    assert run.stdout == ""
