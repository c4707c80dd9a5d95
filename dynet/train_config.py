"""Training configuration: one pydantic model per stage, loadable from YAML or JSON.

``PretrainConfig`` is dynamic pre-training on patch shards, with the paper's recipe as its
defaults (1 M iterations at batch 32, Adam 1e-4 constant; ``optim.schedule=cosine`` gives the
cosine variant). ``FinetuneConfig`` is all-in-one fine-tuning with the authors' public code as
its defaults (AdamW 2e-4, weight decay 0.01, 15 warm-up epochs then cosine to 150 stepped once
per epoch, stop at 120, batch 32 in total, denoising x3 per noise level and rain x120, L1 on the
raw output, DyNet-L trained and served as L and S). ``docs/recipes.md`` gives every setting
with its source, and says where and why we differ. The CLI, ``python -m dynet.train`` and flow
parameters all go through these models.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

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
from dynet.variants import resolve_variant
from storage.config_errors import ConfigError, read_config_file, validation_lines
from storage.config_overrides import apply_overrides, override_origin


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class VariantChoice(_Strict):
    """A depth to train: ``L``, ``S`` or four repeat counts, with its draw probability."""

    variant: str | tuple[int, int, int, int] = Field(
        "L",
        description="L (DyNet-L, repeats 4/6/6/8), S (DyNet-S, 2/3/3/4) or four block repeat "
        "counts, one per encoder/decoder level.",
    )
    probability: float = Field(
        1.0,
        ge=0,
        description="Relative weight of this variant in variant_mode=sample (normalised over "
        "all variants, so they need not sum to 1); ignored by the other modes.",
    )

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
    """The network to train and which of its depths each step trains."""

    arch: str = Field(
        "dynet",
        description="Registered architecture name (dynet.registry): dynet, dynet-l, dynet-s or "
        "promptir.",
    )
    options: dict[str, Any] = Field(
        default_factory=dict, description="Overrides of the network's config (e.g. dim)."
    )
    variants: list[VariantChoice] = Field(
        default_factory=lambda: [
            VariantChoice(variant="L", probability=0.5),
            VariantChoice(variant="S", probability=0.5),
        ],
        description="Depths of the shared weights (at least one): trained (see variant_mode) "
        "and served.",
    )
    variant_mode: Literal["sample", "all", "official"] = Field(
        "sample",
        description="sample: one variant drawn per iteration (dynamic pre-training); all: "
        "every variant each step, losses summed; official: only the first variant is trained "
        "(L in the authors' fine-tuning), the others are served from the same weights.",
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

    def trained(self) -> list[int]:
        """Indices of the variants every step trains (``sample`` draws among all of them)."""
        if self.variant_mode == "official":
            return [0]
        return list(range(len(self.variants)))


class OptimSettings(_Strict):
    """Optimizer and learning-rate schedule (the schedule is a pure function of the step)."""

    name: Literal["adam", "adamw"] = Field(
        "adamw", description="torch.optim.Adam or AdamW (decoupled weight decay)."
    )
    lr: float = Field(
        1e-4, gt=0, description="Peak learning rate (reached after the warm-up, if any)."
    )
    betas: tuple[float, float] = Field(
        (0.9, 0.999), description="Adam's (beta1, beta2) moment decay rates."
    )
    weight_decay: float = Field(
        0.0, ge=0, description="Weight decay factor passed to the optimizer (0: none)."
    )
    schedule: Literal["cosine", "constant"] = Field(
        "cosine",
        description="After the linear warm-up: cosine from lr down to min_lr, or constant lr.",
    )
    warmup_steps: int = Field(
        0,
        ge=0,
        description="Steps of linear warm-up from lr/warmup_steps to lr (0: none); pre-training "
        "only, fine-tuning uses warmup_epochs.",
    )
    decay_steps: int | None = Field(
        None,
        description="Cosine horizon in steps (default: the run's steps); pre-training only, "
        "fine-tuning uses cosine_epochs.",
    )
    min_lr: float = Field(
        0.0, ge=0, description="Learning rate at the end of the cosine horizon and after it."
    )
    grad_clip: float | None = Field(1.0, description="Max global grad norm; None disables.")
    ema_decay: float | None = Field(None, description="e.g. 0.999; None disables the EMA.")


class CheckpointSettings(_Strict):
    """Where and how often the resumable training state is saved."""

    dir: str = Field("runs/dynet/checkpoints", description="Local path or fsspec URI.")
    every_steps: int = Field(
        1000,
        ge=1,
        description="Save every this many optimizer steps (also at the end and on SIGTERM).",
    )
    keep_last: int = Field(
        3, ge=1, description="Checkpoints kept in dir; older ones are deleted after a save."
    )
    resume: bool = Field(True, description="Continue from the newest checkpoint in dir.")


class RuntimeSettings(_Strict):
    """Device, precision and torch switches: how a run executes, not what it learns."""

    device: str = Field("auto", description="auto, cpu, cuda or cuda:N (DDP: local rank).")
    precision: Literal["auto", "fp32", "bf16"] = Field("auto", description="auto: bf16 on CUDA.")
    channels_last: bool | None = Field(None, description="None: on for CUDA.")
    compile: bool = Field(
        False, description="Wrap the model in torch.compile (slow first steps, faster after)."
    )
    deterministic: bool = Field(
        False,
        description="torch.use_deterministic_algorithms(True): bitwise repeatable kernels, "
        "slower; ops without a deterministic version raise.",
    )
    threads: int | None = Field(None, ge=1, description="torch CPU threads (None: default).")
    max_bad_steps: int = Field(
        10, ge=1, description="Stop after this many NaN/inf losses in a row (each is skipped)."
    )


class LogSettings(_Strict):
    """Training metrics: metrics.jsonl and metrics.csv in dir, optionally TensorBoard."""

    dir: str = Field(
        "runs/dynet/logs",
        description="Local folder of metrics.jsonl/metrics.csv (and the final weights when "
        "checkpoint.dir is not local).",
    )
    every_steps: int = Field(
        10, ge=1, description="Write a metrics row every this many optimizer steps (and the last)."
    )
    tensorboard: bool = Field(
        False, description="Also write the metrics as TensorBoard scalars under dir/tensorboard."
    )
    progress: bool | None = Field(None, description="None: a progress bar on a terminal.")


class _TrainConfig(_Strict):
    seed: int = Field(
        0,
        description="Seeds model init, variant draws, shard order, crops and degradations: "
        "the same seed and data give the same run, also when resumed.",
    )
    steps: int = Field(..., ge=1, description="Optimizer steps of the whole run.")
    batch_size: int = Field(..., ge=1, description="Global batch (all processes, accumulated).")
    accumulation: int = Field(1, ge=1, description="Micro-batches per optimizer step.")
    crop: int = Field(
        128,
        ge=8,
        description="Side in pixels of the random square training crop (flip/rotation "
        "augmented); images smaller than it are an error.",
    )
    clamp_output: bool = Field(False, description="L1 on the output clamped to [0, 1].")
    model: ModelSettings = Field(default_factory=ModelSettings)
    optim: OptimSettings = Field(default_factory=OptimSettings)
    checkpoint: CheckpointSettings = Field(default_factory=CheckpointSettings)
    runtime: RuntimeSettings = Field(default_factory=RuntimeSettings)
    log: LogSettings = Field(default_factory=LogSettings)

    @model_validator(mode="before")
    @classmethod
    def _partial_sections_keep_stage_defaults(cls, data: Any) -> Any:
        """A partial ``optim`` or ``model`` section keeps this stage's defaults for the keys it
        leaves out: ``optim.lr=3e-4`` on fine-tuning keeps AdamW and weight decay 0.01, on
        pre-training Adam and the constant schedule."""
        if not isinstance(data, dict):
            return data
        for name in ("optim", "model"):
            given = data.get(name)
            if isinstance(given, dict):
                default = cls.model_fields[name].get_default(call_default_factory=True)
                data = {**data, name: {**default.model_dump(), **given}}
        return data


class PretrainData(_Strict):
    """The pre-training patch stream: WebDataset shards, read and degraded on the fly."""

    shards: list[str] = Field(
        default_factory=list, description="Shard URIs (tar); or give dataset_root + dataset."
    )
    dataset_root: str | None = Field(
        None, description="Storage root holding dataset (used only when shards is empty)."
    )
    dataset: str | None = Field(None, description="A published patches dataset name.")
    version: str | None = Field(None, description="Its version (default: latest).")
    resample: bool = Field(
        True,
        description="True: each stream draws shards with replacement (seeded); False: seeded "
        "per-epoch permutations of the shards split over all streams.",
    )
    shuffle_buffer: int = Field(
        256, ge=1, description="Samples held per stream for the seeded in-shard shuffle."
    )
    workers: int = Field(
        4, ge=0, description="DataLoader worker processes per rank (0: load in the main process)."
    )
    prefetch: int = Field(
        2, ge=1, description="Batches each worker loads ahead (ignored when workers is 0)."
    )
    degradations: DegradationRecipe = Field(default_factory=DegradationRecipe)

    def shard_uris(self) -> list[str]:
        if self.shards:
            return list(self.shards)
        if self.dataset_root and self.dataset:
            from storage.errors import require_samples
            from storage.versions import Dataset

            version = Dataset(self.dataset_root, self.dataset).version(self.version)
            require_samples(version, "train on")
            return version.shard_uris()
        raise ConfigError("data: give shards, or dataset_root and dataset")


def _pretrain_optim() -> OptimSettings:
    """The paper's pre-training optimiser: Adam at a constant 1e-4 (no decay reported)."""
    return OptimSettings(name="adam", lr=1e-4, schedule="constant", weight_decay=0.0)


