"""A whole build, Prefect-free (the core the flow calls): every candidate gets its outcome."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import duckdb
import pytest

from curation.build import (
    NoCandidatesError,
    NothingKeptError,
    plan_build,
    process_partition,
    run_build,
)
from curation.config import BuildConfig
from flows.demo.source import write_demo_source
from storage.verify import verify_version
from tests.http_fixtures import (
    FaultServer,
    body,
    http_server_fixture,  # noqa: F401 (registers the http_server fixture)
)


def _config(root: Path, sources: list[dict], **extra) -> BuildConfig:
    return BuildConfig.model_validate(
        {
            "root": str(root),
            "name": "ird",
            "curation": {
                "sources": sources,
                "probe": {"min_side": 256},
                "partition_size": 4,
                "fetch": {"allow_hosts": ["127.0.0.1"], "retries": 0},
            },
            "quality": {"max_side": 512},
            **extra,
        }
    )


def _outcomes(version) -> Counter:
    found = Counter(row["reason"] for row in version.rejects().to_pylist())
    found["keep"] = version.manifest().num_rows
    return found


@pytest.fixture(scope="module")
def demo_folder(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    folder = tmp_path_factory.mktemp("source")
    return folder, write_demo_source(folder)


def test_build_from_http_url_list(tmp_path, demo_folder, http_server: FaultServer):
    folder, expected = demo_folder
    urls = [http_server.route(f"/{n}", body((folder / n).read_bytes())) for n in sorted(expected)]
    url_list = tmp_path / "urls.txt"
    url_list.write_text("".join(f"{url}\n" for url in urls))
    version = run_build(_config(tmp_path / "out", [{"uri": str(url_list)}]))
    assert _outcomes(version) == Counter(expected.values())
    by_url = {r["url"].rsplit("/", 1)[-1]: r for r in version.rejects().to_pylist()}
    assert by_url["coffee_blurred.jpg"]["reason"] == "blurry"
    assert by_url["astronaut_copy.jpg"]["detail"] in version.manifest().column("key").to_pylist()
    assert verify_version(version).ok
    stats = version.stats()
    assert stats["funnel"]["candidates"] == len(expected)
    assert stats["quality_thresholds"]["niqe"] == {"max": 10.0}
    manifest = f"{version.uri}/manifest/*.parquet"
    kept = Counter(expected.values())["keep"]
    sql = f"SELECT count(*) FROM '{manifest}' WHERE iqa_niqe < 10"
    assert duckdb.sql(sql).fetchall()[0][0] == kept
    assert not (tmp_path / "out" / "ird" / "_builds").exists()  # staging removed


def test_rerun_skips_done_partitions_and_incremental_adds_only_new(tmp_path, demo_folder):
    folder, expected = demo_folder
    config = _config(tmp_path / "out", [{"uri": str(folder)}])
    plan = plan_build(config)
    first = process_partition(plan.partitions[0], config, plan.area)
    assert not first["skipped"]
    again = process_partition(plan.partitions[0], config, plan.area)
    assert again["skipped"]  # the done marker makes a rerun skip the partition
    v1 = run_build(config)  # resumes: partition 0 is not redone
    assert _outcomes(v1) == Counter(expected.values())

    # A new photograph and a near copy of a published one arrive: v2 adds just the new one.
    from PIL import Image

    new = folder.parent / "more"
    new.mkdir()
    Image.open(folder / "chelsea.jpg").transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(
        new / "chelsea_flipped.jpg", quality=92
    )
    Image.open(folder / "coffee.jpg").resize((560, 373)).save(new / "coffee_small.jpg", quality=70)
    config2 = _config(tmp_path / "out", [{"uri": str(folder)}, {"uri": str(new)}])
    v2 = run_build(config2)
    assert v2.version == "v2"
    kept = Counter(expected.values())["keep"]
    assert v2.stats()["new_samples"] == 1 and v2.stats()["reused_samples"] == kept
    assert v2.stats()["skipped_known_candidates"] == len(expected)  # nothing refetched
    assert [r["reason"] for r in v2.rejects().to_pylist()] == ["near_duplicate_of"]
    assert set(v1.shard_uris()) < set(v2.shard_uris())
    assert verify_version(v2).ok

    # The same build again: every candidate is known, nothing is published.
    index = (tmp_path / "out" / "ird" / "versions.json").read_bytes()
    plan = plan_build(config2)
    assert plan.nothing_new and plan.skipped_known == len(expected) + 2
    assert plan.nothing_new_message() == "no new candidates: ird stays at v2"
    assert run_build(config2).version == "v2"
    assert (tmp_path / "out" / "ird" / "versions.json").read_bytes() == index


def test_no_candidates_or_nothing_kept_publishes_nothing(tmp_path, demo_folder):
    folder, expected = demo_folder
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(NoCandidatesError, match=f"^no candidates in {empty}: nothing to build"):
        run_build(_config(tmp_path / "out", [{"uri": str(empty)}]))
    too_small = _config(tmp_path / "out", [{"uri": str(folder / "thumbnail.jpg")}])
    with pytest.raises(NothingKeptError, match="^nothing kept: all 1 candidates of ird") as err:
        run_build(too_small)
    assert err.value.funnel["by_stage"] == {"probe": {"too_small": 1}}
    assert not (tmp_path / "out" / "ird" / "versions.json").exists()
    assert list((tmp_path / "out" / "ird" / "_builds").glob("*/partitions/*/rejects.parquet"))
    allowed = too_small.model_copy(update={"publish": too_small.publish.model_copy(
        update={"allow_empty": True})})  # fmt: skip
    assert plan_build(allowed).area.build_id == plan_build(too_small).area.build_id
    assert run_build(allowed).entry["samples"] == 0


def test_build_config_errors_are_clear(tmp_path):
    with pytest.raises(ValueError, match="extra"):
        BuildConfig.model_validate({"root": str(tmp_path), "curation": {"sourcez": []}})


@pytest.mark.slow
def test_cli_build_bad_source_is_one_line(tmp_path):
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect")}
    run = subprocess.run(
        [sys.executable, "-m", "flows.cli", "build", str(tmp_path / "missing.txt"),
         "--root", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=600, env=env,
    )  # fmt: skip
    assert run.returncode == 2
    assert "Traceback" not in run.stderr + run.stdout
    assert run.stderr.strip().splitlines() == [
        f"mird: error: source {tmp_path / 'missing.txt'}: no such file"
    ]
