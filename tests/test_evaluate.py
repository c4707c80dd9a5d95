"""The evaluation protocol, the test layout, and the comparison table, end to end."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from dynet.checkpoint import save_weights
from dynet.eval_data import (
    MismatchedPairsError,
    MissingTaskDataError,
    UnreadableImageError,
    add_gaussian_noise,
    discover_task,
    resolve_tasks,
)
from dynet.eval_reports import results_dict, results_markdown
from dynet.evaluate import InferenceConfig, RunSpec, evaluate_model, run_evaluation, run_specs
from dynet.imaging import center_crop_multiple
from dynet.metrics import score_pair
from dynet.published import PUBLISHED_ROWS, TASK_COLUMNS, URBAN100_COLUMNS
from dynet.registry import create_model

# The smallest real DyNet: every level, prompt and the refinement, at width 8.
TINY = {"dim": 8, "prompt_channels": (8, 8, 16), "prompt_sizes": (8, 4, 2), "refinement_blocks": 1}
TINY_VARIANT = (1, 1, 1, 1)


def _photo(seed: int, height: int, width: int) -> np.ndarray:
    """A smooth random colour image with some texture (uint8)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width] / max(height, width)
    base = np.stack([np.sin(3 * xx + c) * np.cos(2 * yy - c) for c in range(3)], axis=-1)
    image = 0.5 + 0.35 * base + 0.05 * rng.standard_normal((height, width, 3))
    return np.round(np.clip(image, 0, 1) * 255).astype(np.uint8)


def _save(image: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path)


def make_test_layout(root: Path) -> Path:
    """A miniature of the official layout: BSD68, Rain100L and SOTS names, odd sizes."""
    test = root / "test"
    for i, (h, w) in enumerate([(35, 40), (33, 50)]):
        _save(_photo(i, h, w), test / "denoise" / "bsd68" / f"{i:03d}.png")
    for i in (1, 2):
        clean = _photo(10 + i, 37, 34)
        rain = clean.copy()
        rain[::4, :, :] = 250  # streaks
        _save(clean, test / "derain" / "Rain100L" / "target" / f"norain-{i:03d}.png")
        _save(rain, test / "derain" / "Rain100L" / "input" / f"rain-{i:03d}.png")
    for i in (1, 2):
        clean = _photo(20 + i, 40, 36)
        hazy = (0.6 * clean + 0.4 * 230).astype(np.uint8)
        _save(clean, test / "dehaze" / "target" / f"{i:04d}.png")
        _save(hazy, test / "dehaze" / "input" / f"{i:04d}_0.8_0.2.png")
    return root


@pytest.fixture()
def layout(tmp_path: Path) -> Path:
    return make_test_layout(tmp_path / "data")


@pytest.fixture(scope="module")
def tiny_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model("dynet", **TINY).eval()


# ---- the protocol ---------------------------------------------------------------------------


def test_noise_is_reproducible_and_differs_per_sigma_and_image() -> None:
    clean = _photo(0, 32, 32)
    first = add_gaussian_noise(clean, 25, "001.png")
    assert first.dtype == np.uint8
    assert np.array_equal(first, add_gaussian_noise(clean, 25, "001.png"))
    assert not np.array_equal(first, add_gaussian_noise(clean, 15, "001.png"))
    assert not np.array_equal(first, add_gaussian_noise(clean, 25, "002.png"))
    # The noise has the requested strength (up to clipping and truncation of uint8).
    residual = first.astype(float) - clean.astype(float)
    assert 20 < residual.std() < 30


def test_noise_does_not_depend_on_evaluation_order() -> None:
    images = {f"{i:03d}.png": _photo(i, 32, 32) for i in range(3)}
    forward = {n: add_gaussian_noise(im, 50, n) for n, im in images.items()}
    np.random.seed(123)  # global RNG state must not matter either
    backward = {n: add_gaussian_noise(images[n], 50, n) for n in reversed(list(images))}
    assert all(np.array_equal(forward[n], backward[n]) for n in images)


def test_center_crop_to_multiple_of_16() -> None:
    image = np.arange(35 * 50 * 3, dtype=np.uint8).reshape(35, 50, 3)
    cropped = center_crop_multiple(image)
    assert cropped.shape == (32, 48, 3)
    assert np.array_equal(cropped, image[1:33, 1:49])
    with pytest.raises(ValueError, match="smaller than 16x16"):
        center_crop_multiple(np.zeros((10, 40, 3), dtype=np.uint8))