class PretrainConfig(_TrainConfig):
    """Dynamic pre-training: degraded and masked patches, L1 to the clean patch."""

    stage: Literal["pretrain"] = Field(
        "pretrain", description="Which training this config is for (fixed per model)."
    )
    # Redeclared for their defaults: Field() again, or the base's ge=1 would be lost.
    steps: int = Field(
        1_000_000, ge=1, description="Optimizer steps of the whole run (paper: 1 M iterations)."
    )
    batch_size: int = Field(
        32,
        ge=1,
        description="Global batch in patches (all processes, all micro-batches; paper: 32).",
    )
    optim: OptimSettings = Field(default_factory=lambda: _pretrain_optim())
    data: PretrainData = Field(default_factory=PretrainData)


#: Times the official data pipeline lists each task's images per epoch (dehaze: once).
OFFICIAL_REPEATS: dict[str, int] = {
    "denoise_15": 3,
    "denoise_25": 3,
    "denoise_50": 3,
    "derain": 120,
}


class FinetuneData(_Strict):
    """The official all-in-one training layout (data/Train) and which tasks to mix."""

    root: str = Field("data/Train", description="Holds Denoise/, Derain/, Dehaze/.")
    tasks: list[str] = Field(
        default_factory=lambda: list(TASKS),
        description="Tasks mixed into one dataset: denoise_15/25/50 (Gaussian sigma on 0-255, "
        "added on the fly to Denoise/ images), derain, dehaze.",
    )
    denoise_list: str | None = Field(None, description="Names relative to Denoise/.")
    derain_list: str | None = Field(None, description="e.g. rainy/rain-1.png per line.")
    dehaze_list: str | None = Field(None, description="e.g. synthetic/part1/0001_0.8_0.2.jpg.")
    repeats: dict[str, int] = Field(
        default_factory=lambda: dict(OFFICIAL_REPEATS),
        description="Task -> times its items are listed per epoch (missing: 1). The official "
        "data pipeline lists every denoising image 3 times per noise level and the small "
        "Rain100L set 120 times; dehazing once.",
    )
    workers: int = Field(
        4, ge=0, description="DataLoader worker processes per rank (0: load in the main process)."
    )

    @field_validator("tasks")
    @classmethod
    def _tasks(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - set(TASKS))
        if unknown or not value:
            raise ValueError(f"tasks must be among {list(TASKS)}, got {value}")
        return value


