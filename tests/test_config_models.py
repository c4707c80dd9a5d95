"""Configuration models: documented fields, limits that hold in subclasses, provenance columns
that reach the published shards, and the summary `mird build` prints."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from PIL import Image
from pydantic import BaseModel, ValidationError

from curation.build import run_build
from curation.config import BuildConfig, SourceConfig
from curation.sources import SourceError, iter_candidates
from dynet.train_config import ConfigError, FinetuneConfig, PretrainConfig, load_config
from flows.cli.build import NOTHING_KEPT_HINT, funnel_summary
from flows.cli.config_reference import SECTIONS, docstring_summary, load_model, walk
from flows.demo.source import demo_candidates
from tests.http_fixtures import (
    FaultServer,
    body,
    http_server_fixture,  # noqa: F401 (registers the http_server fixture)
)

# ----------------------------------------------------------------------------- documentation

OWNED_SECTIONS = ("build", "pretrain", "finetune")  # the pipeline model lives elsewhere


@pytest.mark.parametrize("key", OWNED_SECTIONS)
def test_every_field_and_model_is_documented(key):
    section = next(s for s in SECTIONS if s.key == key)
    groups = walk(load_model(section.target))
    blank = [row.path for g in groups for row in g.rows if not row.description.strip()]
    assert blank == [], f"fields without a description: {blank}"
    undocumented = sorted(
        {g.model.__name__ for g in groups if g.path and not docstring_summary(g.model)}
    )
    assert undocumented == [], f"models without a docstring: {undocumented}"


# ----------------------------------------------------------------------------- limits


@pytest.mark.parametrize("model", [PretrainConfig, FinetuneConfig])
@pytest.mark.parametrize("field", ["steps", "batch_size"])
def test_zero_steps_or_batch_is_refused(model: type[BaseModel], field: str):
    with pytest.raises(ValidationError, match=rf"{field}\n.*greater than or equal to 1"):
        model(**{field: 0})
    # the subclass keeps the base class's description, not a blank
    assert model.model_fields[field].description


@pytest.mark.parametrize("stage", ["pretrain", "finetune"])
@pytest.mark.parametrize("override", ["steps=0", "batch_size=0", "batch_size=-3"])
def test_load_config_refuses_zero_with_a_clear_message(stage: str, override: str):
    field, value = override.split("=")
    with pytest.raises(
        ConfigError,
        match=rf"^command line: {field}: .*greater than or equal to 1 \(got {value}\)$",
    ):
        load_config(None, [override], stage)


def test_load_config_file_names_the_file(tmp_path):
    path = tmp_path / "pretrain.yaml"
    path.write_text("stage: pretrain\nsteps: 0\n")
    with pytest.raises(ConfigError, match=rf"^{path}: steps: .*greater than or equal to 1"):
        load_config(path)


def test_defaults_and_none_still_valid():
    assert PretrainConfig().steps == 1_000_000 and PretrainConfig().batch_size == 32
    finetune = load_config(None, ["steps=null"], "finetune")
    assert finetune.steps is None  # None: the epochs decide
    assert load_config(None, ["steps=5", "batch_size=2"], "pretrain").steps == 5


# ----------------------------------------------------------------------------- keep_columns


def _members(shard: Path) -> dict[str, dict]:
    with tarfile.open(shard) as tar:
        return {
            m.name.removesuffix(".json"): json.loads(tar.extractfile(m).read())
            for m in tar
            if m.name.endswith(".json")
        }


def test_keep_columns_reach_the_published_shard_json(tmp_path, http_server: FaultServer):
    files = demo_candidates()
    chosen = {"chelsea.jpg": "Ada", "coffee.jpg": "Bo", "thumbnail.jpg": "Cy"}
    url_list = tmp_path / "urls.csv"
    with url_list.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["url", "caption", "photographer", "taken"])
        for name, who in chosen.items():
            url = http_server.route(f"/{name}", body(files[name][0]))
            writer.writerow([url, f"a photo by {who}", who, f"2020-{len(who):02d}"])
    config = BuildConfig.model_validate(
        {
            "root": str(tmp_path / "out"),
            "name": "ird",
            "curation": {
                "sources": [{"uri": str(url_list), "keep_columns": ["photographer", "taken"]}],
                "probe": {"min_side": 256},
                "fetch": {"allow_hosts": ["127.0.0.1"], "retries": 0},
            },
            "quality": {"max_side": 512, "metrics": ["piqe"], "thresholds": {"piqe": 100.0}},
        }
    )
    version = run_build(config)
    kept = {r["url"].rsplit("/", 1)[-1]: r["key"] for r in version.manifest().to_pylist()}
    assert sorted(kept) == ["chelsea.jpg", "coffee.jpg"]  # the thumbnail is too small
    metas: dict[str, dict] = {}
    for uri in version.shard_uris():
        metas.update(_members(Path(uri.removeprefix("file://"))))
    for name, key in kept.items():
        who = chosen[name]
        assert metas[key]["extra"] == {"photographer": who, "taken": f"2020-{len(who):02d}"}
        assert metas[key]["caption"] == f"a photo by {who}"


def test_keep_columns_on_a_plain_list_or_folder_is_an_error(tmp_path):
    (tmp_path / "urls.txt").write_text("http://127.0.0.1/a.jpg\n")
    for uri in (tmp_path / "urls.txt", tmp_path):
        source = SourceConfig(uri=str(uri), keep_columns=["photographer"])
        with pytest.raises(SourceError, match="keep_columns needs a csv/tsv/jsonl/parquet"):
            list(iter_candidates(source))


def test_missing_keep_column_is_an_error(tmp_path):
    path = tmp_path / "urls.csv"
    path.write_text("url,caption\nhttp://127.0.0.1/a.jpg,x\n")
    source = SourceConfig(uri=str(path), keep_columns=["photographer"])
    with pytest.raises(SourceError, match=f"{path}: keep_columns not found: photographer"):
        list(iter_candidates(source))


# ----------------------------------------------------------------------------- mird build


def test_funnel_summary_orders_reasons_across_stages():
    funnel = {
        "candidates": 1200,
        "kept": 7,
        "by_stage": {
            "probe": {"too_small": 900, "bad_aspect": 3},
            "filter": {"blurry": 200, "graphic": 3},
            "fetch": {"http_404": 87},
        },
    }
    assert funnel_summary(funnel) == (
        "kept 7 of 1,200 candidates; top rejects: too_small 900, blurry 200, http_404 87"
    )
    assert funnel_summary({"candidates": 2, "kept": 2, "by_stage": {}}) == (
        "kept 2 of 2 candidates"
    )
    # an incremental build counts only its new candidates, and says how many it skipped
    assert funnel_summary({"candidates": 2, "kept": 1, "by_stage": {}}, known=18) == (
        "kept 1 of 2 new candidates (18 already known, skipped)"
    )


def test_cli_build_where_everything_is_too_small(tmp_path):
    # A subprocess, as a user runs it: Prefect's temporary server stays out of pytest's process.
    folder = tmp_path / "small"
    folder.mkdir()
    for n in range(3):
        Image.new("RGB", (64 + n, 48), (40 * n, 90, 160)).save(folder / f"tiny{n}.jpg")
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect")}
    run = subprocess.run(
        [sys.executable, "-m", "flows.cli", "build", str(folder), "--root", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip
    # Nothing kept: nothing published, exit 1, the funnel and the hint on stderr.
    assert run.returncode == 1, run.stderr
    assert run.stdout == ""
    lines = run.stderr.strip().splitlines()
    assert lines[1] == "kept 0 of 3 candidates; top rejects: too_small 3"
    assert lines[-1] == NOTHING_KEPT_HINT
    assert not (tmp_path / "out" / "million-ird" / "versions.json").exists()
