"""The WebP decode: a still opaque WebP goes through OpenCV's plain libwebp decoder, with the
same pixels as Pillow's, or, when it is reduced, straight to the reduced size through libwebp's
scaler (close to the box reduction of the full decode); alpha, animation and damaged files keep
Pillow's path and reasons. Also: an RGBA image opaque throughout is converted, not composited,
with the same pixels."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from curation.config import ProbeConfig
from curation.probe import Prober, _decode_webp, _plain_webp
from curation.records import Rejection


def _photo(width: int = 640, height: int = 480) -> Image.Image:
    import skimage.data

    return Image.fromarray(skimage.data.astronaut()).resize((width, height), Image.BICUBIC)


def _webp(image: Image.Image, **options) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "WEBP", **options)
    return buf.getvalue()


def _pillow_rgb(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


@pytest.mark.parametrize("options", [{"quality": 90}, {"lossless": True}])
def test_plain_webp_pixels_equal_pillows(options: dict) -> None:
    data = _webp(_photo(), **options)
    assert _plain_webp(Image.open(io.BytesIO(data)))
    plain = _decode_webp(data)
    assert plain is not None and plain.mode == "RGB"
    np.testing.assert_array_equal(np.asarray(plain), _pillow_rgb(data))


@pytest.mark.parametrize("options", [{"quality": 85}, {"lossless": True}])
def test_reduced_webp_is_decoded_by_libwebps_scaler_close_to_the_box_reduction(
    options: dict, monkeypatch
) -> None:
    from curation import webp_scaled

    assert webp_scaled.library() is not None  # Pillow's wheel bundles libwebp
    data = _webp(_photo(1602, 1200), **options)  # 1602 / 4: the partial last block is left out
    prober = Prober(ProbeConfig(min_side=256, reduced_max_side=512))
    header = prober.probe_header(data)
    expected = np.asarray(Image.open(io.BytesIO(data)).convert("RGB").reduce(4)).astype(int)
    assert expected.shape == (300, 401, 3)
    calls = []
    scaled = webp_scaled.decode_reduced
    monkeypatch.setattr(webp_scaled, "decode_reduced", lambda *a: calls.append(a) or scaled(*a))
    reduced = prober.reduced_decode(data, header)
    assert calls and reduced.mode == "RGB" and reduced.size == (400, 300)
    difference = np.abs(np.asarray(reduced).astype(int) - expected[:, :400])
    assert difference.mean() < 1.0 and np.percentile(difference, 99) <= 8
    # where the scaler is not usable, the full decode and its box reduction, exactly
    monkeypatch.setattr(webp_scaled, "decode_reduced", lambda *a: None)
    np.testing.assert_array_equal(np.asarray(prober.reduced_decode(data, header)), expected)


def test_scaled_decoder_leaves_alpha_animation_and_damage_to_the_caller() -> None:
    from curation.webp_scaled import decode_reduced

    rgba = _photo().convert("RGBA")
    rgba.putalpha(128)
    assert decode_reduced(_webp(rgba, lossless=True), 2) is None
    frames = [_photo(), _photo().transpose(Image.Transpose.FLIP_LEFT_RIGHT)]
    buf = io.BytesIO()
    frames[0].save(buf, "WEBP", save_all=True, append_images=frames[1:], duration=100)
    assert decode_reduced(buf.getvalue(), 2) is None
    data = _webp(_photo(), quality=90)
    assert decode_reduced(data[: len(data) // 2], 2) is None
    assert decode_reduced(b"RIFF\x00\x00\x00\x00WEBPVP8 " + bytes(64), 2) is None
    assert decode_reduced(data, 2).shape == (240, 320, 3)


def test_truncated_webp_reduced_is_rejected_as_through_pillow(monkeypatch) -> None:
    data = _webp(_photo(1600, 1200), quality=90)
    data = data[: len(data) * 2 // 3]
    prober = Prober(ProbeConfig(min_side=256, reduced_max_side=512))
    ours = _outcome(prober, data)
    monkeypatch.setattr("curation.webp_scaled.decode_reduced", lambda *a: None)
    monkeypatch.setattr("curation.probe._decode_webp", lambda _data: None)
    assert isinstance(ours, str) and ours == _outcome(prober, data)


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_opaque_alpha_is_converted_with_the_composited_pixels(mode: str) -> None:
    from curation.probe import to_rgb

    image = _photo().convert(mode)
    white = Image.new("RGBA", image.size, (255, 255, 255, 255))
    composited = Image.alpha_composite(white, image.convert("RGBA")).convert("RGB")
    np.testing.assert_array_equal(np.asarray(to_rgb(image)), np.asarray(composited))
    image.putalpha(254)  # not opaque: composited on white
    assert np.asarray(to_rgb(image)).astype(int).mean() > np.asarray(composited).mean()


def test_webp_with_alpha_keeps_pillows_path_composited_on_white() -> None:
    rgba = _photo().convert("RGBA")
    alpha = np.zeros((480, 640), np.uint8)
    alpha[:, 320:] = 255
    rgba.putalpha(Image.fromarray(alpha))
    data = _webp(rgba, lossless=True)
    assert not _plain_webp(Image.open(io.BytesIO(data)))
    prober = Prober(ProbeConfig(min_side=256))
    out = np.asarray(prober.reduced_decode(data, prober.probe_header(data)))
    assert (out[:, :300] == 255).all()  # transparent half: white
    assert out[:, 340:].std() > 10  # opaque half: the photograph


def test_animated_webp_keeps_pillows_path() -> None:
    frames = [_photo(), _photo().transpose(Image.Transpose.FLIP_LEFT_RIGHT)]
    buf = io.BytesIO()
    frames[0].save(buf, "WEBP", save_all=True, append_images=frames[1:], duration=100)
    data = buf.getvalue()
    assert not _plain_webp(Image.open(io.BytesIO(data)))
    prober = Prober(ProbeConfig(min_side=256))
    out = prober.reduced_decode(data, prober.probe_header(data))
    np.testing.assert_array_equal(np.asarray(out), _pillow_rgb(data))


def _outcome(prober: Prober, data: bytes) -> str | np.ndarray:
    try:
        return np.asarray(prober.reduced_decode(data, prober.probe_header(data)))
    except Rejection as exc:
        return f"{exc.stage}/{exc.reason}"


@pytest.mark.parametrize("damage", ["truncate", "flip_middle", "zero_tail"])
def test_damaged_webp_has_the_same_outcome_as_through_pillow(damage: str, monkeypatch) -> None:
    data = bytearray(_webp(_photo(), quality=90))
    if damage == "truncate":
        data = data[: len(data) * 2 // 3]
    elif damage == "flip_middle":
        middle = len(data) // 2
        data[middle : middle + 64] = bytes(b ^ 0xFF for b in data[middle : middle + 64])
    else:
        data[len(data) // 2 :] = bytes(len(data) - len(data) // 2)
    prober = Prober(ProbeConfig(min_side=256))
    ours = _outcome(prober, bytes(data))
    monkeypatch.setattr("curation.probe._decode_webp", lambda _data: None)
    pillows = _outcome(prober, bytes(data))
    if isinstance(pillows, str):
        assert ours == pillows
    else:
        np.testing.assert_array_equal(ours, pillows)
