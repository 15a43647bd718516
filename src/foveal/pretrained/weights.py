"""A public checkpoint's weights file read as a timm ViT state dict, and the ViT's shape read from its
tensors when no config.json says it.

safetensors files are read as they are; pickle files (.bin, .pth) only through
`torch.load(weights_only=True)`, which builds tensors and plain containers and never runs code from the
file. Common wrappers ({"model": ...}, {"state_dict": ...}) and DistributedDataParallel's "module."
prefixes are removed.
"""

from __future__ import annotations

import math
import pickle
import re
from pathlib import Path

import torch

from foveal.errors import ConfigError, ModelFileError
from foveal.models.timm_vit import TimmViTConfig

PICKLE_SUFFIXES = (".bin", ".pth")
WRAPPERS = ("model", "state_dict")  # {"model": state} (DeiT's releases), {"state_dict": state}
HEAD_DIM = 64  # channels a head in every timm ViT/DeiT tiny, small and base: 192/3, 384/6, 768/12
SIZE_NAMES = {192: "tiny", 384: "small", 768: "base", 1024: "large"}  # timm's names by embed_dim


def read_state(file: Path) -> dict[str, torch.Tensor]:
    """The tensors of a weights file, keyed as timm's ViT names them, float ones as float32.

    Raises:
        ModelFileError: unreadable, not a dict of tensors, or a pickle holding more than tensors.
    """
    if file.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            loaded: object = load_file(str(file))
        except (SafetensorError, OSError, ValueError, RuntimeError) as error:
            raise ModelFileError(f"{file} is not a readable safetensors file ({error}).") from None
    else:
        loaded = _load_pickle(file)
    state = _unwrap(loaded)
    if not state or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise ModelFileError(
            f"{file} is not a state dict (a dict of named tensors); Foveal reads model weights."
        )
    state = {k.removeprefix("module."): v for k, v in state.items()}
    return {k: v.float().contiguous() if v.is_floating_point() else v for k, v in state.items()}


def _load_pickle(file: Path) -> object:
    try:
        return torch.load(file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise ModelFileError(
            f"{file} holds more than tensors; Foveal loads only weights: save a state dict or safetensors."
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as error:
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise ModelFileError(f"{file} is not a readable PyTorch weights file ({first}).") from None


def _unwrap(loaded: object) -> dict:
    """The state dict inside a training checkpoint's usual wrappers."""
    while isinstance(loaded, dict):
        inner = next((loaded[k] for k in WRAPPERS if isinstance(loaded.get(k), dict)), None)
        if inner is None:
            return loaded
        loaded = inner
    return {}


def config_from_state(state: dict[str, torch.Tensor], *, name: str, where: str) -> TimmViTConfig:
    """The timm ViT a state dict (timm's keys) is the weights of, read from its tensors' shapes.

    The head count is not in the weights: embed_dim / 64, as every timm ViT and DeiT of the tiny, small
    and base sizes. Class-token models are taken to pool with it (timm's "token"); a model with fc_norm
    pools by the image tokens' mean ("avg").

    Raises:
        ModelFileError: not the weights of a timm ViT.
        ConfigError: a ViT this family does not rebuild (a distilled DeiT, no head, no position embedding).
    """
    proj, pos = state.get("patch_embed.proj.weight"), state.get("pos_embed")
    if proj is None or proj.ndim != 4 or "blocks.0.attn.qkv.weight" not in state:
        raise ModelFileError(
            f"{where} holds no timm ViT weights (no patch_embed.proj.weight or blocks.0.attn.qkv.weight); "
            "Foveal reads timm ViT and DeiT checkpoints."
        )
    if "dist_token" in state or "head.weight" not in state or pos is None:
        what = (
            "a distilled DeiT (dist_token)"
            if "dist_token" in state
            else "a ViT without a position embedding"
            if pos is None
            else "a ViT without a classifier head (head.weight)"
        )
        raise ConfigError(
            f"{where} is {what}; Foveal reads ViT and DeiT classifiers (e.g. deit_tiny_patch16_224, "
            "vit_small_patch16_224)."
        )
    embed_dim, in_chans, patch, _ = proj.shape
    class_token = "cls_token" in state
    reg_tokens = state["reg_token"].shape[1] if "reg_token" in state else 0
    length, prefix = pos.shape[1], int(class_token) + reg_tokens
    if _is_square(length - prefix):
        side, no_embed_class = math.isqrt(length - prefix), False
    elif prefix and _is_square(length):  # DeiT-III: positions for the image tokens only
        side, no_embed_class = math.isqrt(length), True
    else:
        raise ModelFileError(
            f"{where}: a position embedding of {length} tokens lays out no square token grid."
        )
    if embed_dim % HEAD_DIM:
        raise ConfigError(
            f"{where}: the head count of a ViT of width {embed_dim} cannot be read from its weights; "
            "put timm's config.json for it beside the file."
        )
    fc_norm = "fc_norm.weight" in state
    size = SIZE_NAMES.get(embed_dim)
    img_size = side * patch
    return TimmViTConfig(
        name=name,
        img_size=img_size,
        in_chans=in_chans,
        num_classes=state["head.weight"].shape[0],
        architecture=f"vit_{size}_patch{patch}_{img_size}" if size else "vision_transformer",
        patch_size=patch,
        embed_dim=embed_dim,
        depth=1 + max(int(m.group(1)) for k in state if (m := re.match(r"blocks\.(\d+)\.", k))),
        num_heads=embed_dim // HEAD_DIM,
        mlp_ratio=state["blocks.0.mlp.fc1.weight"].shape[0] / embed_dim,
        qkv_bias="blocks.0.attn.qkv.bias" in state,
        class_token=class_token,
        reg_tokens=reg_tokens,
        no_embed_class=no_embed_class,
        global_pool="avg" if fc_norm or not class_token else "token",
        fc_norm=fc_norm,
    )


def _is_square(n: int) -> bool:
    return n > 0 and math.isqrt(n) ** 2 == n
