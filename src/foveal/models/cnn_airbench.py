"""The airbench CNN family (Keller Jordan 2024, CIFAR-10 94% in seconds on a GPU): the hybrids' conv
trunk with a third conv group and global max pooling instead of attention, logits scaled by 1/9. Against
the hybrids, `foveal compare` asks whether the attention is worth its cost.

Its module is the hybrid's (hybrid.py) with no attention blocks, so its config is a HybridConfig with
its own family name and defaults. Models of these presets saved before #31 say family "hybrid"; they
load as this family, to the same module and weights (registry.py: config_from_dict).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from foveal.models.hybrid import PHOTO_GRID, HybridClassifier, HybridConfig
from foveal.models.registry import register_family, register_model


@dataclass(frozen=True)
class AirbenchCNNConfig(HybridConfig):
    """airbench94's CNN: whitening stem, three conv groups (airbench's widths), global max pooling."""

    name: str = "custom-cnn-airbench"
    widths: tuple[int, ...] = (64, 256, 256)  # airbench94's: a 4x4 grid at 32 px
    pos_embed: Literal["learnable", "sincos", "none"] = "none"  # no attention reads positions
    depth: int = 0  # no attention blocks: a plain CNN
    pool: Literal["attention", "max", "mean"] = "max"  # airbench's global max pooling
    logit_scale: float = 1 / 9  # airbench's: tames the max-pooled features' large logits
    family: str = "cnn-airbench"  # registry.py: the family a saved config is read back as


register_family("cnn-airbench", AirbenchCNNConfig, HybridClassifier, formerly=("hybrid",))


@register_model("cnn-airbench-half", "CNN baseline of hybrid-airbench-half")
def cnn_airbench_half() -> AirbenchCNNConfig:  # 0.50M parameters, 81 MFLOPs at 32 px (122 at 224 px)
    return AirbenchCNNConfig(widths=(32, 128, 128), **PHOTO_GRID)


@register_model("cnn-airbench", "airbench94's CNN: hybrid-airbench's baseline")
def cnn_airbench() -> AirbenchCNNConfig:  # airbench94's: 1.97M parameters, 293 MFLOPs at 32 px (314 at 224)
    return AirbenchCNNConfig(**PHOTO_GRID)  # the hybrids' photo grid: Grad-CAM maps alike
