"""Quality scoring: offline NIQE/BRISQUE/PIQE, the proxy, rejects, missing weights, the CLI."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import skimage.data
import torch
from PIL import Image, ImageFilter
from typer.testing import CliRunner

from curation import iqa_convert
from curation.quality import (
    PACKAGED_PARAMETERS,
    QualityConfig,
    QualityScorer,
    UnknownMetricError,
    open_reduced,
    packaged_parameter_path,
    proxy_crops,
    proxy_image,
    quality_rejects,
)

REPO = Path(__file__).resolve().parents[1]
IQA_REFERENCE = REPO.parent / "shared" / "reference" / "iqa"
CALIBRATION = IQA_REFERENCE / "calibration"

needs_reference = pytest.mark.skipif(
    not IQA_REFERENCE.is_dir(), reason=f"{IQA_REFERENCE} not present (shared/ beside the clone)"
)


@pytest.fixture(scope="module")
def scorer() -> QualityScorer:
    return QualityScorer(QualityConfig(device="cpu"))


# ------------------------------------------------------------------------- parameter files


@needs_reference
def test_conversion_reproduces_the_shipped_parameter_files(tmp_path: Path) -> None:
    written = iqa_convert.convert_all(IQA_REFERENCE, tmp_path)
    for path in written:
        shipped = packaged_parameter_path(
            next(m for m, name in PACKAGED_PARAMETERS.items() if name == path.name)
        )
        assert path.read_bytes() == shipped.read_bytes(), path.name

    npz = np.load(IQA_REFERENCE / "niqe_pris_params.npz")
    mat = scipy.io.loadmat(tmp_path / iqa_convert.NIQE_TARGET)
    np.testing.assert_array_equal(np.ravel(mat["mu_prisparam"]), np.ravel(npz["mu_pris_param"]))
    np.testing.assert_array_equal(mat["cov_prisparam"], npz["cov_pris_param"])

    sv_coef, sv = torch.load(tmp_path / iqa_convert.BRISQUE_TARGET, weights_only=True)
    assert sv_coef.shape == (774,) and sv.shape == (774, 36)
    # Spot-check one support vector against the libsvm text (line 2 of the SV block).
    lines = (IQA_REFERENCE / "brisque_allmodel").read_text().splitlines()
    second = lines[lines.index("SV") + 2].split()
    assert sv_coef[1].item() == pytest.approx(float(second[0]))
    for pair in second[1:]:
        index, value = pair.split(":")
        assert sv[1, int(index) - 1].item() == pytest.approx(float(value), abs=1e-6)


def test_conversion_refuses_a_model_pyiqa_would_misread(tmp_path: Path) -> None:
    model = tmp_path / "brisque_allmodel"
    model.write_text(
        "svm_type epsilon_svr\nkernel_type rbf\ngamma 0.1\nnr_class 2\ntotal_sv 1\n"
        "rho -153.591\nSV\n-1024 1:0.5 36:-0.25\n"
    )
    with pytest.raises(iqa_convert.IqaConversionError, match="brisque_allmodel.*gamma"):
        iqa_convert.convert_brisque(model, tmp_path / "out.pt")
    assert not (tmp_path / "out.pt").exists()

    model.write_text(model.read_text().replace("gamma 0.1", "gamma 0.05").replace("36:", "37:"))
    with pytest.raises(iqa_convert.IqaConversionError, match="brisque_allmodel:8"):
        iqa_convert.convert_brisque(model, tmp_path / "out.pt")

    with pytest.raises(FileNotFoundError, match="niqe_pris_params.npz"):
        iqa_convert.convert_all(tmp_path / "nowhere", tmp_path)
    assert iqa_convert.main([str(tmp_path / "nowhere"), str(tmp_path)]) == 1


# ------------------------------------------------------------------------------ calibration


@pytest.fixture(scope="module")
def calibration(scorer: QualityScorer) -> tuple[dict[str, dict[str, str]], dict[str, dict]]:
    """pyiqa's calibration table and our scores of the same distorted images."""
    if not CALIBRATION.is_dir():
        pytest.skip(f"{CALIBRATION} not present (shared/ beside the clone)")
    with open(CALIBRATION / "scores.csv", newline="") as handle:
        table = {row["Method"]: row for row in csv.DictReader(handle)}
    names = [name for name in table["niqe(ours)"] if name != "Method"]
    scores = scorer.score([Image.open(CALIBRATION / name) for name in names])
    return table, dict(zip(names, scores, strict=True))