def _finetune_optim() -> OptimSettings:
    """The official optimiser: AdamW 2e-4 with PyTorch's default weight decay 0.01, no clipping."""
    return OptimSettings(
        name="adamw", lr=2e-4, weight_decay=0.01, schedule="cosine", min_lr=0.0, grad_clip=None
    )


def _finetune_model() -> ModelSettings:
    """The official code trains DyNet-L and evaluates the same weights as DyNet-S."""
    return ModelSettings(
        variants=[VariantChoice(variant="L"), VariantChoice(variant="S")],
        variant_mode="official",
    )


class FinetuneConfig(_TrainConfig):
    """The official all-in-one recipe; schedule given in epochs, turned into steps."""

    stage: Literal["finetune"] = Field(
        "finetune", description="Which training this config is for (fixed per model)."
    )
    steps: int | None = Field(  # type: ignore[assignment]
        None,
        ge=1,
        description="Optimizer steps of the whole run; None: epochs x steps per epoch "
        "(items // batch_size).",
    )
    batch_size: int = Field(
        32, ge=1, description="Global batch in crops (all processes, all micro-batches)."
    )
    epochs: int = Field(120, ge=1, description="Where training stops.")
    warmup_epochs: int = Field(
        15, ge=0, description="Epochs of linear learning-rate warm-up before the cosine."
    )
    cosine_epochs: int = Field(150, ge=1, description="The cosine horizon (past the stop).")
    lr_every: Literal["epoch", "step"] = Field(
        "epoch",
        description="epoch: the learning rate changes once per epoch, as the official "
        "Lightning scheduler steps; step: the same curve, updated every optimizer step.",
    )
    clamp_output: bool = Field(
        True,
        description="L1 on the output clamped to [0, 1], as the official train.py does "
        "(restored.clamp(0, 1) before the loss); false: L1 on the raw output.",
    )
    model: ModelSettings = Field(default_factory=_finetune_model)
    optim: OptimSettings = Field(default_factory=_finetune_optim)
    data: FinetuneData = Field(default_factory=FinetuneData)


