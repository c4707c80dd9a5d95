"""The training flows' subprocess handling: summary back, whole process group stopped."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from dynet.train_config import PretrainConfig
from flows import train_flow
from tests.test_train import make_patch_shards, pretrain_config


def test_pretrain_flow_returns_weights(tmp_path):
    shards = make_patch_shards(tmp_path / "shards", shards=2, per_shard=4, size=40)
    config = PretrainConfig.model_validate(pretrain_config(tmp_path, shards, steps=3))
    summary = train_flow.pretrain_dynet.fn(config, gpus=0)
    assert summary["step"] == 3 and Path(summary["weights"]).is_file()


def test_torchrun_command_for_gpus():
    command = train_flow.training_command("c.json", "finetune", 4)
    assert command[1:4] == ["-m", "torch.distributed.run", "--standalone"]
    assert "--nproc_per_node=4" in command and command[-2:] == ["--stage", "finetune"]


@pytest.mark.slow
def test_cancellation_stops_the_whole_process_group(tmp_path):
    shards = make_patch_shards(tmp_path / "shards", shards=2, per_shard=4, size=40)
    config = PretrainConfig.model_validate(
        pretrain_config(tmp_path, shards, steps=100_000, data={"shards": shards, "workers": 1})
    )
    outcome: dict = {}
    runner = threading.Thread(
        target=lambda: outcome.update(summary=train_flow.run_trainer(config, gpus=0))
    )
    runner.start()
    deadline = time.monotonic() + 300
    while not (tmp_path / "log" / "metrics.jsonl").exists() and time.monotonic() < deadline:
        time.sleep(0.2)  # wait until it trains (the loader worker is up)
    assert train_flow._RUNNING, "trainer did not start"
    pgid = next(iter(train_flow._RUNNING.values())).pid
    train_flow._kill_all()  # what a cancelled or crashed flow run calls
    runner.join(timeout=120)
    assert not runner.is_alive()
    assert outcome["summary"]["stopped_by_signal"]  # it checkpointed on SIGTERM
    assert outcome["summary"]["checkpoint"]
    with pytest.raises(ProcessLookupError):
        os.killpg(pgid, 0)  # no process of the group is left