def test_task_names_resolve_in_table_order() -> None:
    assert resolve_tasks(None) == (*TASK_COLUMNS, *URBAN100_COLUMNS)
    assert resolve_tasks(["urban100"]) == URBAN100_COLUMNS
    assert resolve_tasks(["denoise", "sots"]) == (
        "dehaze",
        "denoise_15",
        "denoise_25",
        "denoise_50",
    )
    assert resolve_tasks(["derain,denoise_50"]) == ("derain", "denoise_50")
    with pytest.raises(ValueError, match="unknown task 'deblur'"):
        resolve_tasks(["deblur"])


def test_variants_become_runs() -> None:
    assert [s.label for s in run_specs("dynet", "all")] == ["DyNet-L", "DyNet-S"]
    custom = run_specs("dynet", "1,1,2,2")[0]
    assert custom.variant == (1, 1, 2, 2) and custom.compare_to is None
    assert run_specs("promptir", "L")[0].compare_to == "PromptIR"
    with pytest.raises(ValueError, match="variant"):
        run_specs("dynet", "XL")


# ---- the layout and its errors --------------------------------------------------------------


def test_layout_pairs_by_official_names(layout: Path) -> None:
    derain = discover_task(layout, "derain")
    assert [(p.degraded.name, p.target.name) for p in derain.pairs] == [
        ("rain-001.png", "norain-001.png"),
        ("rain-002.png", "norain-002.png"),
    ]
    dehaze = discover_task(layout, "dehaze")
    assert [p.target.name for p in dehaze.pairs] == ["0001.png", "0002.png"]
    assert len(discover_task(layout / "test", "denoise_25").pairs) == 2  # ROOT/test works too


def test_missing_folder_and_mismatched_names_are_named(layout: Path) -> None:
    sots = layout / "test" / "dehaze"
    (sots / "input" / "0003_0.9_0.1.png").write_bytes(
        (sots / "input" / "0001_0.8_0.2.png").read_bytes()
    )
    with pytest.raises(MismatchedPairsError, match="0003_0.9_0.1.png"):
        discover_task(layout, "dehaze")
    with pytest.warns(UserWarning, match="0003_0.9_0.1.png"):
        data = discover_task(layout, "dehaze", skip_missing=True)
    assert len(data.pairs) == 2 and data.skipped[0]["name"] == "0003_0.9_0.1.png"

    for path in sorted((layout / "test" / "derain").rglob("*"), reverse=True):
        path.unlink() if path.is_file() else path.rmdir()
    with pytest.raises(MissingTaskDataError, match="derain/Rain100L/input"):
        discover_task(layout, "derain")


def test_unreadable_image_is_named(layout: Path, tiny_model: torch.nn.Module) -> None:
    broken = layout / "test" / "denoise" / "bsd68" / "001.png"
    broken.write_bytes(b"not a png")
    spec = RunSpec("tiny", TINY_VARIANT, None)
    with pytest.raises(UnreadableImageError, match="001.png"):
        evaluate_model(tiny_model, [spec], layout, tasks=["denoise_15"])
    with pytest.warns(UserWarning, match="001.png"):
        evaluation = evaluate_model(
            tiny_model, [spec], layout, tasks=["denoise_15"], skip_missing=True
        )
    result = evaluation.runs[0].tasks["denoise_15"]
    assert result.n_images == 1 and result.skipped[0]["name"] == "001.png"
    assert "skipped 001.png" in results_markdown(results_dict(evaluation))


# ---- end to end -----------------------------------------------------------------------------


def test_evaluation_is_deterministic_and_scores_the_clamped_output(
    layout: Path, tiny_model: torch.nn.Module
) -> None:
    spec = RunSpec("tiny", TINY_VARIANT, None)
    first = evaluate_model(tiny_model, [spec], layout, tasks=["derain", "denoise_50"])
    second = evaluate_model(tiny_model, [spec], layout, tasks=["denoise_50", "derain"])
    for task in ("derain", "denoise_50"):
        a, b = first.runs[0].tasks[task], second.runs[0].tasks[task]
        assert a.per_image == b.per_image
    # Recompute one image by hand: protocol crop, model output clamped, RGB metrics.
    target = np.asarray(Image.open(layout / "test/derain/Rain100L/target/norain-001.png"))
    rain = np.asarray(Image.open(layout / "test/derain/Rain100L/input/rain-001.png"))
    target, rain = center_crop_multiple(target), center_crop_multiple(rain)
    with torch.inference_mode():
        x = torch.tensor(rain).permute(2, 0, 1)[None].float() / 255
        out = tiny_model(x, variant=TINY_VARIANT).clamp(0, 1)[0].permute(1, 2, 0).numpy()
    expected = score_pair(target, out)
    got = first.runs[0].tasks["derain"].per_image[0]
    assert got["psnr"] == pytest.approx(expected.psnr, abs=1e-9)
    assert got["ssim_y"] == pytest.approx(expected.ssim_y, abs=1e-9)
    assert got["mode"] == "whole"


