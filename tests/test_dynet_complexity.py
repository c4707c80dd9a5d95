"""Complexity figures of the paper/official code, reproduced on the meta device (no arithmetic)."""

from __future__ import annotations

import pytest

from dynet import complexity, create_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")


G = 1e9


@pytest.fixture(scope="module")
def dynet():
    return create_model("dynet")


@pytest.fixture(scope="module")
def at_224(dynet):
    """DyNet-L and DyNet-S at 224 x 224, computed once for the module."""
    return {v: complexity(dynet, size=224, variant=v) for v in ("L", "S")}


def test_dynet_parameters(dynet):
    result = complexity(dynet, size=32)
    assert result.params_official_layout == 16_726_031
    assert result.params_used == 16_613_135
    assert result.params_total == 16_613_135  # the unused official convs are not carried


@pytest.mark.parametrize(
    ("variant", "conv_g", "attention_g"), [("L", 121.08, 11.15), ("S", 83.12, 7.68)]
)
def test_dynet_macs_at_224(at_224, variant, conv_g, attention_g):
    result = at_224[variant]
    assert round(result.conv_macs / G, 2) == conv_g
    assert round(result.attention_macs / G, 2) == attention_g
    assert result.other_macs < 1e4  # only the prompt generators' tiny linear layers
    assert result.params_used == 16_613_135  # every variant uses every weight


def test_s_to_l_ratio_matches_paper(at_224):
    large, small = at_224["L"], at_224["S"]
    assert round(small.conv_macs / large.conv_macs, 4) == 0.6865  # "31.34 % fewer GFLOPs"
    assert round(small.total_macs / large.total_macs, 3) == 0.687


def test_promptir_parameters_and_macs(at_224):
    promptir = complexity(create_model("promptir"), size=224)
    assert promptir.params_official_layout == 35_592_263
    assert promptir.params_used == promptir.params_total == 35_376_967
    large = at_224["L"]
    assert promptir.conv_macs == large.conv_macs
    assert promptir.attention_macs == large.attention_macs


def _attention_macs(
    repeats: tuple[int, int, int, int],
    size: int,
    dim: int = 48,
    prompts: tuple[int, int, int] = (64, 128, 320),
) -> int:
    """Closed form: each block application costs 2 * C^2 * H*W / heads for q@k^T and attn@v."""
    n1, n2, n3, n4 = repeats
    hw = [size * size // 4**level for level in range(4)]
    c1, c2, c3, c4 = dim, 2 * dim, 4 * dim, 8 * dim

    def cost(c: int, pixels: int, heads: int, times: int = 1) -> int:
        return times * 2 * c * c * pixels // heads

    return (
        cost(c1, hw[0], 1, n1)
        + cost(c2, hw[1], 2, n2)
        + cost(c3, hw[2], 4, n3)
        + cost(c4, hw[3], 8, n4)
        + cost(c4 + prompts[2], hw[3], 4)  # latent prompt interaction
        + cost(c3 + prompts[1], hw[2], 4)  # level-3 skip prompt interaction
        + cost(c2 + prompts[0], hw[1], 4)  # level-2 skip prompt interaction
        + cost(c3, hw[2], 4, n3)
        + cost(c2, hw[1], 2, n2)
        + cost(c2, hw[0], 1, n1)
        + cost(c2, hw[0], 1, 4)  # refinement
    )


@pytest.mark.parametrize("variant", [(4, 6, 6, 8), (2, 3, 3, 4), (1, 1, 2, 5)])
def test_attention_macs_match_closed_form(dynet, variant):
    assert complexity(dynet, size=64, variant=variant).attention_macs == _attention_macs(
        variant, 64
    )


def test_custom_widths_have_no_official_layout():
    """A narrow model: no official layout, and the closed form with its own prompt widths."""
    small = create_model("dynet-s", dim=8, prompt_channels=(8, 8, 16), prompt_sizes=(8, 4, 2))
    result = complexity(small, size=32)
    assert result.variant == "S"
    assert result.params_official_layout is None
    assert result.params_used == result.params_total == sum(p.numel() for p in small.parameters())
    expected = _attention_macs((2, 3, 3, 4), 32, dim=8, prompts=(8, 8, 16))
    assert result.attention_macs == expected
