"""Where a model looks: one relevance map per image on the model's token (or feature) grid.

Every method takes normalised images (B, C, H, W) and returns `TokenMaps`: maps (B, h, w) on the
grid the tokenizer produced, and the logits (B, K) of the same forward pass. Methods:

- `pool`: the attention-pooling weights, the share of the pooled vector each token makes up.
- `rollout`: attention rollout (Abnar & Zuidema 2020) through every block, read out through the
  pooling weights (CCT has no class token) or through the class token's row when there is one.
- `grad-rollout`: attention weighted by its gradient for a class, rolled out with Chefer et al.'s
  rule (2021, "Generic attention-model explainability"): class-specific.
- `gradcam`: Grad-CAM (Selvaraju et al. 2017) on the last feature grid, for CNNs and attention
  models alike.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from foveal.errors import ConfigError, FovealError

METHODS = ("pool", "rollout", "grad-rollout", "gradcam")
ATTENTION_METHODS = ("pool", "rollout", "grad-rollout")
HEAD_FUSIONS = ("mean", "max", "min")


class ExplainError(FovealError):
    """An explanation that cannot be made for this model or input."""


@dataclass
class TokenMaps:
    maps: torch.Tensor  # (B, h, w) float32, non-negative
    logits: torch.Tensor  # (B, K)
    targets: torch.Tensor  # (B,) the class each map explains (the predicted one unless given)


def has_attention(model: nn.Module) -> bool:
    return hasattr(model, "blocks") and len(model.blocks) > 0


def compute_maps(
    model: nn.Module,
    images: torch.Tensor,
    method: str,
    targets: torch.Tensor | None = None,
    *,
    head_fusion: str = "mean",
    discard_ratio: float = 0.0,
) -> TokenMaps:
    """Maps (B, h, w) of `method` for normalised `images` (B, C, H, W); `model` must be in eval mode.

    `targets` (B,) are the classes to explain (class-specific methods); None: the predicted class.
    """
    check_method(model, method)
    if head_fusion not in HEAD_FUSIONS:
        raise ConfigError(
            f"head fusion {head_fusion!r} is unknown; expected one of {', '.join(HEAD_FUSIONS)}."
        )
    if not 0.0 <= discard_ratio < 1.0:
        raise ConfigError(f"discard ratio must be in [0, 1), got {discard_ratio}.")
    if method == "pool":
        return _pool(model, images, targets)
    if method == "rollout":
        return _rollout(model, images, targets, head_fusion, discard_ratio)
    if method == "grad-rollout":
        return _grad_rollout(model, images, targets)
    return _gradcam(model, images, targets)


def available_methods(model: nn.Module) -> list[str]:
    """The methods that can explain `model`, in METHODS order."""
    available = []
    for method in METHODS:
        try:
            check_method(model, method)
        except ExplainError:
            continue
        available.append(method)
    return available


def check_method(model: nn.Module, method: str) -> None:
    """Raise a clear error if `method` is unknown or cannot explain `model`."""
    if method not in METHODS:
        raise ConfigError(f"explanation method {method!r} is unknown; expected one of {', '.join(METHODS)}.")
    name = type(model).__name__
    if method in ATTENTION_METHODS and not has_attention(model):
        raise ExplainError(
            f"--method {method} is not available for this model ({name} has no attention layers); "
            "use --method gradcam."
        )
    if method == "pool" and getattr(model, "attention_pool", None) is None:
        raise ExplainError(
            "--method pool needs attention pooling, and this model reads a class token instead; "
            "use --method rollout or grad-rollout."
        )


def to_grid(token_values: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """(B, N) values of the image tokens -> (B, h, w); N must be h * w."""
    h, w = grid
    if token_values.shape[1] != h * w:
        raise ExplainError(
            f"the map has {token_values.shape[1]} tokens but the grid is {h}x{w} = {h * w}; "
            "the model's tokenizer and its map do not match."
        )
    return token_values.reshape(token_values.shape[0], h, w)


def _targets(logits: torch.Tensor, targets: torch.Tensor | None) -> torch.Tensor:
    if targets is None:
        return logits.argmax(dim=1)
    if targets.min() < 0 or targets.max() >= logits.shape[1]:
        raise ConfigError(f"class index out of range: the model has {logits.shape[1]} classes.")
    return targets.to(logits.device)


@torch.no_grad()
def _pool(model: nn.Module, images: torch.Tensor, targets: torch.Tensor | None) -> TokenMaps:
    out = model.forward_explained(images)
    return TokenMaps(to_grid(out.pool_weights.float(), out.grid), out.logits, _targets(out.logits, targets))


def fuse_heads(attention: torch.Tensor, how: str) -> torch.Tensor:
    """(B, heads, N, N) -> (B, N, N)."""
    if how == "mean":
        return attention.mean(dim=1)
    return attention.amax(dim=1) if how == "max" else attention.amin(dim=1)


def rollout(
    attentions: list[torch.Tensor], head_fusion: str = "mean", discard_ratio: float = 0.0
) -> torch.Tensor:
    """Attention rollout (B, N, N): row i says how much output token i draws on input token i'.

    Each block's heads are fused, the weakest `discard_ratio` of each row's links are dropped (the
    diagonal is kept), the identity is added for the residual path and rows are renormalised; the
    blocks' matrices are then multiplied, last block on the left.
    """
    first = attentions[0]
    n = first.shape[-1]
    eye = torch.eye(n, device=first.device, dtype=torch.float32)
    result = eye.expand(first.shape[0], n, n)
    for attention in attentions:
        fused = fuse_heads(attention.float(), head_fusion)
        if discard_ratio > 0:
            drop = int(n * discard_ratio)
            if drop:
                weakest = fused.topk(drop, dim=-1, largest=False).indices
                kept = torch.ones_like(fused).scatter_(-1, weakest, 0.0)
                fused = fused * torch.maximum(kept, eye)
        mixed = fused + eye
        mixed = mixed / mixed.sum(dim=-1, keepdim=True)
        result = mixed @ result
    return result


def read_out(model: nn.Module, relevance: torch.Tensor, pool_weights: torch.Tensor | None) -> torch.Tensor:
    """(B, N, N) token-to-token relevance -> (B, N_image) relevance of each image token to the output.

    With attention pooling the output is the pooled vector, so rows are weighted by the pooling
    weights; with a class token it is row 0, without the class token's own column.
    """
    if pool_weights is not None:
        return (pool_weights.float().unsqueeze(1) @ relevance).squeeze(1)
    if getattr(model, "cls_token", None) is not None:
        return relevance[:, 0, 1:]
    return relevance.mean(dim=1)


@torch.no_grad()
def _rollout(
    model: nn.Module,
    images: torch.Tensor,
    targets: torch.Tensor | None,
    head_fusion: str,
    discard_ratio: float,
) -> TokenMaps:
    out = model.forward_explained(images)
    relevance = rollout(out.attentions, head_fusion, discard_ratio)
    maps = to_grid(read_out(model, relevance, out.pool_weights), out.grid)
    return TokenMaps(maps, out.logits, _targets(out.logits, targets))


def _grad_rollout(model: nn.Module, images: torch.Tensor, targets: torch.Tensor | None) -> TokenMaps:
    with torch.enable_grad():
        # The input joins the graph so that gradients exist even if every weight is frozen.
        out = model.forward_explained(images.detach().requires_grad_(True))
        chosen = _targets(out.logits.detach(), targets)
        score = out.logits.gather(1, chosen[:, None]).sum()  # each image's own class score
        grads = torch.autograd.grad(score, out.attentions)
    first = out.attentions[0]
    n = first.shape[-1]
    relevance = torch.eye(n, device=first.device).expand(first.shape[0], n, n)
    for attention, grad in zip(out.attentions, grads):
        weighted = (grad * attention).clamp_min(0).mean(dim=1).detach().float()  # (B, N, N)
        relevance = relevance + weighted @ relevance
    pool_weights = None if out.pool_weights is None else out.pool_weights.detach()
    maps = to_grid(read_out(model, relevance, pool_weights), out.grid)
    return TokenMaps(maps, out.logits.detach(), chosen)


def _gradcam(model: nn.Module, images: torch.Tensor, targets: torch.Tensor | None) -> TokenMaps:
    with torch.enable_grad():
        features, logits = _feature_grid(model, images.detach().requires_grad_(True))  # (B, C, h, w), (B, K)
        chosen = _targets(logits.detach(), targets)
        score = logits.gather(1, chosen[:, None]).sum()
        (grad,) = torch.autograd.grad(score, features)
    weights = grad.mean(dim=(2, 3), keepdim=True)  # (B, C, 1, 1): each channel's importance
    maps = (weights * features).sum(dim=1).clamp_min(0).detach().float()
    return TokenMaps(maps, logits.detach(), chosen)


def _feature_grid(model: nn.Module, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The last feature map as (B, C, h, w), kept in the graph, and the logits computed from it."""
    if has_attention(model):
        tokens, _, (h, w) = model.forward_features(images)
        image_tokens = tokens[:, tokens.shape[1] - h * w :]  # without a class token
        grid = image_tokens.transpose(1, 2).reshape(tokens.shape[0], -1, h, w)
        # Re-enter the graph through the grid so that its gradient is the one Grad-CAM needs.
        tokens = torch.cat([tokens[:, : tokens.shape[1] - h * w], grid.flatten(2).transpose(1, 2)], dim=1)
        return grid, model.forward_head(model.pool(tokens)[0])
    features = model.forward_features(images)
    return features, model.forward_head(model.pool(features)[0])