def test_scores_match_pyiqa_calibration_table(calibration) -> None:
    table, scores = calibration
    for metric in ("niqe", "brisque", "piqe"):
        expected = {name: float(table[f"{metric}(ours)"][name]) for name in scores}
        measured = {name: s[metric] for name, s in scores.items()}
        assert measured == pytest.approx(expected, abs=0.1), metric


def _degraded_versions(image: Image.Image) -> dict[str, Image.Image]:
    rng = np.random.default_rng(0)
    pixels = np.asarray(image, dtype=np.float32)
    noisy = np.clip(pixels + rng.normal(0, 15, pixels.shape), 0, 255).astype(np.uint8)
    jpeg = io.BytesIO()
    image.save(jpeg, "JPEG", quality=10)
    return {
        "blur": image.filter(ImageFilter.GaussianBlur(2)),
        "noise": Image.fromarray(noisy),
        "jpeg_q10": Image.open(io.BytesIO(jpeg.getvalue())).convert("RGB"),
    }


def _assert_clean_ranks_best(scorer: QualityScorer, photo: Image.Image, label: str) -> None:
    degraded = _degraded_versions(photo)
    clean, *others = scorer.score([photo, *degraded.values()])
    for metric in scorer.config.metrics:
        for kind, scores in zip(degraded, others, strict=True):
            better = (
                clean[metric] < scores[metric]
                if scorer.lower_better[metric]
                else clean[metric] > scores[metric]
            )
            assert better, (
                f"{label}: {metric} clean {clean[metric]:.2f} vs {kind} {scores[metric]:.2f}"
            )


@pytest.mark.parametrize("name", ["chelsea", "coffee"])
def test_clean_photo_ranks_better_than_its_degraded_versions(
    scorer: QualityScorer, name: str
) -> None:
    photo = Image.fromarray(getattr(skimage.data, name)())
    _assert_clean_ranks_best(scorer, photo, name)


@pytest.mark.slow
@needs_reference
@pytest.mark.parametrize("name", ["ref_I03", "ref_I04", "ref_I06", "ref_I08", "ref_I19"])
def test_clean_reference_ranks_better_than_its_degraded_versions(
    scorer: QualityScorer, name: str
) -> None:
    photo = Image.open(CALIBRATION / f"{name}.bmp").convert("RGB")
    _assert_clean_ranks_best(scorer, photo, name)


# ------------------------------------------------------------------------------------ proxy


def test_proxy_bounds_the_pixels_scored(tmp_path: Path) -> None:
    huge = Image.effect_noise((6000, 4000), 40).convert("RGB")  # 24 MP
    assert proxy_image(huge, 1024).size == (1024, 683)
    small = Image.new("RGB", (640, 480))
    assert proxy_image(small, 1024).size == (640, 480)

    path = tmp_path / "big.jpg"
    huge.save(path, quality=90)
    reduced = open_reduced(path, 1024)
    assert reduced.size == (1024, 683) and reduced.mode == "RGB"
    assert open_reduced(path.read_bytes(), 512).size == (512, 341)

    crops = proxy_crops(proxy_image(huge, 1024), 512, 5)
    assert [c.size for c in crops] == [(512, 512)] * 5
    assert len({c.tobytes() for c in crops}) == 5  # five distinct places
    assert [c.size for c in proxy_crops(small.resize((300, 200)), 512, 1)] == [(200, 200)]


def test_crops_proxy_scores_mean_of_crops() -> None:
    config = QualityConfig(metrics=["piqe"], proxy="crops", crops=5, crop_size=256, device="cpu")
    crop_scorer = QualityScorer(config)
    whole_scorer = QualityScorer(QualityConfig(metrics=["piqe"], max_side=256, device="cpu"))
    photo = Image.fromarray(skimage.data.astronaut())
    (score,) = crop_scorer.score([photo])
    views = proxy_crops(proxy_image(photo, 1024), 256, 5)
    per_crop = [s["piqe"] for s in whole_scorer.score(views)]
    assert score["piqe"] == pytest.approx(sum(per_crop) / 5, abs=1e-6)