def test_tiled_inference_is_recorded_and_matches_whole_for_one_tile(
    layout: Path, tiny_model: torch.nn.Module
) -> None:
    spec = RunSpec("tiny", TINY_VARIANT, None)
    runs = {
        name: evaluate_model(tiny_model, [spec], layout, tasks=["denoise_25"], inference=inference)
        .runs[0]
        .tasks["denoise_25"]
        for name, inference in {
            "whole": InferenceConfig(),
            "one tile": InferenceConfig(tile=64, overlap=8),
            "tiles": InferenceConfig(tile=16, overlap=4),
        }.items()
    }
    assert runs["whole"].modes() == {"whole": 2}
    assert runs["tiles"].modes() == {"tiled 16/4": 2}
    for whole, one_tile in zip(runs["whole"].per_image, runs["one tile"].per_image, strict=True):
        assert one_tile["psnr"] == pytest.approx(whole["psnr"], abs=1e-4)
    # Real tiling changes the output (attention sees less context) but stays a restoration.
    assert runs["tiles"].mean("psnr") != runs["whole"].mean("psnr")
    assert np.isfinite(runs["tiles"].mean("ssim"))
    # Images above the whole-image limit are tiled automatically.
    auto = (
        evaluate_model(
            tiny_model,
            [spec],
            layout,
            tasks=["denoise_25"],
            inference=InferenceConfig(max_whole_pixels=32 * 32, fallback_tile=32, overlap=8),
        )
        .runs[0]
        .tasks["denoise_25"]
    )
    assert auto.modes() == {"whole": 1, "tiled 32/8": 1}


