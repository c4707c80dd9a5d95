"""`mird explain` and `mird calibrate`, end to end through the CLI on real photographs.

scikit-image's photographs at native size (hence ``curation.probe.min_side: 256``), a
gradient graphic and a blurred photograph. Each command that scores IQA costs seconds of CPU
(torch import, metric set-up, ~1 s per image), so those runs are few; the percentile and
sampling arithmetic is checked in-process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image, ImageFilter

from curation.calibrate import (
    check_percentiles,
    outward,
    rejected_share,
    sample_candidates,
    worst_acceptable,
)
from curation.config import BuildConfig, SourceConfig
from storage.config_errors import validate_config
from tests.http_fixtures import body, http_server_fixture  # noqa: F401 - the fixture

MIRD = Path(sys.executable).parent / "mird"
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """images/: four JPEG photographs, a blurred one and a gradient; build.yaml beside."""
    from skimage import data

    root = tmp_path_factory.mktemp("explain")
    images = root / "images"
    images.mkdir()
    for name in PHOTOS:
        Image.fromarray(getattr(data, name)()).convert("RGB").save(
            images / f"{name}.jpg", quality=92
        )
    sharp = Image.open(images / "astronaut.jpg")
    sharp.filter(ImageFilter.GaussianBlur(4)).save(images / "blurred.jpg", quality=92)
    ramp = np.linspace(0, 255, 512)
    gradient = np.stack(
        [np.tile(ramp, (384, 1)), np.tile(ramp[:384, None], (1, 512)), np.full((384, 512), 128)],
        axis=-1,
    ).astype(np.uint8)
    Image.fromarray(gradient).save(images / "gradient.png")
    (root / "build.yaml").write_text("curation:\n  probe:\n    min_side: 256\n")
    return root


def mird(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "MIRD_DEBUG"}
    env.update(HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")  # a small shared CPU
    return subprocess.run(
        [str(MIRD), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )


# -------------------------------------------------------------------------------- mird explain


def test_explain_keeps_a_sharp_photograph(folder):
    proc = mird("explain", "images/astronaut.jpg", "--config", "build.yaml", cwd=folder)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "kept"
    assert lines[1].startswith("header: JPEG 512x512 RGB")
    gates = [line.split()[1] for line in lines if line.startswith("  PASS ")]
    assert not [line for line in lines if line.startswith("  FAIL ")]
    assert gates[:2] == ["probe", "decode"]
    for gate in ("shadows", "document", "colours", "highlights", "grayscale", "flat", "sharpness"):
        assert gate in gates
    assert {"iqa:niqe", "iqa:brisque", "iqa:piqe"} <= set(gates)
    sharpness = next(line for line in lines if line.startswith("  PASS sharpness"))
    assert "focus_sharpness=" in sharpness and ">= 0.6" in sharpness  # evidence and threshold
    names = {line.split(" = ")[0].strip() for line in lines if " = " in line}
    assert {"focus_sharpness", "noise_floor", "luma_p99", "niqe", "brisque", "piqe"} <= names


def test_explain_rejects_a_blurred_photograph(folder):
    proc = mird("explain", "images/blurred.jpg", "--config", "build.yaml", cwd=folder)
    assert proc.returncode == 1, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("rejected: blurry (filter) - nothing in focus: focus_sharpness=")
    assert any(line.startswith("  FAIL sharpness") and "< 0.6" in line for line in lines)
    assert "niqe = " in proc.stdout  # every score, even after a reject


def test_explain_a_url_through_the_fetcher(folder, http_server):
    url = http_server.route("/photo.jpg", body((folder / "images" / "coffee.jpg").read_bytes()))
    # The SSRF guard refuses loopback unless allowed: an input error, said in one line.
    blocked = mird("explain", url, "--config", "build.yaml", cwd=folder)
    assert blocked.returncode == 2
    assert blocked.stderr.splitlines() == [blocked.stderr.strip()]
    assert (
        blocked.stderr.startswith("mird: error: cannot fetch") and "--allow-host" in blocked.stderr
    )

    args = ("explain", url, "--config", "build.yaml", "--allow-host", "127.0.0.1", "--json")
    proc = mird(*args, cwd=folder)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["decision"] == "kept" and report["reason"] is None
    assert report["header"]["format"] == "JPEG" and report["header"]["width"] == 600
    assert [g["gate"] for g in report["gates"]][:3] == ["probe", "decode", "shadows"]
    assert all(g["passed"] for g in report["gates"])
    assert {"focus_sharpness", "noise_floor"} <= set(report["measurements"])
    assert set(report["scores"]) == {"niqe", "brisque", "piqe"}


@pytest.mark.parametrize(
    ("target", "says"),
    [
        ("images/missing.jpg", "no such file"),
        ("images", "is a folder"),
        ("build.yaml", "not_an_image"),
    ],
)
def test_explain_input_errors_are_one_line(folder, target, says):
    proc = mird("explain", target, cwd=folder)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mird: error:"), proc.stderr
    assert says in lines[0] and "Traceback" not in proc.stderr
    assert proc.stdout == ""


def test_explain_unreadable_config_is_one_line(folder):
    (folder / "bad.yaml").write_text("curation: {probe: {min_sid: 3}}\n")
    proc = mird("explain", "images/rocket.jpg", "--config", "bad.yaml", cwd=folder)
    assert proc.returncode == 2
    assert proc.stderr.startswith("mird: error: bad.yaml: curation.probe.min_sid")


# ------------------------------------------------------------------------------ mird calibrate


def test_calibrate_writes_a_fragment_mird_build_accepts(folder):
    args = ("calibrate", "images", "--config", "build.yaml", "--sample", "5")
    proc = mird(*args, "--out", "quality.yaml", "--seed", "0", cwd=folder)
    assert proc.returncode == 0, proc.stderr
    table = proc.stdout.splitlines()
    assert table[0].split()[:6] == ["metric", "better", "n", "median", "p95", "p99"]
    rows = {line.split()[0]: line.split() for line in table[1:4]}
    assert set(rows) == {"niqe", "brisque", "piqe"}
    assert any(line.startswith("failed before scoring: ") for line in table)
    assert "wrote quality.yaml" in proc.stdout

    text = (folder / "quality.yaml").read_text()
    fragment = yaml.safe_load(text)
    quality = fragment["quality"]
    assert quality["metrics"] == ["niqe", "brisque", "piqe"]
    assert set(quality["thresholds"]) == {"niqe", "brisque", "piqe"}
    assert all(type(value) is float for value in quality["thresholds"].values())
    assert "# niqe (lower is better): n=" in text and "would reject" in text

    # What `mird build --config quality.yaml images --root ROOT` validates.
    config = validate_config(
        BuildConfig,
        {**fragment, "root": str(folder / "ds"), "curation": {"sources": [{"uri": "images"}]}},
        "quality.yaml",
    )
    assert config.quality.thresholds == quality["thresholds"]

    # The sample is deterministic: redo it here and check the percentile on its scores.
    sample, listed = sample_candidates([SourceConfig(uri=str(folder / "images"))], 5, seed=0)
    assert listed == 6 and len(sample) == 5
    names = sorted(Path(c.url).name for c in sample)
    scored = [n for n in names if n.removesuffix(".jpg") in PHOTOS]
    n_column = int(rows["niqe"][2])
    assert n_column == len(scored)
    failed = len(names) - len(scored)
    assert f"failed before scoring: {failed} of 5" in proc.stdout
    # Scores of the passing images, from the fragment's own comments (min, median, max).
    for metric, limit in quality["thresholds"].items():
        line = next(x for x in text.splitlines() if x.startswith(f"    # {metric} ("))
        low = float(line.split(" min ")[1].split(",")[0])
        high = float(line.split(" max ")[1])
        assert low <= limit
        # p99 of a handful of values sits just under the largest, by linear interpolation.
        assert limit >= high - 0.05 * (high - low) - 1e-3, (metric, limit, high)


def test_calibrate_without_sources_is_a_usage_error(folder):
    proc = mird("calibrate", "--sample", "3", cwd=folder)
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "mird: error: no sources: give SOURCE arguments or `curation.sources` in --config"
    )


# --------------------------------------------------------------------- arithmetic, in-process


def test_percentile_takes_the_worst_acceptable_side():
    values = list(range(1, 101))  # 1..100
    lower = worst_acceptable(values, 99, lower_better=True)
    higher = worst_acceptable(values, 99, lower_better=False)
    assert lower == pytest.approx(99.01) and higher == pytest.approx(1.99)
    assert rejected_share(values, lower, True) == pytest.approx(0.01)
    assert rejected_share(values, higher, False) == pytest.approx(0.01)
    assert worst_acceptable(values, 100, True) == 100
    assert outward(99.01001, True) == 99.0101 and outward(1.98999, False) == 1.9899
    assert check_percentiles([99, 95], 90) == [90.0, 95.0, 99.0]
    with pytest.raises(ValueError, match="outside"):
        check_percentiles([0], 99)


def test_sample_is_seeded_and_order_free(tmp_path):
    for i in range(30):
        (tmp_path / f"{i:02d}.jpg").write_bytes(b"x")
    urls = tmp_path / "urls.txt"
    lines = [f"https://example.com/{i}.jpg" for i in range(30)]
    urls.write_text("\n".join(lines + lines[:5]) + "\n")  # five listed twice
    shuffled = tmp_path / "shuffled.txt"
    shuffled.write_text("\n".join(reversed(lines)) + "\n")

    def ids(uri: str, seed: int, size: int = 10) -> set[str]:
        sample, _ = sample_candidates([SourceConfig(uri=uri)], size, seed)
        return {c.id for c in sample}

    first = ids(str(urls), 0)
    assert len(first) == 10 and first == ids(str(urls), 0)
    assert first == ids(str(shuffled), 0)  # the order of the list does not matter
    assert first != ids(str(urls), 1)
    assert len(ids(str(urls), 0, size=100)) == 30  # duplicates counted once
    folder_sample, listed = sample_candidates([SourceConfig(uri=str(tmp_path))], 4, 0)
    assert listed == 30 and len(folder_sample) == 4 and all(c.is_file for c in folder_sample)
    assert [c.url for c in folder_sample] == sorted(c.url for c in folder_sample)