def test_unmeasurable_image_scores_nan_without_failing_its_batch(scorer: QualityScorer) -> None:
    rng = np.random.default_rng(1)
    flat = Image.new("RGB", (256, 192), (120, 120, 120))
    photo = Image.fromarray(skimage.data.chelsea()).resize((256, 192))
    noise = Image.fromarray(rng.integers(0, 256, (192, 256, 3), dtype=np.uint8))
    tiny = Image.fromarray(rng.integers(0, 256, (60, 80, 3), dtype=np.uint8))  # < 96 px
    scores = scorer.score([flat, photo, noise, tiny])  # flat, photo and noise share a batch
    assert math.isnan(scores[0]["niqe"]) and math.isnan(scores[3]["niqe"])
    assert all(math.isfinite(v) for s in scores[1:3] for v in s.values())
    assert scores[1]["niqe"] < scores[2]["niqe"]  # the photo beats pure noise
    # Scored alone, the photo gets the score it got inside the batch that fell back (to float32
    # rounding: BRISQUE's features differ by ~1e-3 relative with the batch's composition).
    assert scorer.score([photo])[0] == pytest.approx(scores[1], abs=0.05)
    rows = scorer.rejects({"flat": scores[0], "photo": scores[1]})
    assert [r["candidate_id"] for r in rows] == ["flat"]
    assert rows[0]["reason"] == "low_quality:niqe" and "not measurable" in rows[0]["detail"]


# ---------------------------------------------------------------------------------- rejects


def test_rejects_follow_each_metrics_direction() -> None:
    scores = {
        "a": {"niqe": 3.0, "nima": 6.0},  # good on both
        "b": {"niqe": 9.5, "nima": 6.0},  # NIQE too high (lower is better)
        "c": {"niqe": 3.0, "nima": 3.9},  # NIMA too low (higher is better)
        "d": {"niqe": 12.0, "nima": 2.0},  # both: the first threshold names the reason
        "e": {"niqe": float("nan"), "nima": 6.0},  # unmeasurable counts as failing
        "f": {"niqe": 8.0, "nima": 4.0},  # exactly at the limits is accepted
    }
    rows = quality_rejects(scores, {"niqe": 8.0, "nima": 4.0}, {"niqe": True, "nima": False})
    by_id = {row["candidate_id"]: row for row in rows}
    assert sorted(by_id) == ["b", "c", "d", "e"]
    assert by_id["b"]["reason"] == "low_quality:niqe"
    assert by_id["c"]["reason"] == "low_quality:nima"
    assert by_id["d"]["reason"] == "low_quality:niqe"
    assert "niqe=12 > 8" in by_id["d"]["detail"] and "nima=2 < 4" in by_id["d"]["detail"]
    assert by_id["e"]["reason"] == "low_quality:niqe"
    assert by_id["e"]["detail"] == "niqe not measurable (nan)"
    assert all(row["stage"] == "quality" for row in rows)

    with pytest.raises(ValueError, match="direction"):
        quality_rejects(scores, {"musiq": 50.0}, {"niqe": True})
    with pytest.raises(ValueError, match="'a' has no 'piqe'"):
        quality_rejects(scores, {"piqe": 50.0}, {"piqe": True})


def test_scorer_rejects_the_distorted_calibration_images(scorer, calibration) -> None:
    _, scores = calibration
    rows = scorer.rejects(scores)
    # At the defaults calibrated on real photographs only I03 (NIQE 15.7, BRISQUE 94.6, PIQE
    # 100) goes: I19 (NIQE 9.07, BRISQUE 66.8, PIQE 77) scores inside the range of sharp real
    # photographs (NIQE up to 8.7 and BRISQUE up to 78 in a real crawl); I04, I06, I08 are mild.
    assert [row["candidate_id"] for row in rows] == ["I03.bmp"]
    assert all(row["reason"].startswith("low_quality:") for row in rows)
    strict = {"niqe": 8.0, "brisque": 60.0, "piqe": 70.0}  # the former, stricter defaults
    rows = quality_rejects(scores, strict, scorer.lower_better)
    assert [row["candidate_id"] for row in rows] == ["I03.bmp", "I19.bmp"]


def test_config_validation() -> None:
    assert QualityConfig().metrics == ["niqe", "brisque", "piqe"]
    assert QualityConfig().backend == "fast"  # curation.iqa_fast on a CPU (tests/test_iqa_fast)
    with pytest.raises(ValueError, match="backend"):
        QualityConfig(backend="numba")
    assert set(QualityConfig(metrics=["piqe"]).thresholds) == {"piqe"}
    with pytest.raises(ValueError, match="not in metrics"):
        QualityConfig(metrics=["niqe"], thresholds={"nima": 5.0})
    with pytest.raises(ValueError, match="repeated"):
        QualityConfig(metrics=["niqe", "niqe"])
    with pytest.raises(ValueError, match="extra"):
        QualityConfig(treshold={"niqe": 5})
    with pytest.raises(UnknownMetricError, match="'no_such_metric'"):
        QualityScorer(QualityConfig(metrics=["no_such_metric"], thresholds={}, device="cpu"))
    with pytest.raises(UnknownMetricError, match="full-reference"):
        QualityScorer(QualityConfig(metrics=["psnr"], thresholds={}, device="cpu"))


