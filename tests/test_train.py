"""Pre-training and fine-tuning on tiny configs (CPU): learning, resume, DDP, data errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from dynet.checkpoint import load_weights, save_weights
from dynet.data import (
    DENOISE_SIGMAS,
    AllInOneDataset,
    GlobalBatchSampler,
    MissingTrainingFileError,
    PatchStream,
    TrainingDataError,
    UnreadableImageError,
    discover_items,
)
from dynet.degrade import DegradationRecipe
from dynet.registry import create_model
from dynet.train import TrainingError, train
from dynet.train_config import ConfigError, FinetuneConfig, build_config, load_config
from dynet.train_state import CheckpointManager
from flows.demo.data import encode, photo_like
from storage.shards import Sample, ShardWriter

REPO = Path(__file__).resolve().parents[1]
TINY_NET = {"dim": 8, "prompt_channels": [8, 8, 16], "prompt_sizes": [8, 4, 2]}
TINY_VARIANTS = [
    {"variant": [2, 1, 1, 1], "probability": 0.5},
    {"variant": [1, 1, 1, 1], "probability": 0.5},
]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}


# --------------------------------------------------------------------------- generated data


def make_patch_shards(folder: Path, shards: int = 3, per_shard: int = 6, size: int = 48) -> list:
    with ShardWriter(str(folder), max_count=per_shard) as writer:
        for i in range(shards * per_shard):
            data = encode(photo_like(size, size, seed=i), "PNG")
            writer.write(Sample(f"patch-{i:04d}", data, "png", {"i": i}))
    return [shard.uri for shard in writer.written]


def write_image(path: Path, seed: int, size: tuple[int, int] = (40, 36), fmt: str = "PNG") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(encode(photo_like(*size, seed=seed), fmt))


def make_official_layout(root: Path) -> Path:
    """A miniature ``data/Train``: Denoise (+ list), Derain/{rainy,gt}, Dehaze (RESIDE names)."""
    train_dir = root / "Train"
    names = []
    for i in range(4):
        write_image(train_dir / "Denoise" / f"clean_{i}.png", seed=i)
        names.append(f"clean_{i}.png")
    (root / "denoise.txt").write_text("\n".join(names) + "\n")
    for i in range(1, 4):
        write_image(train_dir / "Derain" / "gt" / f"norain-{i}.png", seed=10 + i)
        write_image(train_dir / "Derain" / "rainy" / f"rain-{i}.png", seed=20 + i)
    for i, (beta, a) in enumerate([("0.8", "0.2"), ("0.9", "0.1")], start=1):
        write_image(train_dir / "Dehaze" / "original" / f"{i:04d}.jpg", 30 + i, fmt="JPEG")
        write_image(
            train_dir / "Dehaze" / "synthetic" / "part1" / f"{i:04d}_{beta}_{a}.jpg",
            40 + i,
            fmt="JPEG",
        )
    return train_dir


def pretrain_config(tmp: Path, shards: list[str], **top: Any) -> dict[str, Any]:
    config = {
        "stage": "pretrain",
        "seed": 7,
        "steps": 20,
        "batch_size": 2,
        "crop": 32,
        "model": {"options": TINY_NET, "variants": TINY_VARIANTS},
        "optim": {"lr": 2e-3, "warmup_steps": 2, "ema_decay": 0.9},
        "data": {"shards": shards, "workers": 0, "shuffle_buffer": 4},
        "checkpoint": {"dir": str(tmp / "ckpt"), "every_steps": 2, "keep_last": 2},
        "log": {"dir": str(tmp / "log"), "every_steps": 1, "progress": False},
        "runtime": {"threads": 1},
    }
    for key, value in top.items():
        if isinstance(value, dict):
            config[key] = {**config.get(key, {}), **value}
        else:
            config[key] = value
    return config


def finetune_config(tmp: Path, train_dir: Path, **top: Any) -> dict[str, Any]:
    config = pretrain_config(tmp, [], **top)
    del config["data"]
    config.update(stage="finetune", crop=16, batch_size=4, steps=top.get("steps", 4))
    config["data"] = {
        "root": str(train_dir),
        "denoise_list": str(train_dir.parent / "denoise.txt"),
        "repeats": {"derain": 2},
        "workers": 0,
    }
    config["optim"] = {"lr": 1e-3, "ema_decay": None}
    config["model"] = {"options": TINY_NET, "variants": TINY_VARIANTS, "variant_mode": "all"}
    return config


def losses_by_step(log_dir: Path) -> dict[int, float]:
    """The last logged loss of every step (a resumed run re-logs the steps after its restart)."""
    rows = [json.loads(line) for line in (log_dir / "metrics.jsonl").read_text().splitlines()]
    return {row["step"]: row["loss"] for row in rows}


def run_cli(config: dict[str, Any], path: Path, *extra: str, **kw: Any) -> subprocess.Popen:
    path.write_text(yaml.safe_dump(config))
    command = [sys.executable, "-m", "dynet.train", "--config", str(path), *extra]
    return subprocess.Popen(
        command, cwd=REPO, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw
    )


def finish(process: subprocess.Popen, timeout: float = 240) -> dict[str, Any]:
    out, err = process.communicate(timeout=timeout)
    assert process.returncode == 0, err.decode()[-2000:]
    return json.loads(out.decode().strip().splitlines()[-1])


# --------------------------------------------------------------------------- learning


def test_twenty_pretraining_steps_lower_the_loss(tmp_path: Path) -> None:
    shards = make_patch_shards(tmp_path / "shards")
    summary = train(build_config(pretrain_config(tmp_path, shards)))
    assert summary["step"] == 20 and summary["skipped_steps"] == 0
    losses = losses_by_step(tmp_path / "log")
    assert sorted(losses) == list(range(1, 21))
    first, last = [losses[s] for s in range(1, 6)], [losses[s] for s in range(16, 21)]
    assert sum(last) / 5 < 0.8 * sum(first) / 5
    rows = [json.loads(x) for x in (tmp_path / "log" / "metrics.jsonl").read_text().splitlines()]
    assert {r["variants"] for r in rows} == {"2x1x1x1", "1x1x1x1"}  # both drawn
    assert all(r["patches_per_s"] > 0 and 0 <= r["data_wait_share"] <= 1 for r in rows)
    header = (tmp_path / "log" / "metrics.csv").read_text().splitlines()[0].split(",")
    assert header[:4] == ["step", "loss", "loss_2x1x1x1", "loss_1x1x1x1"]
    # one checkpoint holds everything; the last two are kept; weights serve every variant
    manager = CheckpointManager(str(tmp_path / "ckpt"), keep_last=2)
    assert manager.steps() == [18, 20]
    state = manager.load(20)
    assert {"model", "ema", "optimizer", "variant_rng", "ranks"} <= set(state)
    model = load_weights(summary["weights"])
    x = torch.rand(1, 3, 16, 16)
    assert model(x, variant=(2, 1, 1, 1)).shape == model(x, variant=(1, 1, 1, 1)).shape


def test_both_variants_get_gradients_through_the_shared_blocks(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = create_model("dynet", **TINY_NET)
    x, y = torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16)
    grads = {}
    for variant in ((2, 1, 1, 1), (1, 1, 1, 1)):
        model.zero_grad()
        torch.nn.functional.l1_loss(model(x, variant=variant), y).backward()
        grads[variant] = {n: p.grad.clone() for n, p in model.named_parameters()}
    shared = [n for n in grads[(1, 1, 1, 1)] if n.startswith(("enc1.", "latent.", "dec1."))]
    assert len(shared) > 20
    for name in shared:
        light, deep = grads[(1, 1, 1, 1)][name], grads[(2, 1, 1, 1)][name]
        assert light.abs().sum() > 0 and deep.abs().sum() > 0, name
        assert not torch.allclose(light, deep), name  # a deeper pass, a different gradient
    # in the loop, "all" mode trains both variants each step
    train_dir = make_official_layout(tmp_path / "data")
    train(build_config(finetune_config(tmp_path, train_dir, steps=2)))
    row = json.loads((tmp_path / "log" / "metrics.jsonl").read_text().splitlines()[-1])
    assert row["variants"] == "2x1x1x1+1x1x1x1"
    assert row["loss"] == pytest.approx(row["loss_2x1x1x1"] + row["loss_1x1x1x1"])


# --------------------------------------------------------------------------- never lose work


def test_resume_from_a_checkpoint_continues_the_same_trajectory(tmp_path: Path) -> None:
    """In-process and fast; the kill -9 test below does the same across a hard crash."""
    shards = make_patch_shards(tmp_path / "shards")
    optim = {"lr": 2e-3, "warmup_steps": 2, "ema_decay": 0.9, "decay_steps": 8}
    straight = pretrain_config(tmp_path / "a", shards, steps=8, optim=optim)
    train(build_config(straight))
    expected = losses_by_step(tmp_path / "a" / "log")
    first = pretrain_config(tmp_path / "b", shards, steps=5, optim=optim)
    train(build_config(first))  # checkpoints at 4 (kept) and 5 (the end)
    (tmp_path / "b" / "ckpt" / "step-000000005.pt").unlink()
    summary = train(build_config({**first, "steps": 8}))
    assert summary["resumed_from"] == 4
    resumed = losses_by_step(tmp_path / "b" / "log")
    for step in expected:
        assert resumed[step] == pytest.approx(expected[step], abs=1e-6), step


@pytest.mark.slow
def test_kill_9_then_resume_equals_the_uninterrupted_run(tmp_path: Path) -> None:
    shards = make_patch_shards(tmp_path / "shards")
    data = {"shards": shards, "workers": 2, "shuffle_buffer": 4}
    steps = 10
    straight = pretrain_config(tmp_path / "a", shards, steps=steps, data=data)
    finish(run_cli(straight, tmp_path / "a.yaml"))
    expected = losses_by_step(tmp_path / "a" / "log")

    broken = pretrain_config(tmp_path / "b", shards, steps=steps, data=data)
    process = run_cli(broken, tmp_path / "b.yaml")
    marker = tmp_path / "b" / "ckpt" / "step-000000004.pt"
    deadline = time.monotonic() + 180
    while not marker.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert marker.exists(), "no checkpoint before the deadline"
    process.send_signal(signal.SIGKILL)
    process.wait()
    killed_at = max(losses_by_step(tmp_path / "b" / "log"))
    assert killed_at < steps, "the run finished before it could be killed"
    summary = finish(run_cli(broken, tmp_path / "b.yaml"))
    assert summary["resumed_from"] in (4, 6, 8) and summary["step"] == steps
    resumed = losses_by_step(tmp_path / "b" / "log")
    assert sorted(resumed) == sorted(expected)
    for step in expected:
        assert resumed[step] == pytest.approx(expected[step], abs=1e-6), step


@pytest.mark.slow
def test_sigterm_saves_then_resume_finishes(tmp_path: Path) -> None:
    shards = make_patch_shards(tmp_path / "shards")
    config = pretrain_config(tmp_path, shards, steps=400, checkpoint={"every_steps": 1000})
    process = run_cli(config, tmp_path / "c.yaml")
    metrics = tmp_path / "log" / "metrics.jsonl"
    deadline = time.monotonic() + 120
    while (not metrics.exists() or len(metrics.read_text().splitlines()) < 3) and (
        time.monotonic() < deadline
    ):
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    summary = finish(process)
    assert summary["stopped_by_signal"] == signal.SIGTERM and summary["step"] < 400
    manager = CheckpointManager(str(tmp_path / "ckpt"))
    assert manager.steps() == [summary["step"]]
    config["steps"] = summary["step"] + 2
    resumed = finish(run_cli(config, tmp_path / "c.yaml"))
    assert resumed["resumed_from"] == summary["step"] and resumed["step"] == config["steps"]


def test_non_finite_losses_are_skipped_then_stop_with_a_clear_error(tmp_path: Path) -> None:
    shards = make_patch_shards(tmp_path / "shards", shards=1)
    model = create_model("dynet", **TINY_NET)
    with torch.no_grad():
        model.head.weight.fill_(float("nan"))
    weights = save_weights(model, tmp_path / "nan.safetensors")
    config = pretrain_config(tmp_path, shards, runtime={"max_bad_steps": 3, "threads": 1})
    config["model"]["init"] = str(weights)
    with pytest.raises(TrainingError, match="3 non-finite losses in a row at step 3"):
        train(build_config(config))


def test_corrupt_checkpoint_falls_back_to_the_previous_one(tmp_path: Path) -> None:
    manager = CheckpointManager(str(tmp_path / "ck"), keep_last=3)
    for step in (1, 2):
        manager.save(step, {"step": step, "weights": torch.full((2,), float(step))})
    assert manager.steps() == [1, 2]
    (tmp_path / "ck" / "step-000000002.pt").write_bytes(b"not a checkpoint")
    with pytest.warns(UserWarning, match="step-000000002.pt"):
        state = manager.load_latest()
    assert state is not None and state["step"] == 1
    # weights_only: a file that needs arbitrary unpickling is refused, by name
    bad = tmp_path / "ck" / "step-000000003.pt"
    torch.save({"step": 3, "thing": ConfigError("x")}, bad)
    with pytest.raises(ValueError, match="step-000000003.pt"):
        manager.load(3)


def test_gradient_accumulation_matches_one_big_batch(tmp_path: Path) -> None:
    train_dir = make_official_layout(tmp_path / "data")
    whole = finetune_config(tmp_path / "one", train_dir, steps=2)
    whole["log"]["tensorboard"] = True
    train(build_config(whole))
    split = finetune_config(tmp_path / "two", train_dir, steps=2, accumulation=2)
    train(build_config(split))
    one, two = losses_by_step(tmp_path / "one" / "log"), losses_by_step(tmp_path / "two" / "log")
    assert one.keys() == two.keys() == {1, 2}
    for step in one:
        assert two[step] == pytest.approx(one[step], abs=1e-6)
    assert any((tmp_path / "one" / "log" / "tensorboard").iterdir())


def test_initialise_from_a_checkpoint_or_official_weights(tmp_path: Path) -> None:
    from dynet.official import to_official_state_dict
    from dynet.train import initialise

    torch.manual_seed(1)
    source = create_model("dynet")
    x = torch.rand(1, 3, 16, 16)
    expected = source(x, variant="S")
    CheckpointManager(str(tmp_path / "ck")).save(
        5, {"step": 5, "model": source.state_dict(), "ema": None}
    )
    from_checkpoint = create_model("dynet")
    initialise(from_checkpoint, str(tmp_path / "ck" / "step-000000005.pt"))
    assert torch.allclose(from_checkpoint(x, variant="S"), expected)
    torch.save(
        {"state_dict": {f"net.{k}": v for k, v in to_official_state_dict(source).items()}},
        tmp_path / "official.ckpt",
    )
    from_official = create_model("dynet")
    initialise(from_official, str(tmp_path / "official.ckpt"))
    assert torch.allclose(from_official(x, variant="S"), expected, atol=1e-5)


# --------------------------------------------------------------------------- DDP


def run_two_processes(config: dict[str, Any], path: Path) -> None:
    path.write_text(yaml.safe_dump(config))
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2"]
    command += ["--master-port", str(29500 + os.getpid() % 1000)]
    command += ["-m", "dynet.train", "--config", str(path)]
    result = subprocess.run(command, cwd=REPO, env=ENV, capture_output=True, timeout=300)
    assert result.returncode == 0, result.stderr.decode()[-2000:]


def assert_same_run(one: Path, two: Path, steps: int) -> None:
    losses_one, losses_two = losses_by_step(one / "log"), losses_by_step(two / "log")
    assert sorted(losses_one) == sorted(losses_two) == list(range(1, steps + 1))
    for step in losses_one:
        assert losses_two[step] == pytest.approx(losses_one[step], rel=1e-5, abs=1e-6)
    w1 = load_weights(one / "ckpt" / "weights.safetensors").state_dict()
    w2 = load_weights(two / "ckpt" / "weights.safetensors").state_dict()
    for key in w1:
        assert torch.allclose(w1[key], w2[key], atol=1e-5), key


@pytest.mark.slow
def test_two_process_gloo_ddp_matches_one_process_finetuning(tmp_path: Path) -> None:
    train_dir = make_official_layout(tmp_path / "data")
    finish(run_cli(finetune_config(tmp_path / "one", train_dir, steps=3), tmp_path / "one.yaml"))
    run_two_processes(finetune_config(tmp_path / "two", train_dir, steps=3), tmp_path / "two.yaml")
    assert_same_run(tmp_path / "one", tmp_path / "two", 3)


@pytest.mark.slow
def test_two_process_gloo_ddp_matches_one_process_pretraining(tmp_path: Path) -> None:
    """Two ranks of one stream each == one process of two streams, accumulating two halves."""
    shards = make_patch_shards(tmp_path / "shards")
    data = {"shards": shards, "workers": 2, "shuffle_buffer": 4}
    single = pretrain_config(tmp_path / "one", shards, steps=3, batch_size=4, accumulation=2)
    finish(run_cli({**single, "data": data}, tmp_path / "one.yaml"))
    double = pretrain_config(tmp_path / "two", shards, steps=3, batch_size=4)
    run_two_processes({**double, "data": {**data, "workers": 1}}, tmp_path / "two.yaml")
    assert_same_run(tmp_path / "one", tmp_path / "two", 3)


# --------------------------------------------------------------------------- fine-tuning data


def test_finetuning_reads_the_official_layout(tmp_path: Path) -> None:
    train_dir = make_official_layout(tmp_path / "data")
    items = discover_items(
        train_dir,
        ["denoise_15", "denoise_25", "denoise_50", "derain", "dehaze"],
        {"denoise": tmp_path / "data" / "denoise.txt"},
        {"derain": 2},
    )
    by_task: dict[str, list] = {}
    for item in items:
        by_task.setdefault(item.task, []).append(item)
    assert {k: len(v) for k, v in by_task.items()} == {
        "denoise_15": 4,
        "denoise_25": 4,
        "denoise_50": 4,
        "derain": 6,
        "dehaze": 2,
    }
    rain = by_task["derain"][0]
    assert rain.degraded.name == "rain-1.png" and rain.target.name == "norain-1.png"
    assert {(i.degraded.name, i.target.name) for i in by_task["dehaze"]} == {
        ("0001_0.8_0.2.jpg", "0001.jpg"),
        ("0002_0.9_0.1.jpg", "0002.jpg"),
    }
    dataset = AllInOneDataset(items, crop=16)
    sample = dataset[(0, 123)]
    assert sample["input"].shape == sample["target"].shape == (3, 16, 16)
    assert torch.equal(dataset[(0, 123)]["input"], sample["input"])  # seeded
    sigma = float(((sample["input"] - sample["target"]) * 255).std())
    assert 8 < sigma < 20  # sigma 15 noise, quantised and clipped
    # a global batch is the same set of samples with 1 or 2 processes
    one = next(iter(GlobalBatchSampler(len(items), 4, seed=1)))
    halves = [
        next(iter(GlobalBatchSampler(len(items), 4, seed=1, rank=r, world_size=2))) for r in (0, 1)
    ]
    assert one == halves[0] + halves[1]
    fresh = iter(GlobalBatchSampler(len(items), 4, seed=1))
    sixth = [next(fresh) for _ in range(6)][-1]
    assert next(iter(GlobalBatchSampler(len(items), 4, seed=1, start=5))) == sixth
    # the official recipe is the default fine-tuning config (all of it: tests/test_recipes.py)
    defaults = FinetuneConfig()
    assert (defaults.optim.name, defaults.optim.lr, defaults.batch_size) == ("adamw", 2e-4, 32)
    assert (defaults.warmup_epochs, defaults.cosine_epochs, defaults.epochs) == (15, 150, 120)
    assert defaults.optim.weight_decay == 0.01 and defaults.lr_every == "epoch"
    assert defaults.clamp_output and defaults.model.variant_mode == "official"
    assert [v.label for v in defaults.model.variants] == ["L", "S"]
    # the official mix: every denoising image 3 times per noise level, rain 120 times
    official = discover_items(
        train_dir, list(DENOISE_SIGMAS) + ["derain", "dehaze"],
        {"denoise": tmp_path / "data" / "denoise.txt"}, defaults.data.repeats,
    )  # fmt: skip
    counts = {t: sum(i.task == t for i in official) for t in ("denoise_25", "derain", "dehaze")}
    assert counts == {"denoise_25": 4 * 3, "derain": 3 * 120, "dehaze": 2}


def test_official_mode_trains_l_only_and_the_schedule_steps_per_epoch(tmp_path: Path) -> None:
    from dynet.train import learning_rate

    train_dir = make_official_layout(tmp_path / "data")
    config = finetune_config(tmp_path, train_dir, steps=6)
    config["model"]["variant_mode"] = "official"
    config.update(warmup_epochs=2, cosine_epochs=4, lr_every="epoch")
    config["data"]["repeats"] = {}  # 4 x 3 denoise + 3 rain + 2 haze = 17 items: 4 steps/epoch
    summary = train(build_config(config))
    assert summary["step"] == 6
    rows = [json.loads(x) for x in (tmp_path / "log" / "metrics.jsonl").read_text().splitlines()]
    assert {row["variants"] for row in rows} == {"2x1x1x1"}  # the first variant only
    lrs = [row["lr"] for row in rows]
    assert lrs[:4] == [lrs[0]] * 4 and lrs[4] == lrs[5] > lrs[0]  # constant within an epoch
    optim = build_config(config).optim
    assert lrs[0] == pytest.approx(learning_rate(0, optim, 2, 4)) == pytest.approx(5e-4)


def test_missing_and_corrupt_files_are_named(tmp_path: Path) -> None:
    train_dir = make_official_layout(tmp_path / "data")
    listing = tmp_path / "data" / "denoise.txt"
    listing.write_text("clean_0.png\nclean_9.png\n")
    with pytest.raises(MissingTrainingFileError, match="clean_9.png"):
        discover_items(train_dir, ["denoise_25"], {"denoise": listing})
    with pytest.raises(MissingTrainingFileError, match="nolist.txt"):
        discover_items(train_dir, ["denoise_25"], {"denoise": tmp_path / "nolist.txt"})
    (train_dir / "Derain" / "gt" / "norain-2.png").unlink()
    with pytest.raises(MissingTrainingFileError, match="norain-2.png"):
        discover_items(train_dir, ["derain"])
    (train_dir / "Dehaze" / "original" / "0002.jpg").unlink()
    with pytest.raises(MissingTrainingFileError, match="0002_0.9_0.1.jpg"):
        discover_items(train_dir, ["dehaze"])
    corrupt = train_dir / "Denoise" / "clean_0.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    items = discover_items(train_dir, ["denoise_15"])
    with pytest.raises(UnreadableImageError, match="clean_0.png"):
        AllInOneDataset(items, crop=16)[(0, 1)]
    with pytest.raises(TrainingDataError, match="smaller than the 64px crop"):
        AllInOneDataset(items, crop=64)[(1, 1)]

    # patch shards: a missing shard and a corrupt sample are named too
    shards = make_patch_shards(tmp_path / "shards", shards=1, per_shard=3)
    stream_args = {"batch_size": 2, "crop": 32, "recipe": DegradationRecipe(), "seed": 0}
    missing = str(tmp_path / "shards" / "shard-000099.tar")
    with pytest.raises(MissingTrainingFileError, match="shard-000099.tar"):
        next(iter(PatchStream([missing], **stream_args)))
    bad = tmp_path / "bad"
    with ShardWriter(str(bad)) as writer:
        writer.write(Sample("broken-one", b"not an image", "png", {}))
    with pytest.raises(UnreadableImageError, match="broken-one"):
        next(iter(PatchStream([str(bad / "shard-000000.tar")], **stream_args)))
    assert next(iter(PatchStream(shards, **stream_args)))["input"].shape == (2, 3, 32, 32)
    data = Path(shards[0]).read_bytes()
    Path(shards[0]).write_bytes(data[: len(data) // 3])  # a truncated tar
    # Depending on where the cut falls: the tar is unreadable, or its last sample lost its image.
    with pytest.raises(TrainingDataError, match=r"(unreadable patch shard|sample) .*shard-000000"):
        next(iter(PatchStream(shards, **{**stream_args, "batch_size": 3})))


def test_config_files_and_overrides(tmp_path: Path) -> None:
    path = tmp_path / "pre.yaml"
    path.write_text(yaml.safe_dump(pretrain_config(tmp_path, ["a.tar"])))
    cfg = load_config(path, ["optim.lr=3e-4", "model.variant_mode=all", "data.workers=1"])
    assert cfg.stage == "pretrain" and cfg.optim.lr == 3e-4 and cfg.data.workers == 1
    assert cfg.model.variant_mode == "all"
    (tmp_path / "ft.json").write_text(json.dumps({"stage": "finetune", "epochs": 2}))
    assert load_config(tmp_path / "ft.json").epochs == 2
    with pytest.raises(ConfigError, match="optim.lrr"):
        load_config(path, ["optim.lrr=1"])
    with pytest.raises(ConfigError, match="model.variants.0.variant"):
        load_config(path, ["model.variants=[{variant: XL}]"])
    with pytest.raises(ConfigError, match="missing.yaml"):
        load_config(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="not pretrain"):
        load_config(tmp_path / "ft.json", stage="pretrain")


# --------------------------------------------------------------------------- the CLI


def test_mird_train_pretrains_on_a_published_patches_version(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from curation.patches import PatchConfig, extract_patches
    from flows.cli.app import app
    from storage.versions import Dataset
    from tests.storage_helpers import make_samples, publish

    images = publish(Dataset(str(tmp_path / "root"), "photos"), make_samples(4, size=(96, 64)))
    patches = extract_patches(
        images, Dataset(str(tmp_path / "root"), "patches"), PatchConfig(size=48, stride=48)
    )
    assert patches.manifest().num_rows >= 4
    config = pretrain_config(tmp_path, [], steps=3)
    config["data"] = {"dataset_root": str(tmp_path / "root"), "dataset": "patches", "workers": 0}
    (tmp_path / "pre.yaml").write_text(yaml.safe_dump(config))
    runner = CliRunner()
    result = runner.invoke(
        app, ["train", "pretrain", "--config", str(tmp_path / "pre.yaml"), "optim.lr=5e-4"]
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["step"] == 3 and Path(summary["weights"]).is_file()
    rows = [json.loads(x) for x in (tmp_path / "log" / "metrics.jsonl").read_text().splitlines()]
    assert [r["lr"] for r in rows] == pytest.approx([2.5e-4, 5e-4, 5e-4])  # warm-up 2, cosine
    bad = runner.invoke(app, ["train", "finetune", "--config", str(tmp_path / "pre.yaml")])
    assert bad.exit_code != 0 and "not finetune" in str(bad.exception)
