"""DyNet and the PromptIR baseline: networks, official-checkpoint loading, complexity,
project checkpoints and tiled restoration."""

from dynet.checkpoint import (
    CheckpointError,
    load_model,
    load_training_state,
    load_weights,
    save_training_state,
    save_weights,
)
from dynet.complexity import Complexity, complexity
from dynet.dynet import DyNet, DyNetConfig
from dynet.official import (
    OfficialWeightsError,
    WeightsNotFoundError,
    load_official_weights,
    to_official_state_dict,
)
from dynet.promptir import PromptIR, PromptIRConfig
from dynet.registry import UnknownArchitectureError, available_models, create_model
from dynet.tiling import restore_tensor
from dynet.variants import VARIANTS, InvalidVariantError, parse_variant, resolve_variant

__all__ = [
    "VARIANTS",
    "CheckpointError",
    "Complexity",
    "DyNet",
    "DyNetConfig",
    "InvalidVariantError",
    "OfficialWeightsError",
    "PromptIR",
    "PromptIRConfig",
    "UnknownArchitectureError",
    "WeightsNotFoundError",
    "available_models",
    "complexity",
    "create_model",
    "load_model",
    "load_official_weights",
    "load_training_state",
    "load_weights",
    "parse_variant",
    "resolve_variant",
    "restore_tensor",
    "save_training_state",
    "save_weights",
    "to_official_state_dict",
]
