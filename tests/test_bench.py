"""The benchmarks run: each ``python -m bench.NAME`` with its tiniest arguments prints exactly
one JSON object with the shared ``machine`` and ``versions`` objects and sane figures. No time
is asserted anywhere (performance lives in the printed figures, not in tests)."""

from __future__ import annotations

import json

import pytest

from bench.__main__ import RUNS, Run, execute
from tests.bench_runner import REPO, bench, check_common, run_module


def test_dedupe_search_finds_every_planted_pair():
    result = bench("dedupe", "--n", "20000", "--d", "4", "--queries", "50")
    assert result["args"]["n"] == 20000 and result["n"] == 20000
    assert result["recall"] == 1.0 and result["precision"] == 1.0
    assert result["recall_true_pairs"] > 0 and result["pairs"] > 0
    assert result["m"] >= result["d"] + 1 and result["tables"] >= 1
    assert result["seconds"] >= 0 and result["cpu_seconds"] >= 0 and result["peak_rss_mb"] > 0


def test_dedupe_stage_keeps_at_most_one_of_each_pair():
    result = bench("dedupe", "--n", "20000", "--d", "4", "--queries", "50", "--stage")
    assert result["args"]["stage"] is True
    assert result["recall"] == 1.0 and result["recall_true_pairs"] > 0
    assert 0 < result["rejects"] < result["n"]


def test_curation_filters_rates():
    result = bench("curation_filters", "--n", "1", "--rounds", "1")
    for path in ("floor", "filter", "naive", "naive_resize"):
        assert result[f"{path}_images_per_s"] > 0 and result["cpu_images_per_s"][path] > 0
    assert result["filter_cost_vs_floor"] > 0 and result["filter_speedup_vs_naive"] > 0
    assert isinstance(result["target_cost_le_1_5"], bool)
    assert 0 <= result["accepted_share"] <= 1 and result["mean_file_mb"] > 0.5


def test_curation_accuracy_offline_judges_real_images():
    """scikit-image's real photographs are kept and its graphics rejected, by the real gate
    (IQA included: 7 images), with one row per image carrying its measurements."""
    result = bench("curation_accuracy", "--offline")
    assert result["photos"] == 5 and result["graphics"] == 2
    assert result["photo_keep_rate"] == 1.0, result["photos_rejected"]
    assert result["graphic_reject_rate"] == 1.0, result["graphics_kept"]
    assert result["hard_kind_violations"] == []
    rows = {row["name"]: row for row in result["rows"]}
    assert rows["coffee"]["decision"] == "kept" and rows["coffee"]["scores"]["niqe"] > 0
    assert rows["coffee"]["measurements"]["focus_sharpness"] > 0.6
    assert rows["colorwheel"]["reason"] == "graphic"
    assert result["inputs_under_default_min_side"] == 7


def test_curation_accuracy_refuses_reserved_packages(tmp_path):
    labels = tmp_path / "labels.tsv"
    labels.write_text("package\tpath\tlabel\nmate-backgrounds\tusr/share/x.jpg\tphoto\n")
    proc = run_module(["bench.curation_accuracy", "--labels", str(labels), "--no-iqa"])
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"bench.curation_accuracy: error: {labels}: package mate-backgrounds is reserved for "
        "independent checks"
    ]


def test_fetch_accepts_every_image():
    result = bench("fetch", "--n", "40", "--distinct", "4", "--repeats", "1")
    assert result["accepted"] == 40 and result["server"] in ("nginx", "python-threaded")
    assert result["mb_per_s"] > 0 and result["floor_mb_per_s"] > 0
    assert result["ratio_to_floor"] > 0 and result["hash_only_ratio_to_floor"] > 0
    assert set(result["cpu_s_per_gb"]) == {"floor", "shards", "hash_only"}
    assert isinstance(result["target_ratio_ge_0_5"], bool)
    assert "serve" not in result["args"]  # the hidden child flags are not arguments


def test_shards_writers():
    result = bench("shards", "--n", "20", "--size", "100000")
    for writer in ("raw_fsync", "webdataset", "ours"):
        assert result[writer]["mb_per_s"] > 0 and result[writer]["cpu_s_per_gb"] > 0
    assert result["cpu_ratio_webdataset_to_ours"] > 0
    assert result["versions"]["webdataset"]


def test_bad_arguments_are_one_clear_error():
    proc = run_module(["bench.dedupe", "--n", "10"])
    assert proc.returncode == 2 and proc.stdout == ""
    assert "--n must be at least --queries" in proc.stderr


def test_build_without_cuda_is_one_clear_error():
    proc = run_module(["bench.build", "--device", "cuda", "--offline"])
    if proc.returncode == 0:  # pragma: no cover - a machine with CUDA runs the benchmark
        pytest.skip("CUDA is available here")
    assert proc.returncode == 2 and proc.stdout == ""
    assert "no CUDA device" in proc.stderr.strip().splitlines()[-1]


