"""``KEY=VALUE`` overrides, one idiom for every command that reads a configuration: parsed by
``storage.config_overrides``, validated by the model (one line per bad field), and through the
CLI as a user runs it: ``mird build SOURCE KEY=VALUE`` publishes with the setting."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from flows.cli.build import load_build_config
from storage.config_errors import ConfigError
from storage.config_overrides import (
    apply_overrides,
    is_override,
    override_origin,
    split_overrides,
)
from tests.test_cli_input import assert_error, lines, mird

# ------------------------------------------------------------------------------- the parser


def test_overrides_set_dotted_fields_with_yaml_values():
    data = {"curation": {"fetch": {"threads": 4}}}
    keys = apply_overrides(
        data,
        ["curation.probe.min_side=512", "quality.thresholds={piqe: 40.5}", "name=x", "a.b=[1, 2]"],
    )
    assert keys == ["curation.probe.min_side", "quality.thresholds", "name", "a.b"]
    assert data == {
        "curation": {"fetch": {"threads": 4}, "probe": {"min_side": 512}},
        "quality": {"thresholds": {"piqe": 40.5}},
        "name": "x",
        "a": {"b": [1, 2]},
    }
    origin = override_origin(keys, "build.yaml")
    assert origin("curation.probe.min_side") == "command line"
    assert origin("quality.thresholds.piqe") == "command line"  # under a section it set
    assert origin("curation.fetch.threads") == "build.yaml"


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("curation.probe.min_side", "is not KEY=VALUE (e.g. curation.probe.min_side=512)"),
        ("=512", "is not KEY=VALUE"),
        ("curation..probe=1", "'curation..probe' is not a dotted field name"),
        ("curation.fetch.threads.x=1", "threads is not a section"),
    ],
)
def test_overrides_that_cannot_reach_the_model_are_one_line(item, message):
    with pytest.raises(ConfigError) as caught:
        apply_overrides({"curation": {"fetch": {"threads": 4}}}, [item])
    assert len(caught.value.lines) == 1 and message in caught.value.lines[0]


def test_positional_arguments_end_at_the_first_override():
    assert split_overrides(["a.txt", "photos/", "x.y=1", "z=2"]) == (
        ["a.txt", "photos/"],
        ["x.y=1", "z=2"],
    )
    assert split_overrides(["./a=b.txt", "s3://b/k?x=1"]) == (["./a=b.txt", "s3://b/k?x=1"], [])
    assert not is_override("./a=b.txt") and is_override("curation.probe.min_side=512")
    with pytest.raises(ConfigError, match=r"^override 'photos/' is not KEY=VALUE"):
        split_overrides(["x.y=1", "photos/"])  # no source after the overrides


def test_build_config_file_then_options_then_overrides(tmp_path):
    config = tmp_path / "build.yaml"
    config.write_text("root: /r\ncuration: {sources: [{uri: photos}], probe: {min_side: 256}}\n")
    built = load_build_config(
        config, {"name": "n"}, [], [], settings=["curation.probe.min_side=512", "name=m"]
    )
    assert built.curation.probe.min_side == 512 and built.name == "m"
    with pytest.raises(ConfigError) as caught:
        load_build_config(config, {}, [], [], settings=["patches.size=3", "quality.max_side=8"])
    assert caught.value.lines == [
        "command line: quality.max_side: Input should be greater than or equal to 128 (got 8)",
        "command line: patches.size: Input should be greater than or equal to 16 (got 3)",
    ]


# --------------------------------------------------------------------------------- the CLI


def test_bad_overrides_are_one_line_and_exit_2(tmp_path):
    """Each is refused before any Prefect server starts or anything is written."""
    config = tmp_path / "build.yaml"
    config.write_text(f"root: {tmp_path / 'out'}\ncuration: {{sources: [{{uri: photos}}]}}\n")
    bad_key = mird("build", "--config", str(config), "curation.probe.min_sidez=512", home=tmp_path)
    errors = assert_error(
        bad_key,
        2,
        "mird: error: command line: curation.probe.min_sidez: Extra inputs are not permitted "
        "(got 512)",
    )
    assert len(errors) == 1
    bad_value = mird(
        "build", "photos", "--root", "out", "curation.probe.min_side=big", home=tmp_path
    )
    errors = assert_error(
        bad_value,
        2,
        "mird: error: command line: curation.probe.min_side: Input should be a valid integer, "
        'unable to parse string as an integer (got "big")',
    )
    assert len(errors) == 1
    no_equals = mird("build", "photos", "curation.probe.min_side=512", "more", home=tmp_path)
    errors = assert_error(
        no_equals,
        2,
        "mird: error: override 'more' is not KEY=VALUE (e.g. curation.probe.min_side=512)",
    )
    assert len(errors) == 1
    train = mird("train", "pretrain", "optim.lr", home=tmp_path)
    assert len(assert_error(train, 2, "mird: error: override 'optim.lr' is not KEY=VALUE "
                                      "(e.g. optim.lr=2e-4)")) == 1  # fmt: skip
    image = tmp_path / "a.png"
    Image.new("RGB", (64, 48)).save(image)
    explain = mird("explain", str(image), "quality.max_side=8", home=tmp_path)
    assert len(assert_error(explain, 2, "mird: error: command line: quality.max_side: Input "
                            "should be greater than or equal to 128 (got 8)")) == 1  # fmt: skip
    assert not (tmp_path / "out").exists()


def test_patches_overrides_reach_the_patch_config(tmp_path):
    from storage.versions import Dataset
    from tests.storage_helpers import make_samples, publish

    root = tmp_path / "root"
    publish(Dataset(str(root), "photos"), make_samples(2, size=(96, 64)))
    run = mird("patches", str(root / "photos"), "quality=0", home=tmp_path)
    errors = assert_error(
        run, 2, "mird: error: command line: quality: Input should be greater than or equal to 1 "
        "(got 0)",
    )  # fmt: skip
    assert len(errors) == 1
    run = mird(
        "patches", str(root / "photos"), "--size", "64", "size=32", "stride=32", home=tmp_path
    )
    assert run.returncode == 0, run.stderr
    patch_config = Dataset(str(root), "photos-patches").version().stats()["patch_config"]
    assert patch_config["size"] == 32 and patch_config["stride"] == 32  # over --size


@pytest.mark.slow
def test_mird_build_source_with_an_override_publishes_with_it(tmp_path):
    """A 512 px photograph is too small for the default 1024 px minimum side; with
    ``curation.probe.min_side=512`` after the source it is kept, and the published version's
    stats record the setting."""
    from skimage import data

    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(data.astronaut()).save(photos / "astronaut.jpg", quality=92)  # 512x512
    Image.fromarray(data.coffee()).save(photos / "coffee.jpg", quality=92)  # 400x600
    root = tmp_path / "out"
    run = mird(
        "build", str(photos), "--root", str(root), "--name", "o",
        "curation.probe.min_side=512", "quality.max_side=512",
        home=tmp_path / "prefect", timeout=600,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    out = lines(run.stdout)
    assert out[0] == f"{root}/o/v1"
    assert out[1].startswith("kept 1 of 2 candidates; top rejects: too_small 1")
    stats = json.loads((root / "o" / "v1" / "stats.json").read_text())
    assert stats["config"]["curation"]["probe"]["min_side"] == 512
    assert stats["config"]["quality"]["max_side"] == 512
    assert Path(root / "o" / "versions.json").is_file()
