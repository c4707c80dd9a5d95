"""DyNet and PromptIR networks: variants from shared weights, shapes, registry, checkpoints."""

from __future__ import annotations

import pytest
import torch

from dynet import (
    CheckpointError,
    DyNet,
    InvalidVariantError,
    PromptIR,
    UnknownArchitectureError,
    WeightsNotFoundError,
    create_model,
    load_model,
    load_training_state,
    load_weights,
    resolve_variant,
    save_training_state,
    save_weights,
)
from dynet.blocks import LayerNorm2d, ffn_hidden_channels
from dynet.registry import to_channels_last

pytestmark = pytest.mark.usefixtures("one_torch_thread")


TINY = {"dim": 8, "prompt_channels": (8, 8, 16), "prompt_sizes": (8, 4, 2)}


def tiny(arch: str = "dynet", seed: int = 0, **kw) -> torch.nn.Module:
    torch.manual_seed(seed)
    return create_model(arch, **{**TINY, **kw}).eval()


def image(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


def test_full_size_variants_share_one_state_dict():
    model = create_model("dynet").eval()
    x = image(1, 3, 16, 16)
    with torch.no_grad():
        large, small = model(x, "L"), model(x, "S")
        assert torch.equal(model(x), large)  # default variant is L
        assert torch.equal(model(x, (4, 6, 6, 8)), large)
        assert torch.equal(model(x, "s"), small)
    assert large.shape == small.shape == x.shape
    assert (large - small).abs().max() > 1e-4  # the depth really differs


def test_repeats_reuse_the_same_block():
    """A block applied n times is called n times (not n copies)."""
    model = tiny()
    calls: dict[str, int] = {}
    for name in ("enc1", "enc2", "enc3", "latent", "dec3", "dec2", "dec1"):
        getattr(model, name).register_forward_hook(
            lambda *_, name=name: calls.__setitem__(name, calls.get(name, 0) + 1)
        )
    with torch.no_grad():
        model(image(1, 3, 16, 16), (2, 3, 1, 5))
    assert calls == {
        "enc1": 2, "enc2": 3, "enc3": 1, "latent": 5, "dec3": 1, "dec2": 3, "dec1": 2
    }  # fmt: skip


def test_every_weight_is_trained_by_every_variant():
    model = tiny().train()
    for variant in ("L", "S", (1, 1, 1, 1)):
        model.zero_grad(set_to_none=True)
        model(image(2, 3, 16, 16), variant).abs().mean().backward()
        assert all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize("size", [(16, 24), (13, 30), (1, 1), (8, 9)])
def test_any_size_is_padded_and_cropped_back(size):
    model = tiny()
    x = image(2, 3, *size)
    with torch.no_grad():
        y = model(x, "S")
    assert y.shape == x.shape
    assert torch.isfinite(y).all()


def test_batch_elements_are_independent():
    model = tiny()
    a, b = image(1, 3, 16, 24, seed=1), image(1, 3, 16, 24, seed=2)
    with torch.no_grad():
        both = model(torch.cat([a, b]), "S")
        assert torch.allclose(both[0:1], model(a, "S"), atol=1e-5)
        assert torch.allclose(both[1:2], model(b, "S"), atol=1e-5)


@pytest.mark.parametrize(
    "variant", ["M", "", (1, 2, 3), (0, 1, 1, 1), (1, 2, 3, 4.0), (True, 1, 1, 1), "1,2,3,4"]
)
def test_invalid_variants_are_refused(variant):
    with pytest.raises(InvalidVariantError, match="variant"):
        tiny()(image(1, 3, 8, 8), variant)


def test_resolve_variant_names():
    assert resolve_variant("L") == (4, 6, 6, 8)
    assert resolve_variant("dynet-s") == (2, 3, 3, 4)
    assert resolve_variant([1, 2, 3, 4]) == (1, 2, 3, 4)


def test_registry_aliases_set_the_default_variant():
    small = tiny("dynet-s", seed=3)
    large = tiny("dynet-l", seed=3)
    assert isinstance(small, DyNet) and small.config.default_variant == "S"
    x = image(1, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(small(x), large(x, "S"))
    assert isinstance(tiny("promptir"), PromptIR)
    with pytest.raises(UnknownArchitectureError, match="unknown architecture 'restormer'"):
        create_model("restormer")


def test_promptir_has_one_depth():
    model = tiny("promptir")
    x = image(1, 3, 16, 16)
    with torch.no_grad():
        assert model(x).shape == x.shape
    with pytest.raises(InvalidVariantError, match="single depth"):
        model(x, "S")


def test_layernorm_matches_per_pixel_statistics():
    norm = LayerNorm2d(6)
    torch.nn.init.normal_(norm.weight)
    torch.nn.init.normal_(norm.bias)
    x = image(2, 6, 5, 7) * 4
    mean = x.mean(1, keepdim=True)
    var = x.var(1, keepdim=True, unbiased=False)
    expected = (x - mean) / torch.sqrt(var + 1e-5) * norm.weight[:, None, None]
    assert torch.allclose(norm(x), expected + norm.bias[:, None, None], atol=1e-5)
    assert [ffn_hidden_channels(c) for c in (48, 96, 192, 384, 704)] == [127, 255, 510, 1021, 1872]


def test_weights_file_serves_every_variant(tmp_path):
    model = tiny(seed=7)
    path = save_weights(model, tmp_path / "dynet.safetensors")
    restored = load_weights(path)  # architecture and widths come from the file
    assert isinstance(restored, DyNet) and restored.config.dim == 8
    x = image(1, 3, 16, 16)
    with torch.no_grad():
        for variant in ("L", "S", (1, 1, 1, 1)):
            assert torch.equal(restored.eval()(x, variant), model(x, variant))
    as_small = load_weights(path, default_variant="S")
    with torch.no_grad():
        assert torch.equal(as_small.eval()(x), model(x, "S"))
    assert not list(tmp_path.glob(".*tmp*"))  # written atomically, no leftovers


def test_weights_file_errors(tmp_path):
    with pytest.raises(WeightsNotFoundError, match="missing.safetensors does not exist"):
        load_weights(tmp_path / "missing.safetensors")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00" * 32)
    with pytest.raises(CheckpointError, match="bad.safetensors is not a readable safetensors"):
        load_weights(bad)
    path = save_weights(tiny(), tmp_path / "dynet.safetensors")
    with pytest.raises(CheckpointError, match="holds dynet weights, not promptir"):
        load_weights(path, tiny("promptir"))
    with pytest.raises(CheckpointError, match="holds dynet weights, not promptir"):
        load_model(path, arch="promptir")
    other_width = save_weights(tiny(dim=16), tmp_path / "wide.safetensors")
    with pytest.raises(CheckpointError, match="wide.safetensors does not fit"):
        load_weights(other_width, tiny())


def test_training_state_is_separate_and_safe_to_load(tmp_path):
    model = tiny().train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(image(1, 3, 16, 16)).mean().backward()
    optimizer.step()
    path = save_training_state(
        tmp_path / "state.pt", {"optimizer": optimizer.state_dict(), "step": 1, "variant": "L"}
    )
    state = load_training_state(path)
    assert state["step"] == 1 and state["variant"] == "L"
    fresh = torch.optim.AdamW(model.parameters(), lr=1e-3)
    fresh.load_state_dict(state["optimizer"])
    assert fresh.state_dict()["state"][0]["exp_avg"].shape == next(model.parameters()).shape
    with pytest.raises(FileNotFoundError, match="nope.pt does not exist"):
        load_training_state(tmp_path / "nope.pt")


@pytest.mark.parametrize("arch", ["dynet", "promptir"])
def test_channels_last_converts_4d_weights_and_keeps_the_output(arch):
    # Module.to(memory_format=channels_last) fails on the 5-D prompt parameters.
    model = tiny(arch)
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        before = model(x)
        to_channels_last(model)
        after = model(x.contiguous(memory_format=torch.channels_last))
    convs = [p for p in model.parameters() if p.dim() == 4]
    assert convs and all(p.is_contiguous(memory_format=torch.channels_last) for p in convs)
    assert any(p.dim() == 5 for p in model.parameters())  # the prompts, left as they were
    torch.testing.assert_close(after, before, rtol=1e-4, atol=1e-5)
