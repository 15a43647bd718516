"""The memory a training step holds per image, and the largest batch this machine can hold.

A budgeted run on large images must not pick a batch whose activations outgrow the memory: with
thousands of tokens per image, one batch of 256 held more than 10 GB (issue #12). The activations
are measured, not modelled: autograd reports every tensor it keeps for the backward pass, whichever
attention kernel runs, so the figure holds for any preset at any size.
"""

from __future__ import annotations

import torch
from torch import nn

from foveal.data.mapped import available_memory
from foveal.models import create_model

STEP_MEMORY_SHARE = 0.25  # of the memory available once the data is loaded; the rest is for the
# optimizer, the batches in flight, evaluation and the rest of the system
BACKWARD_FACTOR = 2.0  # the backward pass's activation gradients are about as large as what it reads


def largest_batch_in_memory(
    model_name: str, img_size: int, num_classes: int, device: torch.device
) -> int | None:
    """The most images one training step of `model_name` at `img_size` can take while its
    activations (and their gradients) stay within STEP_MEMORY_SHARE of `device`'s free memory;
    at least 1. None where the free memory is unknown."""
    available = free_memory(device)
    if available is None:
        return None
    model = create_model(model_name, num_classes=num_classes, img_size=img_size)
    per_image = BACKWARD_FACTOR * activation_bytes_per_image(model, img_size)
    return max(1, int(STEP_MEMORY_SHARE * available // max(1, per_image)))


def activation_bytes_per_image(model: nn.Module, img_size: int) -> int:
    """Bytes autograd keeps per image for `model`'s backward pass in training mode, measured on
    the CPU: what a batch of 2 keeps minus what a batch of 1 does (weights and other fixed costs
    cancel out)."""
    return _saved_bytes(model, img_size, batch=2) - _saved_bytes(model, img_size, batch=1)


def free_memory(device: torch.device) -> int | None:
    """Bytes `device` can still allocate: a CUDA GPU's free memory, else the system's (CPUs, and
    Apple's unified memory) as `foveal.data.mapped.available_memory` reads it."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    return available_memory()


def _saved_bytes(model: nn.Module, img_size: int, batch: int) -> int:
    """Bytes of the distinct storages autograd saves during one forward pass of `batch` images."""
    storages: dict[int, int] = {}  # data pointer -> bytes: views of one storage count once

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    in_chans = model.config.in_chans
    images = torch.zeros(batch, in_chans, img_size, img_size).contiguous(memory_format=torch.channels_last)
    model.train()
    with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        output = model(images)  # held until the sum: the saved tensors (and their addresses) stay alive
    saved = sum(storages.values())
    del output
    return saved
