"""The memory a run will hold, known before its first step: what a training step keeps per image, the
largest batch this machine can hold, and the one-line refusal of a run that would not fit.

A run that outgrows the memory is killed by the kernel without a word: `--batch-size 100000` on 245
photos was, after 36 s, leaving a run folder with only its config (issue #33); one batch of 256 at
thousands of tokens per image held more than 10 GB (issue #12). The activations are measured, not
modelled: autograd reports every tensor it keeps for the backward pass, whichever attention kernel
runs, so the figure holds for any model at any size, on the run's device and at its precision.
"""

from __future__ import annotations

import copy
import math
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import torch
from torch import nn
from torch.multiprocessing.reductions import StorageWeakRef

from foveal.data.mapped import available_memory
from foveal.errors import FovealError
from foveal.models import create_model
from foveal.runtime import autocast_for, random_state_kept

STEP_MEMORY_SHARE = 0.25  # of the free memory once the data is loaded, for a batch the recipe chooses:
# the rest is for validation, the batches in flight and the rest of the system
FIT_MEMORY_SHARE = 0.8  # of that free memory, the most any run's step may take, else it is refused:
# the rest is for validation's batches, the allocator's slack and the other programs on the machine
# A real step's peak over the bytes autograd saves for it, per image: a batch's RSS rise over batch 1's,
# over the saved bytes (fp32, a 2-core AMD EPYC, torch 2.14.1): foveal-small at 224 px 1.21 (its
# explicit attention's probabilities), hybrid-airbench 1.12, hybrid-airbench-half 1.09; the largest,
# rounded up. (It was 2.0, unmeasured: 1.7x the real step for the hybrids.)
BACKWARD_FACTOR = 1.25
OPTIMIZER_COPIES = 4  # of the parameters: the weights, their gradients and AdamW's two moments


@dataclass(frozen=True)
class StepMemory:
    """Bytes one training step of a model at an image size holds: a fixed part and a part per image."""

    per_image: int  # the activations autograd keeps for the backward pass, times BACKWARD_FACTOR
    fixed: int  # OPTIMIZER_COPIES copies of the parameters

    def bytes_for(self, batch: int) -> int:
        """Bytes of a step of `batch` images."""
        return self.fixed + batch * self.per_image

    def largest_batch(self, available: float) -> int:
        """The most images a step can take within `available` bytes; 0 when not even one."""
        return max(0, int((available - self.fixed) // max(1, self.per_image)))


def measure_step_memory(
    model: nn.Module, img_size: int, device: torch.device, precision: str = "fp32"
) -> StepMemory:
    """What a training step of `model` at `img_size` holds on `device` under `precision`, measured on
    a copy of it: the model's weights, batch-norm statistics and the run's random streams stay as
    they were."""
    with random_state_kept(device):
        measured = copy.deepcopy(model).to(device)
        per_image = activation_bytes_per_image(measured, img_size, autocast_for(device, precision))
    parameter_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    return StepMemory(int(BACKWARD_FACTOR * per_image), OPTIMIZER_COPIES * parameter_bytes)


def largest_batch_in_memory(
    model_name: str, img_size: int, num_classes: int, device: torch.device, precision: str = "fp32"
) -> int | None:
    """The most images one training step of `model_name` at `img_size` can take while it stays within
    STEP_MEMORY_SHARE of `device`'s free memory; at least 1. None where the free memory is unknown."""
    available = free_memory(device)
    if available is None:
        return None
    with random_state_kept(device):  # building a model draws its initial weights
        model = create_model(model_name, num_classes=num_classes, img_size=img_size)
    memory = measure_step_memory(model, img_size, device, precision)
    return max(1, memory.largest_batch(STEP_MEMORY_SHARE * available))


def activation_bytes_per_image(
    model: nn.Module, img_size: int, autocast: AbstractContextManager | None = None
) -> int:
    """Bytes autograd keeps per image for `model`'s backward pass in training mode, on the model's
    device: what a batch of 2 keeps minus what a batch of 1 does (weights and other fixed costs
    cancel out). Runs `model` in training mode: pass a copy to keep its batch-norm statistics."""
    return _saved_bytes(model, img_size, 2, autocast) - _saved_bytes(model, img_size, 1, autocast)


def free_memory(device: torch.device) -> int | None:
    """Bytes `device` can still allocate: a CUDA GPU's free memory (with what PyTorch holds cached
    but unused), the system's for the CPU (`foveal.data.mapped.available_memory`), None elsewhere:
    Apple's MPS allocates unified memory under a limit of its own that no free figure reports."""
    if device.type == "cuda":
        cached = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
        return torch.cuda.mem_get_info(device)[0] + cached
    if device.type == "cpu":
        return available_memory()
    return None


def check_step_fits(
    memory: StepMemory, batch_size: int, train_images: int, device: torch.device, processes: int = 1
) -> None:
    """Refuse a run whose training step would take more than FIT_MEMORY_SHARE of `device`'s free
    memory, in one line that says the largest batch that fits. A step holds at most `train_images`
    images (a batch larger than the data is one step an epoch), shared by `processes`, each on its own
    device; nothing is checked where the free memory is unknown.

    Raises:
        FovealError: the step does not fit.
    """
    free = free_memory(device)
    if free is None:
        return
    images = math.ceil(min(batch_size, train_images) / processes)  # one process's share of a step
    allowed = FIT_MEMORY_SHARE * free
    if memory.bytes_for(images) <= allowed:
        return
    need = (
        f"a training step of {images:,} images would need about {gigabytes(memory.bytes_for(images))} "
        f"({gigabytes(memory.per_image)} an image), more than the {gigabytes(allowed)} a step may take "
        f"of the {gigabytes(free)} free on {device}"
    )
    largest = memory.largest_batch(allowed) * processes
    if largest < processes:
        raise FovealError(f"{need}; not even one image fits: use a smaller --img-size or --model.")
    raise FovealError(
        f"--batch-size {batch_size}: {need}; the largest batch that fits is {largest:,}: "
        f"pass --batch-size {largest} (or a smaller --img-size)."
    )


def gigabytes(size: float) -> str:
    """'1.3 GB' (10^9 bytes), or '96 MB' below a gigabyte: for the start line and the refusals."""
    return f"{size / 1e9:.1f} GB" if size >= 1e9 else f"{size / 1e6:.0f} MB"


def _saved_bytes(model: nn.Module, img_size: int, batch: int, autocast: AbstractContextManager | None) -> int:
    """Bytes of the distinct storages autograd saves during one forward pass of `batch` images.

    Nothing saved is kept (the backward never runs): measuring a step too large for the memory takes
    about what one layer's activations take, not what the step would. A storage is counted once
    while it lives, however many of its views are saved; one that has been freed and another later
    allocated at its address are two."""
    total = 0
    counted: dict[int, StorageWeakRef] = {}  # data pointer -> the storage counted there

    def pack(tensor: torch.Tensor) -> None:
        nonlocal total
        storage = tensor.untyped_storage()
        seen = counted.get(storage.data_ptr())
        if seen is None or seen.expired():
            total += storage.nbytes()
            counted[storage.data_ptr()] = StorageWeakRef(storage)

    device = next(model.parameters()).device
    in_chans = model.config.in_chans
    images = torch.zeros(batch, in_chans, img_size, img_size, device=device)
    images = images.contiguous(memory_format=torch.channels_last)
    model.train()
    with torch.enable_grad(), autocast or nullcontext():
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda _: None):
            model(images)
    return total
