"""Batch norm over the global batch when ranks share a step, on the CPU as on CUDA.

One process normalises a batch of B images by their mean and variance. Ranks that each hold B/W of
them would each use their own slice's statistics instead, and train another model. torch's
SyncBatchNorm gathers the statistics across ranks, but only for GPU tensors; `CPUSyncBatchNorm` is
the CPU (gloo) path: the per-channel sums, sums of squares and counts are all_reduced with a
differentiable all_reduce, so the gradient reaches every rank's images as one process's would.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm


class _SumOverRanks(torch.autograd.Function):
    """all_reduce (sum) whose gradient is the all_reduce of the gradients: every rank's output is the
    same sum, so each input's gradient is the sum of all ranks' output gradients."""

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, tensor: torch.Tensor) -> torch.Tensor:
        total = tensor.clone()
        torch.distributed.all_reduce(total)
        return total

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor) -> torch.Tensor:
        total = grad.clone()
        torch.distributed.all_reduce(total)
        return total


class CPUSyncBatchNorm(_BatchNorm):
    """Batch norm whose training statistics are over all ranks' images, from one all_reduce per layer
    (float64 sums, so E[x^2] - E[x]^2 keeps its precision). Not a subclass of nn.SyncBatchNorm,
    which DDP refuses on the CPU."""

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.ndim < 2:
            raise ValueError(f"expected (B, C, ...) input, got {input.ndim} dimensions")

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if not self.training or not torch.distributed.is_initialized():
            return super().forward(input)  # running statistics, or one process: plain batch norm
        channels = input.shape[1]
        dims = [d for d in range(input.ndim) if d != 1]  # all but C of (B, C, H, W)
        x = input.double()
        count = torch.full((1,), input.numel() / channels, dtype=torch.float64)
        totals = _SumOverRanks.apply(torch.cat([x.sum(dims), (x * x).sum(dims), count]))  # (2C + 1,)
        n = totals[-1]
        mean = totals[:channels] / n
        var = (totals[channels : 2 * channels] / n - mean * mean).clamp_min(0.0)  # biased, as BN normalises
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                factor = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                unbiased = var * n / (n - 1).clamp_min(1.0)
                self.running_mean.lerp_(mean.to(self.running_mean.dtype), factor)
                self.running_var.lerp_(unbiased.to(self.running_var.dtype), factor)
        shape = [1, channels] + [1] * (input.ndim - 2)
        scale = torch.rsqrt(var + self.eps).view(shape)
        y = (x - mean.view(shape)) * scale
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y.to(input.dtype)


def convert(model: nn.Module, device: torch.device) -> None:
    """Make every batch-norm layer inside `model` normalise by global-batch statistics, in place:
    torch's SyncBatchNorm on CUDA (its layers share the old ones' parameters and statistics), else
    CPUSyncBatchNorm, given to each layer as its class (its state, and any subclass's settings made at
    construction, such as a frozen scale, stay as they are)."""
    if device.type == "cuda":
        nn.SyncBatchNorm.convert_sync_batchnorm(model)
        return
    for module in model.modules():
        if isinstance(module, _BatchNorm):
            module.__class__ = CPUSyncBatchNorm
