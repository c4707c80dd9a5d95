"""Tiled restoration and the `mird restore` command."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import typer
from PIL import Image
from typer.testing import CliRunner

from dynet import WeightsNotFoundError, create_model, save_weights
from dynet.restore import ImageInputError, ImageNotFoundError, restore_images
from dynet.tiling import TilingError, blend_ramp, restore_tensor, tile_starts
from flows.cli.restore import register

REPO = Path(__file__).resolve().parents[1]
TINY = {"dim": 8, "prompt_channels": (8, 8, 16), "prompt_sizes": (8, 4, 2)}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


class LocalNet(torch.nn.Module):
    """A pointwise network (1x1 conv), for which tiled and whole-image outputs must agree
    exactly; records the input shapes it sees."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 3, 1)
        self.seen: list[tuple[int, ...]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(tuple(x.shape))
        return self.conv(x)


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    model = create_model("dynet", **TINY)
    return save_weights(model, tmp_path_factory.mktemp("w") / "tiny.safetensors")


def write_image(path: Path, w: int, h: int, seed: int = 0) -> Path:
    pixels = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


@pytest.mark.parametrize(("size", "tile", "overlap"), [(50, 16, 4), (16, 16, 4), (33, 24, 12)])
def test_tiles_cover_the_image(size, tile, overlap):
    starts = tile_starts(size, tile, overlap)
    covered = torch.zeros(size, dtype=torch.bool)
    for s in starts:
        covered[s : s + min(tile, size)] = True
        assert 0 <= s <= max(size - tile, 0)
    assert covered.all()
    assert (blend_ramp(min(tile, size), overlap) > 0).all()


def test_tiled_equals_whole_for_a_local_network():
    net = LocalNet()
    x = torch.rand(2, 3, 50, 37)
    with torch.no_grad():
        whole = net(x)
    net.seen.clear()
    calls = []
    tiled = restore_tensor(net, x, tile=16, overlap=4, progress=lambda d, t: calls.append((d, t)))
    assert torch.allclose(tiled, whole, atol=1e-6)
    assert max(s[-2] for s in net.seen) <= 16 and max(s[-1] for s in net.seen) <= 16
    assert calls[-1][0] == calls[-1][1] == len(net.seen)  # one progress step per tile


def test_tiled_dynet_uses_the_variant_and_matches_when_one_tile(weights):
    from dynet import load_weights

    model = load_weights(weights).eval()
    x = torch.rand(3, 24, 40)
    with torch.no_grad():
        whole = model(x[None], "S")[0]
    assert torch.allclose(restore_tensor(model, x, "S", tile=64), whole, atol=1e-6)
    tiled = restore_tensor(model, x, (1, 1, 1, 1), tile=16, overlap=8, tiles_per_batch=3)
    assert tiled.shape == x.shape and torch.isfinite(tiled).all()


@pytest.mark.parametrize(("tile", "overlap"), [(12, 2), (0, 0), (16, 9), (16, -1)])
def test_bad_tile_settings(tile, overlap):
    with pytest.raises(TilingError):
        restore_tensor(LocalNet(), torch.rand(3, 16, 16), tile=tile, overlap=overlap)


def cli() -> typer.Typer:
    app = typer.Typer()
    register(app)
    app.command("noop")(lambda: None)  # keep `restore` a named sub-command
    return app


def test_restore_command_writes_restored_images(tmp_path, weights):
    first = write_image(tmp_path / "first.jpg", 45, 30, seed=1)
    second = write_image(tmp_path / "second.png", 16, 16, seed=2)
    out = tmp_path / "out"
    args = ["restore", str(first), str(second), "--weights", str(weights), "--out", str(out)]
    options = ["--variant", "S", "--tile", "24", "--overlap", "8", "--tiles-per-batch", "2"]
    result = CliRunner().invoke(cli(), [*args, *options])
    assert result.exit_code == 0, result.output
    assert "restored 2 image(s)" in result.output
    assert Image.open(out / "first.png").size == (45, 30)
    assert Image.open(out / "second.png").size == (16, 16)

    # The CLI's pixels are the clamped, rounded output of the tiled restoration.
    from dynet import load_weights

    rgb = np.asarray(Image.open(first).convert("RGB"), dtype=np.float32) / 255.0
    x = torch.from_numpy(rgb).permute(2, 0, 1)
    expected = restore_tensor(load_weights(weights), x, "S", tile=24, overlap=8, tiles_per_batch=2)
    expected = (expected.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    assert np.array_equal(np.asarray(Image.open(out / "first.png")), expected)


def test_custom_variant_from_the_command_line(tmp_path, weights):
    img = write_image(tmp_path / "a.png", 16, 24)
    written = restore_images([img], weights, tmp_path / "o", variant="1,1,2,1")
    assert written == [tmp_path / "o" / "a.png"]


def test_clear_errors(tmp_path, weights):
    good = write_image(tmp_path / "good.png", 16, 16)
    broken = tmp_path / "broken.png"
    broken.write_text("not an image")
    with pytest.raises(WeightsNotFoundError, match="absent.safetensors does not exist"):
        restore_images([good], tmp_path / "absent.safetensors", tmp_path / "o")
    with pytest.raises(ImageInputError, match="cannot read image .*broken.png"):
        restore_images([good, broken], weights, tmp_path / "o")
    with pytest.raises(ImageNotFoundError, match="ghost.png does not exist"):
        restore_images([tmp_path / "ghost.png"], weights, tmp_path / "o")
    with pytest.raises(ValueError, match="--variant 'x,y'"):
        restore_images([good], weights, tmp_path / "o", variant="x,y")
    with pytest.raises(ValueError, match="unknown DyNet variant 'XL'"):
        restore_images([good], weights, tmp_path / "o", variant="XL")
    other = tmp_path / "sub"
    other.mkdir()
    twin = write_image(other / "good.jpg", 16, 16)
    with pytest.raises(ValueError, match="would both be written"):
        restore_images([good, twin], weights, tmp_path / "o")
    assert not (tmp_path / "o").exists()  # nothing written before the inputs were checked


def test_mird_prints_one_line_error(tmp_path):
    img = write_image(tmp_path / "a.png", 16, 16)
    missing = tmp_path / "none.safetensors"
    proc = subprocess.run(
        [sys.executable, "-m", "flows.cli", "restore", str(img), "-w", str(missing), "-o", "o"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mird: error: weights file")
    assert str(missing) in lines[0]
