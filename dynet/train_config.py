"""Training configuration: one pydantic model per stage, loadable from YAML or JSON.

``PretrainConfig`` is dynamic pre-training on patch shards; ``FinetuneConfig`` is all-in-one
fine-tuning, whose defaults are the paper's recipe (AdamW 2e-4, 15 warm-up epochs then cosine
to 150, stop at 120, batch 32 in total, L1 on the clamped output, both variants on shared
weights). The CLI, ``python -m dynet.train`` and flow parameters all go through these models.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from dynet.data import TASKS
from dynet.degrade import DegradationRecipe
from dynet.dynet import resolve_variant


class ConfigError(ValueError):
    """A configuration file or override that cannot be used."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class VariantChoice(_Strict):
    """A depth to train: ``L``, ``S`` or four repeat counts, with its draw probability."""

    variant: str | tuple[int, int, int, int] = "L"
    probability: float = Field(1.0, ge=0)

    @field_validator("variant")
    @classmethod
    def _known(cls, value: Any) -> Any:
        resolve_variant(value)
        return value

    @property
    def label(self) -> str:
        if isinstance(self.variant, str):
            return self.variant.upper()
        return "x".join(map(str, self.variant))


class ModelSettings(_Strict):
    arch: str = "dynet"
    options: dict[str, Any] = Field(
        default_factory=dict, description="Overrides of the network's config (e.g. dim)."
    )
    variants: list[VariantChoice] = Field(
        default_factory=lambda: [
            VariantChoice(variant="L", probability=0.5),
            VariantChoice(variant="S", probability=0.5),
        ]
    )
    variant_mode: Literal["sample", "all"] = Field(
        "sample",
        description="sample: one variant drawn per iteration; all: every variant each step, "
        "losses summed.",
    )
    init: str | None = Field(
        None,
        description="Start from: a project .safetensors, a training checkpoint (.pt) or an "
        "official DyNet/PromptIR checkpoint (any other suffix).",
    )

    @model_validator(mode="after")
    def _drawable(self) -> ModelSettings:
        if not self.variants:
            raise ValueError("at least one variant to train")
        if self.variant_mode == "sample" and sum(v.probability for v in self.variants) <= 0:
            raise ValueError("variant probabilities must not all be 0")
        return self


class OptimSettings(_Strict):
    name: Literal["adam", "adamw"] = "adamw"
    lr: float = Field(1e-4, gt=0)
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = Field(0.0, ge=0)
    schedule: Literal["cosine", "constant"] = "cosine"
    warmup_steps: int = Field(0, ge=0)
    decay_steps: int | None = Field(
        None, description="Cosine horizon in steps (default: the run's steps)."
    )
    min_lr: float = Field(0.0, ge=0)
    grad_clip: float | None = Field(1.0, description="Max global grad norm; None disables.")
    ema_decay: float | None = Field(None, description="e.g. 0.999; None disables the EMA.")


class CheckpointSettings(_Strict):
    dir: str = Field("runs/dynet/checkpoints", description="Local path or fsspec URI.")
    every_steps: int = Field(1000, ge=1)
    keep_last: int = Field(3, ge=1)
    resume: bool = Field(True, description="Continue from the newest checkpoint in dir.")


class RuntimeSettings(_Strict):
    device: str = Field("auto", description="auto, cpu, cuda or cuda:N (DDP: local rank).")
    precision: Literal["auto", "fp32", "bf16"] = Field("auto", description="auto: bf16 on CUDA.")
    channels_last: bool | None = Field(None, description="None: on for CUDA.")
    compile: bool = False
    deterministic: bool = False
    threads: int | None = Field(None, ge=1, description="torch CPU threads (None: default).")
    max_bad_steps: int = Field(
        10, ge=1, description="Stop after this many NaN/inf losses in a row (each is skipped)."
    )


class LogSettings(_Strict):
    dir: str = "runs/dynet/logs"
    every_steps: int = Field(10, ge=1)
    tensorboard: bool = False
    progress: bool | None = Field(None, description="None: a progress bar on a terminal.")


class _TrainConfig(_Strict):
    seed: int = 0
    steps: int = Field(..., ge=1, description="Optimizer steps of the whole run.")
    batch_size: int = Field(..., ge=1, description="Global batch (all processes, accumulated).")
    accumulation: int = Field(1, ge=1, description="Micro-batches per optimizer step.")
    crop: int = Field(128, ge=8)
    clamp_output: bool = Field(False, description="L1 on the output clamped to [0, 1].")
    model: ModelSettings = Field(default_factory=ModelSettings)
    optim: OptimSettings = Field(default_factory=OptimSettings)
    checkpoint: CheckpointSettings = Field(default_factory=CheckpointSettings)
    runtime: RuntimeSettings = Field(default_factory=RuntimeSettings)
    log: LogSettings = Field(default_factory=LogSettings)


