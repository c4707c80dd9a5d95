"""PSNR/SSIM checked against scikit-image and against pyiqa's published calibration table."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from dynet.metrics import psnr, rgb_to_y, score_pair, ssim

CALIBRATION = (
    Path(__file__).resolve().parents[1].parent / "shared" / "reference" / "iqa" / "calibration"
)


def _noisy_pair(seed: int, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    clean = rng.random(shape)
    # Smooth structure plus noise, so SSIM sits well away from 0 and 1.
    clean = (clean + np.roll(clean, 1, axis=0) + np.roll(clean, 1, axis=1)) / 3.0
    noisy = np.clip(clean + rng.normal(0.0, 0.08, shape), 0.0, 1.0)
    return clean, noisy


@pytest.mark.parametrize("shape", [(32, 48, 3), (17, 23, 3), (40, 40)])
def test_psnr_and_ssim_equal_skimage_defaults(shape: tuple[int, ...]) -> None:
    clean, noisy = _noisy_pair(sum(shape), shape)
    channel_axis = 2 if len(shape) == 3 else None
    expected_ssim = structural_similarity(clean, noisy, data_range=1.0, channel_axis=channel_axis)
    assert psnr(clean, noisy) == pytest.approx(
        peak_signal_noise_ratio(clean, noisy, data_range=1.0), abs=1e-10
    )
    assert ssim(clean, noisy) == pytest.approx(expected_ssim, abs=1e-10)
    assert 0.1 < ssim(clean, noisy) < 0.95


def test_gaussian_ssim_equals_skimage_wang_settings() -> None:
    clean, noisy = _noisy_pair(7, (36, 44))
    expected = structural_similarity(
        clean,
        noisy,
        data_range=1.0,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
    )
    assert ssim(clean, noisy, window="gaussian") == pytest.approx(expected, abs=1e-10)


def test_uint8_inputs_are_scaled_to_unit_range() -> None:
    clean, noisy = _noisy_pair(3, (24, 24, 3))
    clean8 = np.round(clean * 255).astype(np.uint8)
    noisy8 = np.round(noisy * 255).astype(np.uint8)
    assert psnr(clean8, noisy8) == pytest.approx(psnr(clean8 / 255.0, noisy8 / 255.0))
    assert psnr(clean8, clean8) == float("inf")
    assert ssim(clean8, clean8) == pytest.approx(1.0)


def test_y_channel_is_bt601_studio_range() -> None:
    image = np.array([[[0.0, 0.0, 0.0], [1.0, 1.0, 1.0], [1.0, 0.0, 0.0]]])
    y = rgb_to_y(image)
    assert y[0, 0] == pytest.approx(16 / 255)
    assert y[0, 1] == pytest.approx(235 / 255)
    assert y[0, 2] == pytest.approx((16 + 65.481) / 255)
    assert rgb_to_y(image, "luma")[0, 2] == pytest.approx(0.299)


def test_score_pair_reports_rgb_and_y_columns() -> None:
    clean, noisy = _noisy_pair(11, (32, 32, 3))
    scores = score_pair(clean, noisy)
    assert scores.psnr == pytest.approx(peak_signal_noise_ratio(clean, noisy, data_range=1.0))
    y_clean, y_noisy = rgb_to_y(clean), rgb_to_y(noisy)
    assert scores.psnr_y == pytest.approx(peak_signal_noise_ratio(y_clean, y_noisy, data_range=1.0))
    assert scores.ssim_y == pytest.approx(
        structural_similarity(
            y_clean,
            y_noisy,
            data_range=1.0,
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
        )
    )


def test_mismatched_shapes_are_rejected() -> None:
    with pytest.raises(ValueError, match="shapes differ"):
        psnr(np.zeros((8, 8, 3)), np.zeros((8, 9, 3)))


def _calibration_rows() -> dict[str, dict[str, float]]:
    with open(CALIBRATION / "scores.csv", newline="") as handle:
        return {
            row["Method"]: {k: float(v) for k, v in row.items() if k != "Method"}
            for row in csv.DictReader(handle)
        }


def _load_rgb(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


@pytest.mark.skipif(not CALIBRATION.is_dir(), reason="shared reference data not present")
def test_calibration_table_psnr_and_ssim_rows() -> None:
    """The ``psnr``/``ssim`` rows of pyiqa's calibration table, reproduced to their 4 decimals.

    Colour spaces, found by reproducing the table: the ``psnr`` row is PSNR on RGB in [0, 1]
    (all three channels), i.e. the protocol's :func:`psnr`. The ``ssim`` row is NOT on RGB: it is
    Wang et al.'s SSIM (11x11 Gaussian window, sigma 1.5, population covariance, no
    downsampling) on the full-range luma ``0.299 R + 0.587 G + 0.114 B`` (the Y of YIQ) rounded to
    integers in [0, 255], with data range 255. RGB SSIM on these pairs differs by up to 0.07.
    """
    rows = _calibration_rows()
    for name, published_psnr in rows["psnr"].items():
        distorted = _load_rgb(CALIBRATION / name)
        reference = _load_rgb(CALIBRATION / f"ref_{name}")
        assert psnr(reference, distorted) == pytest.approx(published_psnr, abs=0.006), name

        luma_ref = np.round(255.0 * rgb_to_y(reference, "luma"))
        luma_out = np.round(255.0 * rgb_to_y(distorted, "luma"))
        wang = ssim(luma_ref, luma_out, data_range=255.0, window="gaussian")
        assert wang == pytest.approx(rows["ssim"][name], abs=6e-5), name
