"""Degradations: seeded, in range, and each does what its name says."""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError

from dynet import degrade
from dynet.degrade import DegradationRecipe, NoiseOp, apply_recipe
from storage.demo_data import photo_like


def photo(size: int = 64, seed: int = 0) -> torch.Tensor:
    return torch.from_numpy(photo_like(size, size, seed)).permute(2, 0, 1).float() / 255.0


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def high_frequency(image: torch.Tensor) -> float:
    return float((image[:, :, 1:] - image[:, :, :-1]).abs().mean())


def test_every_op_is_seeded_in_range_and_keeps_shape() -> None:
    image = photo()
    for op in DegradationRecipe().ops:
        first, second = op(image, gen(3)), op(image, gen(3))
        assert torch.equal(first, second), op.kind
        assert first.shape == image.shape and first.dtype == torch.float32
        assert 0 <= float(first.min()) and float(first.max()) <= 1, op.kind
        assert not torch.equal(first, image), op.kind
    noise = NoiseOp()
    assert not torch.equal(noise(image, gen(1)), noise(image, gen(2)))


def test_gaussian_noise_has_the_requested_sigma_and_quantises() -> None:
    flat = torch.full((3, 128, 128), 100 / 255)
    noisy = degrade.gaussian_noise(flat, 25.0, gen())
    assert float((noisy - flat).std() * 255) == pytest.approx(25.0, rel=0.03)
    quantised = degrade.gaussian_noise(flat, 25.0, gen(), quantize=True)
    levels = quantised * 255
    assert torch.allclose(levels, levels.round(), atol=1e-4)
    # the test protocol: uint8 clean + sigma * N(0, 1), clipped, truncated (not rounded)
    normal = torch.randn(flat.shape, generator=gen())
    expected = (100 + 25 * normal).clamp(0, 255).floor()
    assert torch.allclose(levels, expected, atol=1e-3)


def test_jpeg_quality_orders_the_error() -> None:
    image = photo(96)
    low = float((degrade.jpeg(image, 10) - image).abs().mean())
    high = float((degrade.jpeg(image, 95) - image).abs().mean())
    assert low > 2 * high > 0


def test_blurs_remove_high_frequencies() -> None:
    image = photo()
    assert float(degrade.gaussian_kernel(1.5).sum()) == pytest.approx(1.0)
    assert float(degrade.line_kernel(9, 30.0).sum()) == pytest.approx(1.0)
    for blurred in (degrade.gaussian_blur(image, 2.0), degrade.motion_blur(image, 11, 45.0)):
        assert high_frequency(blurred) < 0.6 * high_frequency(image)
        assert float(blurred.mean()) == pytest.approx(float(image.mean()), abs=0.01)


def test_rain_only_brightens_along_streaks() -> None:
    image = photo()
    rainy = degrade.rain_streaks(image, gen(), density=0.01, length=15, angle_deg=90, intensity=0.8)
    assert bool((rainy >= image - 1e-6).all())
    changed = (rainy - image).abs().amax(0) > 0.02
    assert 0.02 < float(changed.float().mean()) < 0.8
    # vertical streaks: changes are far more correlated down columns than along rows
    vertical = float((changed[1:] & changed[:-1]).float().sum())
    horizontal = float((changed[:, 1:] & changed[:, :-1]).float().sum())
    assert vertical > 2 * horizontal


def test_haze_is_thicker_far_away_and_lowers_contrast() -> None:
    image = photo(96)
    hazy = degrade.haze(image, gen(), beta=2.0, airlight=0.9)
    assert float(hazy.std()) < float(image.std())
    toward_airlight = (hazy - image) / (0.9 - image).where((0.9 - image).abs() > 0.05, 1.0)
    top, bottom = toward_airlight[:, :16].mean(), toward_airlight[:, -16:].mean()
    assert float(top) > float(bottom)  # the depth proxy puts the far field at the top


def test_block_mask_takes_exact_share_and_avoids_excluded_cells() -> None:
    cells = degrade.block_mask(64, 64, 16, 0.5, gen(), exclude=None)
    assert cells.shape == (4, 4) and int(cells.sum()) == 8
    second = degrade.block_mask(64, 64, 16, 0.25, gen(1), exclude=cells)
    assert int(second.sum()) == 4 and not bool((second & cells).any())


def test_recipe_corrupts_half_and_masks_thirty_percent() -> None:
    clean = torch.full((3, 128, 128), 0.5)
    recipe = DegradationRecipe(ops=[NoiseOp(sigma=(30, 30))], block_size=16)  # 64 blocks
    out = apply_recipe(clean, recipe, gen())
    blocks = out.unfold(1, 16, 16).unfold(2, 16, 16)  # 3 x 8 x 8 x 16 x 16
    zeroed = (blocks == 0).flatten(-2).all(-1).all(0)
    noisy = (blocks - 0.5).abs().flatten(-2).amax(-1).amax(0) > 0.05
    untouched = (blocks == 0.5).flatten(-2).all(-1).all(0)
    assert int(zeroed.sum()) == round(0.3 * 64)
    assert int((noisy & ~zeroed).sum()) == round(0.5 * 64)
    assert int(untouched.sum()) == 64 - round(0.3 * 64) - round(0.5 * 64)
    assert torch.equal(out, apply_recipe(clean, recipe, gen()))


def test_recipe_validation_and_yaml_shape() -> None:
    with pytest.raises(ValidationError, match="cannot exceed 1"):
        DegradationRecipe(degrade_fraction=0.8, mask_ratio=0.3)
    with pytest.raises(ValidationError):
        DegradationRecipe.model_validate({"ops": [{"kind": "sharpen"}]})
    recipe = DegradationRecipe.model_validate(
        {"ops": [{"kind": "jpeg", "quality": [30, 40]}, {"kind": "haze", "weight": 2}], "chain": 2}
    )
    assert [op.kind for op in recipe.ops] == ["jpeg", "haze"]
    out = apply_recipe(photo(32), recipe.model_copy(update={"degrade_fraction": 1.0}), gen())
    assert out.shape == (3, 32, 32)
