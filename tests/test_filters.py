"""Probe and content filters on generated images: photographs pass, the rest is rejected with
the right reason. The confusion table is printed (run with ``-s`` to see it)."""

from __future__ import annotations

import io
from collections import Counter

import numpy as np
import pytest
from PIL import Image

from curation.config import FilterConfig, ProbeConfig
from curation.filters import run_filters
from curation.probe import Prober, to_rgb
from curation.records import Rejection
from storage.schemas import MEASUREMENT_COLUMNS
from tests import curation_images as images

KINDS = {
    "photo": (images.photo_like, "accepted"),
    "blurred": (images.blurred, "blurry"),
    "flat": (images.flat, "flat"),
    "dark": (images.dark, "too_dark"),
    "grayscale": (images.grayscale_photo, "grayscale"),
    "line_art": (images.line_art, "graphic"),
    "flat_graphic": (images.flat_graphic, "graphic"),
    "text_page": (images.text_page, "document"),
    "product_on_white": (images.product_on_white, "white_background"),
}
SEEDS = (0, 1, 2)


def _verdict(prober: Prober, data: bytes) -> tuple[str, dict]:
    header = prober.probe_header(data)
    reduced = prober.reduced_decode(data, header)
    result = run_filters(reduced, FilterConfig())
    return result.reason or "accepted", result.measurements


def test_confusion_table(capsys: pytest.CaptureFixture[str]) -> None:
    prober = Prober(ProbeConfig(min_side=512))
    confusion: Counter[tuple[str, str]] = Counter()
    mistakes = []
    for kind, (make, expected) in KINDS.items():
        for seed in SEEDS:
            got, measurements = _verdict(prober, images.jpeg_bytes(make(seed=seed)))
            confusion[(expected, got)] += 1
            if got != expected:
                mistakes.append((kind, seed, got, measurements))
    labels = sorted({e for e, _ in confusion} | {g for _, g in confusion})
    width = max(map(len, labels)) + 2
    lines = ["expected \\ got".ljust(width) + "".join(label.rjust(width) for label in labels)]
    for expected in sorted({e for e, _ in confusion}):
        row = "".join(str(confusion[(expected, got)]).rjust(width) for got in labels)
        lines.append(expected.ljust(width) + row)
    with capsys.disabled():  # shown in every run, not only with -s
        print("\n" + "\n".join(lines))
    assert not mistakes, mistakes


def test_photographs_through_the_jpeg_draft_path_pass() -> None:
    """Larger photographs are reduced by the JPEG decoder's DCT scaling, not a full decode."""
    prober = Prober(ProbeConfig())
    for seed in (10, 11):
        data = images.jpeg_bytes(images.photo_like(2048, 1536, seed=seed))
        header = prober.probe_header(data)
        reduced = prober.reduced_decode(data, header)
        assert reduced.size == (1024, 768)
        result = run_filters(reduced)
        assert result.passed, result


def test_measurements_stop_at_the_reject_and_use_schema_names() -> None:
    dark = run_filters(images.dark(640, 480))
    assert dark.reason == "too_dark"
    exposure = {"mean_luma", "dark_fraction", "clipped_fraction", "luma_p01", "luma_p99"}
    assert set(dark.measurements) == exposure  # the histogram's measures, nothing later
    photo = run_filters(images.photo_like(640, 480, seed=4))
    assert set(photo.measurements) <= set(MEASUREMENT_COLUMNS)
    assert {"blur_laplacian_var", "flat_fraction", "colorfulness"} <= set(photo.measurements)
    assert dark.detail.startswith("underexposed: luma_p99=")


def test_thresholds_come_from_the_config() -> None:
    image = images.grayscale_photo(640, 480)
    assert run_filters(image).reason == "grayscale"
    assert run_filters(image, FilterConfig(reject_grayscale=False)).reason is None
    photo = images.photo_like(640, 480, seed=8)
    assert run_filters(photo, FilterConfig(min_laplacian_var=1e6)).reason == "blurry"
    assert run_filters(photo, FilterConfig(max_laplacian_var=1.0)).reason == "noisy"
    noise_only = FilterConfig(max_noise_floor=0.1, max_laplacian_var=None)
    assert run_filters(photo, noise_only).reason == "noisy"  # the noise floor alone
    assert run_filters(photo, FilterConfig(max_laplacian_var=None)).reason is None


def _header(width: int, height: int, config: ProbeConfig) -> str:
    data = images.jpeg_bytes(Image.new("RGB", (width, height), (90, 120, 150)))
    try:
        Prober(config).probe_header(data)
    except Rejection as rejection:
        return rejection.reason
    return "ok"


