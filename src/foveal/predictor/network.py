"""What a loaded model runs on: one small protocol, a PyTorch and an onnxruntime implementation.

The one inference path (predictor/inference.py), the explanation workflow and the faithfulness
curves call a `Network`, never asking which kind it is:

    logits = network(normalized)                          # (B, K) over the network's own views
    logits, pooled = network.forward_pooled(normalized)   # pooled (B, C), or None
    network.methods                                       # the map methods it can show
    maps = network.token_maps(normalized, method, targets)  # TokenMaps: (B, h, w) on its token grid

`TorchNetwork` wraps a Foveal PyTorch model (every method, gradients included); `OnnxNetwork`
(predictor/onnx_network.py) a graph Foveal exported (the maps in its graph).
"""

from __future__ import annotations

from typing import Protocol

import torch
from torch import nn

from foveal.models.contract import FovealModel
from foveal.models.maps import TokenMaps, available_methods, compute_maps


class Network(Protocol):
    """Normalised images (B, 3, S, S) -> logits (B, K), pooled features and token maps."""

    training: bool

    @property
    def methods(self) -> list[str]: ...

    @property
    def torch_model(self) -> FovealModel:
        """The PyTorch model, or a ConfigError saying where to find it."""
        ...

    def __call__(self, normalized: torch.Tensor) -> torch.Tensor: ...

    def forward_pooled(self, normalized: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]: ...

    def token_maps(
        self, normalized: torch.Tensor, method: str, targets: torch.Tensor, **options
    ) -> TokenMaps: ...

    def train(self, mode: bool = True) -> nn.Module: ...

    def eval(self) -> nn.Module: ...


class TorchNetwork(nn.Module):
    """A Foveal PyTorch model as a `Network`: every map method its outputs allow (models/maps.py)."""

    def __init__(self, model: FovealModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, normalized: torch.Tensor) -> torch.Tensor:
        return self.model(normalized)

    def forward_pooled(self, normalized: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        return self.model.forward_pooled(normalized)

    @property
    def methods(self) -> list[str]:
        return available_methods(self.model)

    @property
    def torch_model(self) -> FovealModel:
        return self.model

    def token_maps(
        self, normalized: torch.Tensor, method: str, targets: torch.Tensor, **options
    ) -> TokenMaps:
        """Maps (B, h, w) of `method` explaining `targets` (B,); options: head_fusion, discard_ratio
        (see `foveal.models.maps.compute_maps`)."""
        return compute_maps(self.model, normalized, method, targets.to(normalized.device), **options)
