"""How fast this machine trains now: a few real training steps of a model on a synthetic batch.

The budget ladder plans with it (training/recipe.py). Its first yardstick, a 1,024-square fp32 matmul,
ran in fp32 where the run trains under bf16 autocast, so how far it stood from a real step depended on
the CPU kind: the ladder's passes were a third of the real ones on an Intel AMX CPU and a quarter on
the AMD EPYC (issue #12), and its thresholds could hold for only one of them. Timing the step itself
measures what the budget buys: the same layers, precision, threads and memory layout, the backward
pass and the optimizer step included. It cannot be steadier than the machine: on the AMD EPYC both
yardsticks moved by 1.4-1.6x within a minute (benchmarks/planning_rate.py).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

import torch
from torch import nn

from foveal.models import create_model
from foveal.runtime import autocast_for, random_state_kept, to_fast_layout
from foveal.training.clock import SYSTEM_CLOCK, Clock
from foveal.training.step import train_step

PROBE_BATCH = 64  # images per timed step: a quarter of the ladder's batch, so that a slow machine's
# step stays short; on the AMD EPYC at 32 px its median rate equals batch 256's (239 GFLOP/s each,
# benchmarks/planning_rate.py)
QUICK_PROBE_BATCH = 16  # images per step when only the start line's epoch estimate needs the rate: a
# run without a plan pays PROBE_MIN_STEPS of these (a quarter of PROBE_BATCH's time), not a second
PROBE_SECONDS = 1.0  # timed steps stop after this long (the warm-up step and PROBE_MIN_STEPS aside)
PROBE_MIN_STEPS = 3  # the median of at least this many timed steps
PROBE_MAX_STEPS = 20


@dataclass(frozen=True)
class StepSpeed:
    """What one probe measured."""

    model: str
    img_size: int  # px
    batch: int
    steps: int  # timed, after one warm-up step
    images_per_second: float  # the median step's


def measure_training_speed(
    model_name: str,
    img_size: int,
    num_classes: int,
    device: torch.device,
    precision: str = "auto",
    *,
    batch: int = PROBE_BATCH,
    seconds: float = PROBE_SECONDS,
    clock: Clock = SYSTEM_CLOCK,
) -> StepSpeed:
    """Images per second `model_name` trains at on `device` now: the median of timed `train_step`s
    (forward, loss, backward, SGD step) on a random (batch, C, img_size, img_size) batch under
    `precision`'s autocast, after one untimed step (kernel choice, allocation). Takes about
    `seconds` plus the warm-up, and at least PROBE_MIN_STEPS steps however slow they are, on `clock`
    (the machine's: a run's FakeClock does not reach here, as no fake clock can measure a machine;
    tests that need a given speed stand in for this function). The run's random streams are left as
    they were: how many steps run follows the clock."""
    with random_state_kept(device):
        model = create_model(model_name, num_classes=num_classes, img_size=img_size)
        model = to_fast_layout(model.to(device))
        optimizer = torch.optim.SGD(model.parameters(), lr=0.0)  # the update's cost, the weights kept
        images = torch.randn(batch, model.config.in_chans, img_size, img_size, device=device)
        images = images.contiguous(memory_format=torch.channels_last)
        targets = torch.randint(0, num_classes, (batch,), device=device)
        criterion = nn.CrossEntropyLoss()
        autocast = autocast_for(device, precision)  # one context, entered every step, as the loop's

        def step() -> float:  # seconds; train_step reads the loss back, which waits for a GPU
            started = clock.now()
            train_step(model, images, targets, optimizer, criterion, autocast=autocast)
            return clock.now() - started

        step()
        times: list[float] = []
        deadline = clock.now() + seconds
        while len(times) < PROBE_MIN_STEPS or (clock.now() < deadline and len(times) < PROBE_MAX_STEPS):
            times.append(step())
    return StepSpeed(model_name, img_size, batch, len(times), batch / statistics.median(times))
