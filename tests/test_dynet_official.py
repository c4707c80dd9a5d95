"""Official-checkpoint loading: names and shapes against the authors' layout, outputs against
an independent module-per-repeat implementation, and strict, clear failures."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dynet import (
    OfficialWeightsError,
    WeightsNotFoundError,
    create_model,
    load_official_weights,
    to_official_state_dict,
)
from dynet.official import UNUSED_OFFICIAL, is_unused_official
from dynet.reference import ReferenceNet

pytestmark = pytest.mark.usefixtures("one_torch_thread")


REFERENCE = Path(__file__).resolve().parents[1].parent / "shared" / "reference"
needs_reference = pytest.mark.skipif(
    not REFERENCE.is_dir(), reason=f"official layouts not found at {REFERENCE} (shared/ absent)"
)


def official_layout(arch: str) -> list[tuple[str, tuple[int, ...]]]:
    rows = []
    for line in (REFERENCE / f"{arch}_official_state_dict.tsv").read_text().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        key, shape = line.split("\t")
        rows.append((key, tuple(int(d) for d in shape.split("x"))))
    return rows


def random_official_state(arch: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """An official-named state dict with random values of a sensible scale."""
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in official_layout(arch):
        value = torch.randn(shape, generator=gen) * 0.05
        if key.endswith(("body.weight", "temperature")):  # LayerNorm scales, temperatures
            value = value + 1.0
        if key.endswith("prompt_param"):
            value = torch.rand(shape, generator=gen)
        state[key] = value
    return state


@needs_reference
@pytest.mark.parametrize(
    ("arch", "tensors", "values"), [("dynet", 182, 16_726_031), ("promptir", 548, 35_592_263)]
)
def test_state_dict_maps_one_to_one_onto_the_official_layout(arch, tensors, values):
    layout = official_layout(arch)
    assert len(layout) == tensors
    assert sum(torch.Size(s).numel() for _, s in layout) == values

    model = create_model(arch)
    ours = {k: tuple(v.shape) for k, v in to_official_state_dict(model).items()}
    used = {k: s for k, s in layout if not is_unused_official(arch, k)}
    unused = {k: s for k, s in layout if is_unused_official(arch, k)}
    assert ours == used  # every official name and shape, each exactly once
    assert len(ours) == len(model.state_dict())
    assert unused == UNUSED_OFFICIAL[arch]


@needs_reference
@pytest.mark.parametrize("variant", ["L", "S", (1, 2, 1, 3)])
def test_dynet_output_equals_reference_implementation(variant):
    official = random_official_state("dynet", seed=1)
    model = load_official_weights(create_model("dynet").eval(), official)
    repeats = {"L": (4, 6, 6, 8), "S": (2, 3, 3, 4)}.get(variant, variant)
    reference = ReferenceNet(repeats, prompts_on="encoder").eval()
    reference.load_official(official)
    x = torch.rand(1, 3, 16, 24, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        ours, theirs = model(x, variant), reference(x)
    assert (ours - x).abs().max() > 0.1  # the network does something
    assert (ours - theirs).abs().max().item() < 1e-4


@needs_reference
def test_promptir_output_equals_reference_implementation():
    official = random_official_state("promptir", seed=3)
    model = load_official_weights(create_model("promptir").eval(), official)
    reference = ReferenceNet((4, 6, 6, 8), prompts_on="decoder").eval()
    reference.load_official(official)
    x = torch.rand(1, 3, 16, 24, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        assert (model(x) - reference(x)).abs().max().item() < 1e-4


@needs_reference
def test_lightning_checkpoint_and_plain_file_load_identically(tmp_path):
    official = random_official_state("dynet", seed=5)
    ckpt = tmp_path / "dynet.ckpt"
    torch.save(
        {
            "epoch": 3,
            "global_step": 1200,
            "pytorch-lightning_version": "2.1.0",
            "state_dict": {f"net.{k}": v for k, v in official.items()},
            "hyper_parameters": {"lr": 2e-4},
        },
        ckpt,
    )
    plain = tmp_path / "dynet.pth"
    torch.save(official, plain)

    from_ckpt = load_official_weights(create_model("dynet"), ckpt)
    from_plain = load_official_weights(create_model("dynet"), plain)
    for key, value in to_official_state_dict(from_ckpt).items():
        assert torch.equal(value, official[key])
        assert torch.equal(value, to_official_state_dict(from_plain)[key])


@needs_reference
def test_missing_key_is_named():
    official = random_official_state("dynet")
    del official["decoder_level2.attn.temperature"]
    with pytest.raises(
        OfficialWeightsError, match=r"missing key 'decoder_level2.attn.temperature'"
    ):
        load_official_weights(create_model("dynet"), official)


@needs_reference
def test_unexpected_and_misshaped_keys_are_named():
    official = random_official_state("dynet")
    official["decoder_level4.attn.temperature"] = torch.ones(8, 1, 1)
    with pytest.raises(OfficialWeightsError, match=r"unexpected key 'decoder_level4"):
        load_official_weights(create_model("dynet"), official)

    official = random_official_state("dynet")
    official["latent.attn.temperature"] = torch.ones(4, 1, 1)
    with pytest.raises(
        OfficialWeightsError, match=r"'latent.attn.temperature' has shape \(4, 1, 1\)"
    ):
        load_official_weights(create_model("dynet"), official)


@needs_reference
def test_promptir_weights_do_not_load_into_dynet():
    with pytest.raises(OfficialWeightsError, match="unexpected key 'chnl_reduce1.weight'"):
        load_official_weights(create_model("dynet"), random_official_state("promptir"))


def test_missing_and_unreadable_files_give_clear_errors(tmp_path):
    missing = tmp_path / "nope.ckpt"
    with pytest.raises(WeightsNotFoundError, match="nope.ckpt does not exist"):
        load_official_weights(create_model("dynet"), missing)

    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(b"this is not a checkpoint")
    with pytest.raises(OfficialWeightsError, match="cannot read checkpoint .*garbage.ckpt"):
        load_official_weights(create_model("dynet"), garbage)


def test_pickled_code_is_refused(tmp_path):
    """weights_only=True: a checkpoint that would run arbitrary code on load is rejected."""
    evil = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {"net.x": torch.zeros(1)}, "obj": Path("/tmp")}, evil)
    with pytest.raises(OfficialWeightsError, match="cannot read checkpoint"):
        load_official_weights(create_model("dynet"), evil)


def test_not_a_state_dict_is_rejected():
    with pytest.raises(OfficialWeightsError, match="not a state dict"):
        load_official_weights(create_model("dynet"), {"a": 1})