@pytest.mark.slow
def test_build_reports_cpu_per_candidate_by_stage_after_a_warm_up():
    result = bench("build", "--offline", "--generated", "1", "--modes", "folder", "--warmup", "2")
    assert result["warmup"]["files"] == 2 and result["warmup"]["cpu_s"] > 0
    run = result["modes"]["folder"]
    assert run["candidates"] == result["inputs"]["files"] and run["kept"] > 0
    assert result["cpu_s_per_candidate"] == run["cpu_s_per_candidate"] > 0
    assert {"probe_decode", "filters", "hashes", "iqa"} <= set(run["stage_cpu_s"])
    assert isinstance(result["target_le_0_1"], bool)


@pytest.mark.slow
def test_quality_seconds_per_image():
    result = bench("quality", "--images", "1", "--repeats", "1", "--threads", "1")
    assert set(result["seconds_per_image"]) == {"niqe", "brisque", "piqe"}
    assert all(v > 0 for v in result["seconds_per_image"].values())
    assert result["twelve_mp"]["original_size"] == [4000, 3000]
    assert max(result["twelve_mp"]["proxy_size"]) == 1024
    assert result["cost_ratio_12mp_vs_1mp"] > 0
    assert result["versions"]["pyiqa"]


@pytest.mark.slow
def test_model_figures():
    result = bench(
        "model", "--models", "dynet-L,dynet-S", "--size", "16", "--batch", "1",
        "--repeats", "1", "--threads", "1",
    )  # fmt: skip
    models = result["models"]
    assert set(models) == {"dynet-L", "dynet-S"}
    for figures in models.values():
        assert figures["forward_min_ms"] > 0 and figures["forward_backward_min_ms"] > 0
        assert figures["peak_rss_mb"] > 0 and figures["params_held"] > 0
    summary = result["summary"]
    assert 0 < summary["mac_ratio_s_over_l"] < 1
    assert summary["time_ratio_s_over_l_forward"] > 0
    assert isinstance(summary["time_ratio_within_10pct_forward_backward"], bool)


@pytest.mark.slow
def test_train_loader_and_steps():
    result = bench(
        "train", "--steps", "1", "--patches", "4", "--loader-batches", "2", "--batch", "1",
        "--size", "32",
    )  # fmt: skip
    assert result["loader_patches_per_s"] > 0 and result["loader_patches_per_s_cpu"] > 0
    assert set(result["step_patches_per_s"]) == {"L", "S", "mix"}
    assert all(v > 0 for v in result["step_cpu_seconds"].values())
    assert sum(result["mix_draws"].values()) == 2
    assert result["loader_over_step_L"] > 0 and result["mix_over_drawn_mean"] > 0
    assert all(isinstance(v, bool) for v in result["targets"].values())


@pytest.mark.slow
def test_learning_reports_input_model_and_gain():
    result = bench(
        "learning", "--pretrain-steps", "1", "--finetune-steps", "1", "--patches", "8",
        "--train-images", "9", "--test-images", "6", "--crop", "32", "--batch", "2",
        timeout=900,
    )  # fmt: skip
    tasks = {"denoise_15", "denoise_25", "denoise_50", "derain", "dehaze"}
    assert set(result["input_psnr"]) == tasks and set(result["gain_db"]) == {
        "denoise_25", "derain", "dehaze",
    }  # fmt: skip
    pre = result["model_psnr"]["pretrained_L"]
    for task, gain in result["gain_db"].items():
        assert gain == pytest.approx(pre[task] - result["input_psnr"][task], abs=0.02)
    assert 18 < result["input_psnr"]["denoise_25"] < 23
    assert set(result["pretrained_minus_scratch_db"]) == tasks
    assert all(isinstance(v, bool) for v in result["targets"].values())


def test_runner_only_prints_one_line_perrun_module():
    proc = run_module(["bench", "--only", "shards"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1
    result = json.loads(lines[0])
    assert result["run"] == "shards" and "error" not in result
    check_common(result, "shards")
    assert result["args"]["n"] == 200  # the runner's quick setting
    assert "1 run(s), 0 failed" in proc.stderr


def test_runner_rejects_unknown_names_and_reports_failures():
    proc = run_module(["bench", "--only", "shards,nope"])
    assert proc.returncode == 2 and "unknown benchmark(s) nope" in proc.stderr
    failed = execute(Run("broken", "dedupe", ("--n", "1"), ()), full=False, timeout=120)
    assert failed["run"] == "broken" and "exited with status 2" in failed["error"]


def test_runner_covers_every_benchmark_module():
    modules = {p.stem for p in (REPO / "bench").glob("*.py")} - {"__init__", "__main__", "common"}
    assert {run.module for run in RUNS} == modules
    readme = (REPO / "bench" / "README.md").read_text()
    for run in RUNS:
        assert f"bench.{run.module}" in readme
