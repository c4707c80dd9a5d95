"""`mird train pretrain|finetune --config FILE [KEY=VALUE ...]`: DyNet training from the CLI."""

from __future__ import annotations

import enum
import json
import signal
import subprocess
import sys
from pathlib import Path

import typer


class Stage(enum.StrEnum):
    pretrain = "pretrain"
    finetune = "finetune"


def register(app: typer.Typer) -> None:
    @app.command("train")
    def train_command(
        stage: Stage = typer.Argument(
            ..., help="pretrain (patch shards) or finetune (all-in-one)."
        ),
        overrides: list[str] = typer.Argument(
            None, help="Config overrides KEY=VALUE, e.g. optim.lr=2e-4 data.workers=8."
        ),
        config: Path = typer.Option(None, "--config", help="YAML or JSON config file."),
        nproc_per_node: int = typer.Option(
            1, "--nproc-per-node", help="Processes (GPUs) on this machine; >1 launches torchrun."
        ),
        show_config: bool = typer.Option(
            False, "--show-config", help="Print the resolved config as JSON and exit."
        ),
    ) -> None:
        """Dynamic pre-training or all-in-one fine-tuning; resumes from the newest checkpoint.

        The config file's keys and the KEY=VALUE overrides are the dotted names of
        docs/configuration.md. Prints a JSON summary (weights path, steps, loss) at
        the end.

        Examples:

            mird train pretrain --config pretrain.yaml
            mird train finetune --config finetune.yaml optim.lr=1e-4 data.workers=8
            mird train pretrain --config pretrain.yaml --nproc-per-node 8
            mird train finetune --show-config
        """
        from dynet.train_config import load_config

        cfg = load_config(config, overrides or [], stage.value)  # validate before launching
        if show_config:
            typer.echo(cfg.model_dump_json(indent=2))
            return
        if nproc_per_node > 1:
            command = [
                sys.executable,
                "-m",
                "torch.distributed.run",
                "--standalone",
                f"--nproc-per-node={nproc_per_node}",
                "-m",
                "dynet.train",
                "--stage",
                stage.value,
                *(["--config", str(config)] if config else []),
                *(overrides or []),
            ]
            from flows.cli.lifetime import popen_kwargs

            # torchrun gets SIGTERM if `mird` dies: it stops its ranks (flows.cli.lifetime)
            status = subprocess.call(command, **popen_kwargs(signal.SIGTERM))
            if status:
                raise RuntimeError(f"training processes failed (exit status {status})")
            return
        from dynet.train import train

        typer.echo(json.dumps(train(cfg)))
