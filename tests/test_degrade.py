"""Degradations: seeded, in range, and each does what its name says."""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError

from dynet import degrade
from dynet.degrade import (
    DegradationRecipe,
    NoiseOp,
    RandomNoiseOp,
    apply_recipe,
    choose_op,
    extension_ops,
)
from flows.demo.data import photo_like


def photo(size: int = 64, seed: int = 0) -> torch.Tensor:
    return torch.from_numpy(photo_like(size, size, seed)).permute(2, 0, 1).float() / 255.0


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def high_frequency(image: torch.Tensor) -> float:
    return float((image[:, :, 1:] - image[:, :, :-1]).abs().mean())


def test_every_op_is_seeded_in_range_and_keeps_shape() -> None:
    image = photo()
    families = [RandomNoiseOp(families=[family]) for family in degrade.RANDOM_NOISE_FAMILIES]
    for op in [*DegradationRecipe().ops, *families, *extension_ops()]:
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


def test_default_recipe_is_the_papers_noise_then_masking() -> None:
    recipe = DegradationRecipe()
    assert [op.kind for op in recipe.ops] == ["noise", "jpeg", "random_noise"]
    assert (recipe.degrade_fraction, recipe.mask_ratio, recipe.chain) == (0.5, 0.3, 1)
    assert {op.kind for op in extension_ops()} == {"blur", "motion_blur", "rain", "haze"}
    extended = DegradationRecipe.model_validate(
        {"ops": [*(op.model_dump() for op in recipe.ops), {"kind": "rain"}, {"kind": "haze"}]}
    )
    assert [op.kind for op in extended.ops][-2:] == ["rain", "haze"]


def test_degradation_families_are_drawn_as_the_config_says() -> None:
    """Over many draws, each op comes up by its weight and each random-noise family equally."""
    draws = 6000
    recipe = DegradationRecipe.model_validate(
        {"ops": [{"kind": "noise", "weight": 2}, {"kind": "jpeg"}, {"kind": "random_noise"}]}
    )
    g = gen(5)
    kinds = [choose_op(recipe, g).kind for _ in range(draws)]
    for kind, share in (("noise", 0.5), ("jpeg", 0.25), ("random_noise", 0.25)):
        assert kinds.count(kind) / draws == pytest.approx(share, abs=0.025), kind
    op = RandomNoiseOp(families=["poisson", "speckle", "salt_pepper"])
    families = [op.choose(g) for _ in range(draws)]
    assert set(families) == {"poisson", "speckle", "salt_pepper"}
    for family in set(families):
        assert families.count(family) / draws == pytest.approx(1 / 3, abs=0.025), family
    default = [choose_op(DegradationRecipe(), g).kind for _ in range(3000)]
    assert {k: round(default.count(k) / 3000, 1) for k in set(default)} == {
        "noise": 0.3,
        "jpeg": 0.3,
        "random_noise": 0.3,
    }


def test_random_noise_families_look_like_their_names() -> None:
    flat = torch.full((3, 64, 64), 0.5)
    impulses = degrade.salt_pepper_noise(flat, 0.1, gen())
    changed = (impulses != 0.5).any(0)
    assert float(changed.float().mean()) == pytest.approx(0.1, abs=0.02)
    assert set(impulses[:, changed].unique().tolist()) <= {0.0, 1.0}
    dark, bright = torch.full((3, 64, 64), 0.1), torch.full((3, 64, 64), 0.9)
    for noisy in (degrade.speckle_noise, degrade.poisson_noise):
        arg = 0.2 if noisy is degrade.speckle_noise else 30.0
        # signal-dependent: brighter pixels get more absolute noise
        assert float((noisy(bright, arg, gen()) - bright).std()) > float(
            (noisy(dark, arg, gen()) - dark).std()
        )
    spread = degrade.uniform_noise(flat, 30.0, gen()) - flat
    assert float(spread.abs().max() * 255) <= 30.0 + 1e-3 and float(spread.std() * 255) > 15


def test_masking_fractions_hold_over_many_draws() -> None:
    """Whatever the degradation drawn, every patch has exactly the configured shares."""
    clean = torch.full((3, 64, 64), 0.5)
    for fraction, ratio in ((0.5, 0.3), (0.25, 0.5)):
        recipe = DegradationRecipe(degrade_fraction=fraction, mask_ratio=ratio, block_size=8)
        g = gen(11)
        for _ in range(40):
            out = apply_recipe(clean, recipe, g)
            blocks = out.unfold(1, 8, 8).unfold(2, 8, 8)  # 3 x 8 x 8 x 8 x 8
            zeroed = (blocks == 0).flatten(-2).all(-1).all(0)
            untouched = (blocks == 0.5).flatten(-2).all(-1).all(0)
            assert int(zeroed.sum()) == round(ratio * 64)
            # degraded blocks are neither zeroed nor left clean (a JPEG of flat grey can be
            # exact, so count "not clean" as at most the degraded share)
            assert 64 - int(untouched.sum()) - int(zeroed.sum()) <= round(fraction * 64)
