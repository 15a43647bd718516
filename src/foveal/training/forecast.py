"""What a run will take, said on its start line before the first step: how long an epoch lasts and
how much memory training holds, so that an hour-long epoch or a step the size of the machine is seen
at once rather than found out (issue #33: 245 photos, 84 minutes, 20.6 GB, and nothing said).

An epoch's seconds are estimated from the measured training rate (recipe.measured_training_rate, in
GFLOP/s) and the model's FLOPs; the memory from the activations a step keeps per image, measured
(footprint.py), times the images of a step, plus the decoded images held in memory.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from foveal.data.sources import DataSplits
from foveal.models.flops import forward_flops
from foveal.training import distributed
from foveal.training.footprint import StepMemory, free_memory, gigabytes


def forecast_words(
    model: nn.Module,
    img_size: int,
    batch_size: int,
    data: DataSplits,
    device: torch.device,
    step_memory: StepMemory,
    training_gflops: float | None,
) -> str:
    """The start line's forecast: 'batch 16, an epoch about 9 s, memory about 0.3 GB (a step 0.2 GB,
    decoded images 0.1 GB; 17.9 GB free)'. The epoch is left out without a measured rate
    (`training_gflops` None), the free memory where it is unknown."""
    words = [f"batch {batch_size}"]
    if training_gflops:
        seconds = epoch_seconds(model, img_size, len(data.train), training_gflops)
        words.append(f"an epoch about {about(seconds)}")
    step_images = math.ceil(min(batch_size, len(data.train)) / distributed.world().size)  # one process's
    step, images = step_memory.bytes_for(step_images), held_image_bytes(data)
    free = free_memory(device)
    free_words = "" if free is None else f"; {gigabytes(free)} free"
    words.append(
        f"memory about {gigabytes(step + images)} (a step {gigabytes(step)}, decoded images "
        f"{'memory-mapped' if data.train.mapped else gigabytes(images)}{free_words})"
    )
    return ", ".join(words)


def epoch_seconds(model: nn.Module, img_size: int, train_images: int, training_gflops: float) -> float:
    """Seconds of training steps an epoch of `train_images` takes at `training_gflops` (GFLOP/s, all
    processes together): 3 forward passes' FLOPs an image (the backward counts for two)."""
    return train_images * 3 * forward_flops(model, img_size) / 1e9 / training_gflops


def held_image_bytes(data: DataSplits) -> int:
    """Bytes of decoded images held in memory: the training and held-out sets not memory-mapped."""
    held = [part.images for part in (data.train, data.val) if not part.mapped]
    return sum(images.numel() * images.element_size() for images in held)


def about(seconds: float) -> str:
    """'9 s', '3.2 min', '1.4 h': a duration rounded for reading."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"