# ---------------------------------------------------------------------------- missing weights

_CACHE_PROBE = textwrap.dedent(
    """
    import json, os, sys, time
    import numpy as np, torch
    from PIL import Image
    from curation.quality import MissingWeightsError, QualityConfig, QualityScorer, build_metric

    out = {}
    for name in ("nima", "musiq", "topiq_nr", "clipiqa"):
        try:  # first try pays pyiqa's one-time module imports; the timed one is the second
            build_metric(name)
        except MissingWeightsError:
            pass
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            build_metric(name)
            out[name] = {"error": None}
        except MissingWeightsError as exc:
            out[name] = {
                "error": str(exc),
                "wall_s": time.perf_counter() - wall,
                "cpu_s": time.process_time() - cpu,
            }

    # Weights present in the torch hub cache are used offline (here: a CNNIQA checkpoint
    # written by this script, not downloaded).
    from pyiqa.archs import cnniqa_arch
    torch.manual_seed(0)
    net = cnniqa_arch.CNNIQA(pretrained=None)
    cache = os.path.join(torch.hub.get_dir(), "pyiqa")
    os.makedirs(cache, exist_ok=True)
    filename = os.path.basename(cnniqa_arch.default_model_urls["koniq10k"])
    torch.save({"params": net.state_dict()}, os.path.join(cache, filename))
    scorer = QualityScorer(QualityConfig(metrics=["cnniqa"], thresholds={}, device="cpu"))
    image = Image.fromarray(np.full((256, 256, 3), 128, np.uint8))
    out["cnniqa_score"] = scorer.score([image])[0]["cnniqa"]
    out["cnniqa_lower_better"] = scorer.lower_better["cnniqa"]
    print(json.dumps(out))
    """
)


def _isolated_cache_env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        TORCH_HOME=str(tmp_path / "torch"),
        HF_HOME=str(tmp_path / "hf"),
        XDG_CACHE_HOME=str(tmp_path / "cache"),
        PYTHONPATH=str(REPO),
    )
    env.pop("HF_HUB_OFFLINE", None)  # the scorer must go offline by itself
    return env


def test_missing_weights_fail_fast_and_cached_weights_load(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", _CACHE_PROBE],
        env=_isolated_cache_env(tmp_path),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    for name in ("nima", "musiq", "topiq_nr", "clipiqa"):
        error = out[name]["error"]
        assert error is not None, f"{name} built without weights"
        assert f"`mird weights fetch {name}`" in error and "\n" not in error
        assert str(tmp_path) in error  # names the file, in the isolated cache
        # Under a second of work; the wall-clock bound only rules out network retries (the
        # first of huggingface_hub's backoffs alone is 1 s, all of them over a minute), since
        # CI and dev boxes are shared and wall time there says little about our cost.
        assert out[name]["cpu_s"] < 1.0 and out[name]["wall_s"] < 5.0, (name, out[name])
    assert math.isfinite(out["cnniqa_score"])
    assert out["cnniqa_lower_better"] is False


# -------------------------------------------------------------------------------------- CLI


def test_weights_fetch_cli_help_and_clear_errors(monkeypatch, capsys) -> None:
    from huggingface_hub import constants

    from flows.cli import app as cli

    runner = CliRunner()
    help_result = runner.invoke(cli.app, ["weights", "fetch", "--help"])
    assert help_result.exit_code == 0 and "torch hub" in help_result.output

    known = runner.invoke(cli.app, ["weights", "fetch", "niqe", "piqe"])
    assert known.exit_code == 0 and "nothing to fetch" in known.output

    def run_main(*args: str) -> str:
        monkeypatch.setattr(sys, "argv", ["mird", "weights", "fetch", *args])
        with pytest.raises(SystemExit) as exit_info:
            cli.main()
        assert exit_info.value.code == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1, err
        return err

    assert "unknown IQA metric 'no_such_metric'" in run_main("nima", "no_such_metric")

    # A host that refuses connections stands in for "no internet": one line, in seconds.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{port}")
    err = run_main("nima")
    assert err.startswith(f"mird: error: cannot reach http://127.0.0.1:{port}")
    assert "needs internet" in err