class PretrainData(_Strict):
    shards: list[str] = Field(
        default_factory=list, description="Shard URIs (tar); or give dataset_root + dataset."
    )
    dataset_root: str | None = None
    dataset: str | None = Field(None, description="A published patches dataset name.")
    version: str | None = Field(None, description="Its version (default: latest).")
    resample: bool = True
    shuffle_buffer: int = Field(256, ge=1)
    workers: int = Field(4, ge=0)
    prefetch: int = Field(2, ge=1)
    degradations: DegradationRecipe = Field(default_factory=DegradationRecipe)

    def shard_uris(self) -> list[str]:
        if self.shards:
            return list(self.shards)
        if self.dataset_root and self.dataset:
            from storage.versions import Dataset

            return Dataset(self.dataset_root, self.dataset).version(self.version).shard_uris()
        raise ConfigError("data: give shards, or dataset_root and dataset")


class PretrainConfig(_TrainConfig):
    stage: Literal["pretrain"] = "pretrain"
    steps: int = 300_000
    batch_size: int = 32
    data: PretrainData = Field(default_factory=PretrainData)


class FinetuneData(_Strict):
    root: str = Field("data/Train", description="Holds Denoise/, Derain/, Dehaze/.")
    tasks: list[str] = Field(default_factory=lambda: list(TASKS))
    denoise_list: str | None = Field(None, description="Names relative to Denoise/.")
    derain_list: str | None = Field(None, description="e.g. rainy/rain-1.png per line.")
    dehaze_list: str | None = Field(None, description="e.g. synthetic/part1/0001_0.8_0.2.jpg.")
    repeats: dict[str, int] = Field(default_factory=lambda: {"derain": 120})
    workers: int = Field(4, ge=0)

    @field_validator("tasks")
    @classmethod
    def _tasks(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - set(TASKS))
        if unknown or not value:
            raise ValueError(f"tasks must be among {list(TASKS)}, got {value}")
        return value


def _finetune_optim() -> OptimSettings:
    return OptimSettings(name="adamw", lr=2e-4, schedule="cosine", min_lr=0.0, grad_clip=None)


def _finetune_model() -> ModelSettings:
    return ModelSettings(
        variants=[VariantChoice(variant="L"), VariantChoice(variant="S")], variant_mode="all"
    )


class FinetuneConfig(_TrainConfig):
    """The paper's all-in-one recipe; schedule given in epochs, turned into steps."""

    stage: Literal["finetune"] = "finetune"
    steps: int | None = Field(None, description="None: epochs x steps per epoch.")  # type: ignore[assignment]
    batch_size: int = 32
    epochs: int = Field(120, ge=1, description="Where training stops.")
    warmup_epochs: int = Field(15, ge=0)
    cosine_epochs: int = Field(150, ge=1, description="The cosine horizon (past the stop).")
    clamp_output: bool = True
    model: ModelSettings = Field(default_factory=_finetune_model)
    optim: OptimSettings = Field(default_factory=_finetune_optim)
    data: FinetuneData = Field(default_factory=FinetuneData)


TrainConfig = PretrainConfig | FinetuneConfig
STAGES: dict[str, type[_TrainConfig]] = {"pretrain": PretrainConfig, "finetune": FinetuneConfig}


def _parse_value(text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``a.b.c=value`` overrides (values parsed as YAML: 3, 1e-4, true, [1,2])."""
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r} is not KEY=VALUE (e.g. optim.lr=2e-4)")
        node = data
        *parents, leaf = key.strip().split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: {part} is not a section")
        node[leaf] = _parse_value(value)
    return data


def read_config_file(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    text = path.read_text()
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        first = str(exc).splitlines()[0]
        raise ConfigError(f"config file {path} is not valid YAML/JSON: {first}") from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping")
    return data


def build_config(
    data: dict[str, Any], stage: str | None = None, source: str = "config"
) -> TrainConfig:
    """Validate ``data`` as the config of ``stage`` (or of the ``stage`` key it holds)."""
    stage = stage or data.get("stage") or "pretrain"
    if stage not in STAGES:
        raise ConfigError(f"{source}: unknown stage {stage!r} (pretrain or finetune)")
    if data.get("stage", stage) != stage:
        raise ConfigError(f"{source} is a {data['stage']} config, not {stage}")
    try:
        return STAGES[stage].model_validate({**data, "stage": stage})
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(map(str, error["loc"])) or "(top)"
        raise ConfigError(f"{source}: {where}: {error['msg']}") from exc


def load_config(
    path: str | Path | None, overrides: list[str] | None = None, stage: str | None = None
) -> TrainConfig:
    data = read_config_file(path) if path else {}
    apply_overrides(data, overrides or [])
    return build_config(data, stage, str(path) if path else "config")
