"""Where a model looks: one relevance map per image on the model's token (or feature) grid.

Every method takes normalised images (B, C, H, W) and returns `TokenMaps`: maps (B, h, w) on the
model's token grid and the class each explains. Methods read only the model's `ModelOutput`
(models/contract.py), never its class, so every family is explained the same way:

- `pool`: the attention-pooling weights, the share of the pooled vector each token makes up.
- `rollout`: attention rollout (Abnar & Zuidema 2020) through every block, read out through the
  pooling weights (CCT has no class token) or through the class token's row when there is one.
- `grad-rollout`: attention weighted by its gradient for a class, rolled out with Chefer et al.'s
  rule (2021, "Generic attention-model explainability"), read out through the class token or, with
  attention pooling, through what each token adds to the class's logit: class-specific.
- `gradcam`: Grad-CAM (Selvaraju et al. 2017) on the last feature grid, for CNNs and attention
  models alike.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from foveal.errors import ConfigError, FovealError
from foveal.models.layers.output import ModelOutput

METHODS = ("pool", "rollout", "grad-rollout", "gradcam")
ATTENTION_METHODS = ("pool", "rollout", "grad-rollout")
HEAD_FUSIONS = ("mean", "max", "min")


class ExplainError(FovealError):
    """An explanation that cannot be made for this model or input."""


@dataclass
class TokenMaps:
    maps: torch.Tensor  # (B, h, w) float32, non-negative
    targets: torch.Tensor  # (B,) the class each map explains


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

    `targets` (B,) are the classes to explain. Callers that show labels pass the classes of the one
    inference path (`foveal.predictor.inference`), so that a map explains the class the user is shown; None
    explains the class this pass's own logits rank first (for a bare module).
    """
    if method not in METHODS:
        raise ConfigError(f"explanation method {method!r} is unknown; expected one of {', '.join(METHODS)}.")
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
    """The methods that can explain `model`, in METHODS order, read from one small explained pass."""
    out = _probe(model)
    return [m for m in METHODS if _unavailable(m, out) is None]


@torch.no_grad()
def _probe(model: nn.Module) -> ModelOutput:
    """The explained output of one blank image at the model's size: what the model can show."""
    config = model.config
    device = next(model.parameters()).device
    blank = torch.zeros(1, config.in_chans, config.img_size, config.img_size, device=device)
    was_training = model.training
    model.eval()
    try:
        return model.forward_explained(blank)
    finally:
        model.train(was_training)


def _unavailable(method: str, out: ModelOutput) -> str | None:
    """Why `method` cannot explain the model that gave `out`, or None when it can."""
    if method in ATTENTION_METHODS and not out.attentions:
        return (
            f"--method {method} is not available for this model (it has no attention layers); "
            "use --method gradcam."
        )
    if method == "pool" and out.pool_weights is None:
        return (
            "--method pool needs attention pooling, and this model pools without weights (a class "
            "token or an average); use --method rollout or grad-rollout, or gradcam."
        )
    return None


def _require(method: str, out: ModelOutput) -> None:
    reason = _unavailable(method, out)
    if reason is not None:
        raise ExplainError(reason)


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
    _require("pool", out)
    return TokenMaps(to_grid(out.pool_weights.float(), out.grid), _targets(out.logits, targets))


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


def read_out(relevance: torch.Tensor, prefix: int, pool_weights: torch.Tensor | None) -> torch.Tensor:
    """(B, N, N) token-to-token relevance -> (B, h * w) relevance of each image token to the output.

    With attention pooling the output is the pooled vector, so rows are weighted by the pooling
    weights (B, h * w or N; prefix tokens pooled over get no weight); with a class token (`prefix`
    tokens before the image's) it is row 0, without the prefix tokens' own columns.
    """
    if pool_weights is not None:
        weights = pool_weights.float()
        weights = F.pad(weights, (relevance.shape[-1] - weights.shape[1], 0))  # (B, N)
        return (weights.unsqueeze(1) @ relevance).squeeze(1)[:, prefix:]
    if prefix:
        return relevance[:, 0, prefix:]
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
    _require("rollout", out)
    relevance = rollout(out.attentions, head_fusion, discard_ratio)
    maps = to_grid(read_out(relevance, out.features.prefix_tokens, out.pool_weights), out.grid)
    return TokenMaps(maps, _targets(out.logits, targets))


def _grad_rollout(model: nn.Module, images: torch.Tensor, targets: torch.Tensor | None) -> TokenMaps:
    with torch.enable_grad():
        # The input joins the graph so that gradients exist even if every weight is frozen.
        out = model.forward_explained(images.detach().requires_grad_(True))
        _require("grad-rollout", out)
        chosen = _targets(out.logits.detach(), targets)
        score = out.logits.gather(1, chosen[:, None]).sum()  # each image's own class score
        grads = torch.autograd.grad(score, out.attentions)
    first = out.attentions[0]
    n = first.shape[-1]
    relevance = torch.eye(n, device=first.device).expand(first.shape[0], n, n)
    for attention, grad in zip(out.attentions, grads):
        weighted = (grad * attention).clamp_min(0).mean(dim=1).detach().float()  # (B, N, N)
        relevance = relevance + weighted @ relevance
    readout = None
    if out.pool_weights is not None:
        # The output is the pooled vector: read it out through what each token gave the class, not
        # through the pooling weights, which are the same for every class (the identity term of the
        # relevance would otherwise make the map the `pool` map whatever the class).
        readout = pooled_contributions(model, out, chosen).clamp_min(0)
    maps = to_grid(read_out(relevance, out.features.prefix_tokens, readout), out.grid)
    return TokenMaps(maps, chosen)


def pooled_contributions(model: nn.Module, out: ModelOutput, targets: torch.Tensor) -> torch.Tensor:
    """(B, N) what each token adds to its image's `targets` logit through attention pooling: its
    pooling weight times its token's dot product with the logit's gradient at the pooled vector,
    w_i <t_i, d logit / d pooled>. For a linear head they sum to the logit less its bias. Tokens the
    pooling did not weigh (a prefix pooled apart) come first and get none: (B, n) as `pool_weights`."""
    weights = out.pool_weights.detach().float()  # (B, n): n = N, or the image tokens only
    tokens = out.features.tokens.detach().float()[:, -weights.shape[1] :]  # (B, n, D) pooled over
    with torch.enable_grad():
        pooled = (weights.unsqueeze(1) @ tokens).squeeze(1).requires_grad_(True)  # (B, D), as pooled
        logits = model.forward_head(pooled.to(out.features.tokens.dtype))
        (gradient,) = torch.autograd.grad(logits.gather(1, targets[:, None]).sum(), pooled)
    return weights * (tokens @ gradient.unsqueeze(-1)).squeeze(-1)


def _gradcam(model: nn.Module, images: torch.Tensor, targets: torch.Tensor | None) -> TokenMaps:
    """Grad-CAM on the last layer's image tokens, which for a CNN are its last feature map."""
    with torch.enable_grad():
        out = model.forward_explained(images.detach().requires_grad_(True))
        chosen = _targets(out.logits.detach(), targets)
        score = out.logits.gather(1, chosen[:, None]).sum()
        (grad,) = torch.autograd.grad(score, out.features.tokens)  # (B, N, C)
    tokens = out.features.image_tokens.detach()  # (B, h*w, C)
    grad = grad[:, out.features.prefix_tokens :]
    weights = grad.mean(dim=1, keepdim=True)  # (B, 1, C): each channel's importance
    maps = (weights * tokens).sum(dim=2).clamp_min(0).float()  # (B, h*w)
    return TokenMaps(to_grid(maps, out.grid), chosen)