@pytest.mark.parametrize(
    ("variant", "labels"),
    [
        ("1,1,1,1", ["DyNet-(1,1,1,1)"]),
        pytest.param("all", ["DyNet-L", "DyNet-S"], marks=pytest.mark.slow),
    ],
)
def test_cli_writes_the_full_table(
    variant: str, labels: list[str], layout: Path, tiny_model: torch.nn.Module, tmp_path: Path
) -> None:
    from flows.cli.app import app

    weights = save_weights(tiny_model, tmp_path / "tiny.safetensors")
    out = tmp_path / "eval"
    args = ["evaluate", "--weights", str(weights), "--data", str(layout), "--variant", variant]
    args += ["--out", str(out), "--save-images", "--device", "cpu"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    results = json.loads((out / "results.json").read_text())
    assert [run["label"] for run in results["runs"]] == labels
    published = {row["method"]: row for row in results["published"]}
    for run in results["runs"]:
        assert set(run["tasks"]) == set(TASK_COLUMNS)
        for task, entry in run["tasks"].items():
            scores = [entry[k] for k in ("psnr", "ssim", "psnr_y", "ssim_y")]
            assert np.isfinite(scores).all() and 0 < entry["ssim"] <= 1
            if run["label"] in published:  # DyNet-L / DyNet-S: deltas to their published row
                reference = published[run["label"]]["tasks"][task]
                assert entry["delta_psnr"] == pytest.approx(entry["psnr"] - reference["psnr"])
                assert entry["delta_ssim"] == pytest.approx(entry["ssim"] - reference["ssim"])
            else:
                assert "delta_psnr" not in entry
        assert run["average"]["psnr"] == pytest.approx(
            np.mean([run["tasks"][k]["psnr"] for k in TASK_COLUMNS])
        )
        assert run["ms_per_megapixel"] > 0
        complexity = run["complexity"]
        assert complexity["size"] == 224 and complexity["total_macs"] > 0
        assert complexity["params_total"] == sum(p.numel() for p in tiny_model.parameters())
    if len(labels) == 2:
        l_macs, s_macs = (run["complexity"]["total_macs"] for run in results["runs"])
        assert s_macs < l_macs

    markdown = (out / "results.md").read_text()
    assert markdown in result.output  # the table is printed too
    for row in PUBLISHED_ROWS:
        assert f"| {row.method} (published, repo README) |" in markdown
    # the revised paper's DyNet-L average sits beside the repository's row, labelled
    assert "| DyNet-L (published, arXiv 2404.02154v2) | — | — | — | — | — | 32.74 / — |" in markdown
    assert results["published"][-1]["other_revisions"][0]["average_psnr"] == 32.74
    assert markdown.count("| Degraded input (no restoration) |") == 1
    assert "| Degraded input |" in markdown  # and in the Y-channel table
    for label in labels:
        assert f"| **{label} (this run)** |" in markdown
        assert (f"| Δ vs {label} (published) |" in markdown) == (label in published)
    assert "Y channel" in markdown and "ms per megapixel" in markdown

    with open(out / "results.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    ours = [r for r in rows if r["source"] == "this run"]
    assert len(ours) == len(labels) * (len(TASK_COLUMNS) + 1)
    assert len([r for r in rows if r["source"] == "published"]) == 4 * (len(TASK_COLUMNS) + 1)
    assert len([r for r in rows if r["source"] == "input"]) == len(TASK_COLUMNS) + 1
    assert all(r["inference"] == "whole=2" for r in ours if r["task"] == "denoise_15")

    slug = labels[-1].replace("(", "").replace(")", "").replace(",", "_")
    assert len(list((out / "images" / slug / "dehaze").glob("*.png"))) == 2
    grid = np.asarray(Image.open(out / "grids" / f"{slug}_denoise_15.png"))
    assert grid.shape == (2 * 32, 3 * 48, 3)  # input | output | target, one row per image


def test_promptir_weights_are_compared_with_the_promptir_row(layout: Path, tmp_path: Path) -> None:
    torch.manual_seed(0)
    tiny = {**TINY, "blocks": (1, 1, 1, 1)}
    weights = save_weights(create_model("promptir", **tiny), tmp_path / "p.safetensors")
    results, _ = run_evaluation(
        weights, layout, variant="all", tasks=["derain"], out_dir=tmp_path / "o", device="cpu"
    )
    (run,) = results["runs"]
    assert run["label"] == "PromptIR" and run["compare_to"] == "PromptIR"
    assert run["tasks"]["derain"]["delta_psnr"] == pytest.approx(
        run["tasks"]["derain"]["psnr"] - 36.37
    )
    assert run["complexity"]["arch"] == "promptir"


def test_skip_missing_shows_the_gap(
    layout: Path, tiny_model: torch.nn.Module, tmp_path: Path
) -> None:
    for path in sorted((layout / "test" / "dehaze").rglob("*"), reverse=True):
        path.unlink() if path.is_file() else path.rmdir()
    (layout / "test" / "dehaze").rmdir()
    weights = save_weights(tiny_model, tmp_path / "tiny.safetensors")
    with pytest.raises(MissingTaskDataError, match="dehaze"):
        run_evaluation(
            weights, layout, variant="1,1,1,1", out_dir=tmp_path / "a", complexity_size=0
        )
    with pytest.warns(UserWarning, match="dehaze"):
        results, paths = run_evaluation(
            weights,
            layout,
            variant="1,1,1,1",
            tasks=["dehaze", "derain"],
            out_dir=tmp_path / "b",
            skip_missing=True,
            complexity_size=0,
        )
    assert results["missing_tasks"].keys() == {"dehaze"}
    assert results["runs"][0]["average"]["psnr"] is None
    markdown = Path(paths["md"]).read_text()
    assert "| missing |" in markdown and "**missing**, skipped" in markdown


@pytest.mark.slow  # the official layout needs the paper's widths: 16.6 M parameters
def test_official_lightning_checkpoint_is_evaluated(layout: Path, tmp_path: Path) -> None:
    """An official Lightning checkpoint (keys behind ``net.``) scores like the network itself."""
    from dynet.official import to_official_state_dict

    torch.manual_seed(0)
    model = create_model("dynet").eval()  # the paper's widths: the official layout
    state = {f"net.{k}": v for k, v in to_official_state_dict(model).items()}
    checkpoint = tmp_path / "official.ckpt"
    torch.save({"state_dict": state, "epoch": 1}, checkpoint)
    results, _ = run_evaluation(
        checkpoint,
        layout,
        arch="dynet",
        variant="1,1,1,1",
        tasks=["derain"],
        out_dir=tmp_path / "o",
        device="cpu",
        complexity_size=0,
    )
    direct = evaluate_model(model, run_specs("dynet", "1,1,1,1"), layout, tasks=["derain"])
    assert (
        results["runs"][0]["tasks"]["derain"]["images"] == direct.runs[0].tasks["derain"].per_image
    )


def test_degraded_input_row_is_the_inputs_own_psnr(layout: Path, tiny_model: torch.nn.Module):
    """The input row equals PSNR/SSIM of the degraded inputs, computed here with scikit-image
    straight from the files (and the protocol's noise), independently of the model."""
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    evaluation = evaluate_model(
        tiny_model, [RunSpec("t", TINY_VARIANT, None)], layout, tasks=["derain", "denoise_25"]
    )
    results = results_dict(evaluation)
    row = results["input"]
    assert row["label"] == "Degraded input" and row["average"]["psnr"] is None  # 2 of 5 tasks

    def scores(pairs: list[tuple[np.ndarray, np.ndarray]]) -> tuple[float, float]:
        psnr = [peak_signal_noise_ratio(c, d, data_range=255) for d, c in pairs]
        ssim = [structural_similarity(c, d, data_range=255, channel_axis=2) for d, c in pairs]
        return float(np.mean(psnr)), float(np.mean(ssim))

    folder = layout / "test" / "derain" / "Rain100L"
    rain = []
    for i in (1, 2):
        degraded = np.asarray(Image.open(folder / "input" / f"rain-{i:03d}.png"))
        clean = np.asarray(Image.open(folder / "target" / f"norain-{i:03d}.png"))
        rain.append((center_crop_multiple(degraded), center_crop_multiple(clean)))
    noisy = []
    for path in sorted((layout / "test" / "denoise" / "bsd68").iterdir()):
        clean = center_crop_multiple(np.asarray(Image.open(path)))
        noisy.append((add_gaussian_noise(clean, 25, path.name), clean))
    for task, pairs in (("derain", rain), ("denoise_25", noisy)):
        psnr, ssim = scores(pairs)
        assert row["tasks"][task]["psnr"] == pytest.approx(psnr, abs=1e-6)
        assert row["tasks"][task]["ssim"] == pytest.approx(ssim, abs=1e-3)
    assert 18 < row["tasks"]["denoise_25"]["psnr"] < 23  # sigma 25 noise: about 20 dB
    table = "\n".join(results_markdown(results).splitlines())
    assert "| Degraded input (no restoration) | not run | " in table


def test_urban100_is_discovered_and_scored_when_present(
    layout: Path, tiny_model: torch.nn.Module
) -> None:
    spec = [RunSpec("t", TINY_VARIANT, None)]
    without = results_dict(evaluate_model(tiny_model, spec, layout))
    assert not set(URBAN100_COLUMNS) & set(without["runs"][0]["tasks"])  # absent: not required
    for i, (h, w) in enumerate([(40, 36), (50, 34)]):
        _save(_photo(40 + i, h, w), layout / "test" / "denoise" / "urban100" / f"img_{i:03d}.png")
    results = results_dict(evaluate_model(tiny_model, spec, layout))
    run = results["runs"][0]
    assert set(run["tasks"]) == set(TASK_COLUMNS) | set(URBAN100_COLUMNS)
    for key, sigma in zip(URBAN100_COLUMNS, (15, 25, 50), strict=True):
        assert results["datasets"][key]["dataset"] == "Urban100"
        assert results["datasets"][key]["sigma"] == sigma and run["tasks"][key]["n_images"] == 2
        assert np.isfinite(run["tasks"][key]["psnr"])
    input_psnr = [results["input"]["tasks"][k]["psnr"] for k in URBAN100_COLUMNS]
    assert input_psnr == sorted(input_psnr, reverse=True)  # more noise, lower PSNR
    # the average stays the paper's five columns; Urban100 gets its own columns after it
    assert run["average"]["psnr"] == pytest.approx(
        np.mean([run["tasks"][k]["psnr"] for k in TASK_COLUMNS])
    )
    header = results_markdown(results).splitlines()[6]
    assert header.endswith("| Average | Urban100 σ=15 | Urban100 σ=25 | Urban100 σ=50 |")
