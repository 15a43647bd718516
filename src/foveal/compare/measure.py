"""What the comparison measures on a trained model besides accuracy: size, FLOPs, batch-1 latency."""

from __future__ import annotations

import time
from statistics import median

import torch
from torch import nn

from foveal.models.flops import forward_flops


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@torch.inference_mode()
def latency_ms(
    model: nn.Module, img_size: int, device: torch.device, repeats: int = 50, warmup: int = 5
) -> float:
    """Median milliseconds of one forward pass at batch 1 (eval mode), after `warmup` passes."""
    model.eval()
    image = torch.randn(1, 3, img_size, img_size, device=device).contiguous(memory_format=torch.channels_last)
    timings = []
    for n in range(warmup + repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        model(image)
        if device.type == "cuda":
            torch.cuda.synchronize()
        if n >= warmup:
            timings.append((time.perf_counter() - start) * 1000)
    return median(timings)


def gflops_per_image(model: nn.Module, img_size: int) -> float:
    """Forward GFLOPs of one image (multiply-adds counted as two)."""
    return forward_flops(model, img_size) / 1e9