TrainConfig = PretrainConfig | FinetuneConfig
STAGES: dict[str, type[_TrainConfig]] = {"pretrain": PretrainConfig, "finetune": FinetuneConfig}


def build_config(
    data: dict[str, Any],
    stage: str | None = None,
    source: str | Callable[[str], str] = "config",
) -> TrainConfig:
    """Validate ``data`` as the config of ``stage`` (or of the ``stage`` key it holds).

    ``source`` names where ``data`` came from, or maps a field's dotted path to its origin
    (see :func:`storage.config_errors.validation_lines`)."""
    stage = stage or data.get("stage") or "pretrain"
    origin = source("stage") if callable(source) else source
    if stage not in STAGES:
        raise ConfigError(f"{origin}: unknown stage {stage!r} (pretrain or finetune)")
    if data.get("stage", stage) != stage:
        raise ConfigError(f"{origin} is a {data['stage']} config, not {stage}")
    try:
        return STAGES[stage].model_validate({**data, "stage": stage})
    except ValidationError as exc:  # every failing field, one line each
        raise ConfigError(*validation_lines(exc, source)) from None


def load_config(
    path: str | Path | None, overrides: list[str] | None = None, stage: str | None = None
) -> TrainConfig:
    data = read_config_file(path) if path else {}
    # A field set (or under a section set) by a KEY=VALUE override came from the command
    # line; any other from the file (or the defaults, "config").
    keys = apply_overrides(data, overrides or [], example="optim.lr=2e-4")
    return build_config(data, stage, override_origin(keys, str(path) if path else "config"))