def test_default_size_and_aspect_limits() -> None:
    config = ProbeConfig()
    assert config.min_side == 1024 and config.max_aspect == 2.0
    assert _header(1024, 1024, config) == "ok"
    assert _header(1023, 2000, config) == "too_small"
    assert _header(2048, 1024, config) == "ok"  # exactly 2.0
    assert _header(2060, 1024, config) == "bad_aspect"


def test_gif_and_garbage_are_rejected_at_the_header() -> None:
    prober = Prober(ProbeConfig(min_side=16))
    gif = images.photo_like(64, 64)
    buffer = io.BytesIO()
    gif.save(buffer, "GIF")
    for data, reason in [
        (buffer.getvalue(), "unsupported_format"),
        (b"\x00" * 100, "not_an_image"),
    ]:
        with pytest.raises(Rejection) as info:
            prober.probe_header(data)
        assert info.value.reason == reason


@pytest.mark.parametrize(
    ("size", "fmt", "reduced"),
    [
        ((4000, 3000), "JPEG", (1000, 750)),  # DCT scale 1/4
        ((9000, 2000), "JPEG", (563, 125)),  # 1/8 from the decoder, then a box x2
        ((2100, 1100), "PNG", (525, 275)),  # full decode, then a box x4
        ((1024, 700), "PNG", (1024, 700)),
    ],
)
def test_reduced_decode_size(size: tuple[int, int], fmt: str, reduced: tuple[int, int]) -> None:
    noise = Image.effect_noise(size, 40).convert("RGB")
    buffer = io.BytesIO()
    noise.save(buffer, fmt)
    prober = Prober(ProbeConfig(min_side=16, max_aspect=10))
    data = buffer.getvalue()
    image = prober.reduced_decode(data, prober.probe_header(data))
    assert image.mode == "RGB"
    assert image.size == reduced


def test_sixteen_bit_grey_is_scaled_not_clipped() -> None:
    ramp = np.linspace(0, 65535, 256 * 64, dtype=np.uint16).reshape(64, 256)
    buffer = io.BytesIO()
    Image.fromarray(ramp).save(buffer, "PNG")  # a 16-bit greyscale PNG
    image = Image.open(buffer)
    assert image.mode in ("I;16", "I")
    rgb = np.asarray(to_rgb(image))
    assert rgb.max() == 255 and rgb.min() == 0
    assert abs(int(rgb[32, 128, 0]) - 128) <= 2


def test_transparent_pixels_become_white() -> None:
    rgba = Image.new("RGBA", (8, 8), (10, 20, 30, 0))
    assert to_rgb(rgba).getpixel((0, 0)) == (255, 255, 255)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("astronaut", "accepted"),
        ("coffee", "accepted"),
        ("chelsea", "accepted"),
        ("rocket", "accepted"),
        ("immunohistochemistry", "accepted"),
        ("camera", "grayscale"),
        ("text", "grayscale"),  # a grey photograph of lettering: camera noise, no render
        ("logo", "graphic"),
    ],
)
def test_real_photographs_and_graphics(name: str, expected: str) -> None:
    """Real images bundled with scikit-image (no download): photographs pass as they are."""
    skimage_data = pytest.importorskip("skimage.data")
    image = Image.fromarray(getattr(skimage_data, name)()).convert("RGB")
    assert (run_filters(image).reason or "accepted") == expected


def test_png_header_probe_reads_no_pixels_and_keeps_an_early_exif(monkeypatch) -> None:
    from PIL import PngImagePlugin

    plain = io.BytesIO()
    images.photo_like(640, 480, seed=2).save(plain, "PNG")
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90
    rotated = io.BytesIO()
    images.photo_like(640, 480, seed=2).save(rotated, "PNG", exif=exif)
    loads: list[int] = []
    real_load = PngImagePlugin.PngImageFile.load
    monkeypatch.setattr(
        PngImagePlugin.PngImageFile, "load", lambda self: loads.append(1) or real_load(self)
    )
    prober = Prober(ProbeConfig(min_side=256))
    header = prober.probe_header(plain.getvalue())
    assert (header.width, header.height, header.orientation) == (640, 480, 1)
    assert loads == []  # the header probe did not decode the pixels to look for EXIF
    turned = prober.probe_header(rotated.getvalue())  # Pillow writes eXIf before the pixels
    assert (turned.width, turned.height, turned.orientation) == (480, 640, 6)
