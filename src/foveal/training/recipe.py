"""The default recipe: the settings a user leaves unset, chosen for the data and the time budget.

With `--epochs` on small images the defaults are fixed (EPOCH_DEFAULTS, what `foveal train digits` and
CIFAR-10 are measured with). With `--time`, what can be learnt depends on how many passes over the
data the budget buys, so the recipe estimates it (the budget, how fast this machine trains the ladder's
cheapest model now, measured by a second of real training steps (training/speed.py), the data set's
size and each model's FLOPs) and takes the largest model of BUDGET_LADDER that still gets enough
passes. Each choice is measured in docs/benchmarks.md ("Recipe ablation"). Photos without `--time`
(`is_photo_run`) are planned the same way, as a PHOTO_PLAN_SECONDS budget that must buy `--epochs`
passes: EPOCH_DEFAULTS' attention-only model would take an hour on 245 photos (issue #33).

Large images come first: when even the cheapest model would get fewer than MIN_BUDGET_PASSES over
the data at its own size, or too many tokens for quadratic attention, the budget trains at a lower
resolution (`budget_img_size`), decided before the images are decoded. The batch is then bounded by
the memory one step's activations take (training/footprint.py), whichever recipe chose it.

Only options left as None are filled in, and the resolved config is what the run folder records,
so a resumed run never re-decides.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from foveal.config import TrainConfig
from foveal.data.sources import count_folder_images
from foveal.models import CNNConfig, HybridConfig, create_model, model_config
from foveal.models.flops import forward_flops
from foveal.runtime import random_state_kept
from foveal.training import distributed, speed
from foveal.training.footprint import largest_batch_in_memory

# How the attention-only models (foveal-*, CCT, ViT) learn: AdamW, cosine decay, CCT's smoothing.
ADAMW_RECIPE: dict[str, Any] = {
    "optimizer": "adamw",
    "lr_decay": "cosine",
    "label_smoothing": 0.1,
    "alternate_flips": False,
    "tta_flip": False,
    "bias_lr_scale": 1.0,
    "lookahead": False,
}
# How the hybrid family and the airbench CNNs learn (models/hybrid.py), after airbench (Jordan 2024):
# Muon for the trunk's batch-normed conv filters and Nesterov SGD for the rest (training/muon.py),
# linear decay to zero, smoothing 0.2, derandomised flips, and each image averaged with its mirror at
# test time (the second view's cost is inside the budget: validations are timed). Measured on them
# (docs/benchmarks.md, issue #12): SGD about a point better than AdamW for both at 3 minutes; Muon for
# the filters 5.1 points better than SGD alone at 3 minutes, 1.5 at 10 and 0.3 at 30 (AMD EPYC,
# bf16); the mirror view 1.0 point more for hybrid-airbench-half at 10. airbench's other choices are
# options, measured at 3 minutes without a gain beyond noise (round 2): 64x batch-norm bias lr,
# identity-initialised trunk convs (models/layers/trunk.py), 2-px crops; lookahead, at 10 minutes neither.
HYBRID_RECIPE: dict[str, Any] = {
    "optimizer": "muon",  # its SGD part at SGD_LR; the filters at config.MUON_LR
    "lr_decay": "linear",
    "label_smoothing": 0.2,
    "alternate_flips": True,
    "tta_flip": True,
    "bias_lr_scale": 1.0,  # 64 (airbench) measured no better at 3 minutes (docs/benchmarks.md, round 2)
    "lookahead": False,  # measured at 10 minutes (AMD EPYC, bf16): 85.75% against 86.10%, noise
}
EPOCH_DEFAULTS: dict[str, Any] = {
    "model": "foveal-small",
    "batch_size": 64,
    "lr": 1e-3,
    "warmup_epochs": 3.0,
    "ema_decay": 0.0,
    **ADAMW_RECIPE,
}


@dataclass(frozen=True)
class Rung:
    """One model of the budget ladder and the settings that go with it."""

    model: str
    min_epochs: float  # taken when the budget buys at least this many passes over the data
    batch_size: int
    min_epochs_photos: float | None = None  # the same at PHOTO_MIN_SIDE px and more, when it differs


# The full-width trunk needs this many estimated passes over the data to beat the half-width one
# trained for the same time (which gets about 3x the passes). Measured on CIFAR-10 (docs/benchmarks.md,
# issue #12): on an Intel AMX CPU at 10 minutes, full 10 real passes against half 28, level (88.0% /
# 88.1%, as CNNs); on the AMD EPYC at 30 minutes, full 9.6 against half 25, +0.61 points (90.18% /
# 89.57%), at 60 minutes 19.5 against 59, +1.19. The probe's estimate for the 30-minute run was 8.3
# (median; 7.0-9.9 as this CPU's speed drifted within a minute): below the crossover, near which the
# choice costs little either way, so that the choice there does not flip with the drift.
FULL_WIDTH_MIN_PASSES = 6.0
# On photos the crossover lies higher. Measured on pets at 160 px and 10 minutes (docs/benchmarks.md, issue
# #33), the 8x8 photo grid: full at 6.8-7.5 estimated passes (7 real) 90.60 / 90.70%, half at 15.7-18.0
# estimated (14-15 real) 91.50 / 91.30 / 91.60%: the half width wins where CIFAR-10's threshold takes the
# full. Twice CIFAR-10's threshold; between 7.5 and 12 and above it not measured on photos.
FULL_WIDTH_MIN_PASSES_PHOTOS = 12.0

# Smallest to largest: attention models on an airbench trunk (models/hybrid.py). min_epochs is in
# estimated passes (the real ones were 15% more for the full width at 30 minutes on the AMD EPYC).
BUDGET_LADDER: tuple[Rung, ...] = (
    Rung("hybrid-airbench-half", 0.0, 256),
    Rung("hybrid-airbench", FULL_WIDTH_MIN_PASSES, 256, FULL_WIDTH_MIN_PASSES_PHOTOS),
)
ADAMW_BUDGET_LR, ADAMW_BUDGET_LR_BATCH = 4e-3, 256  # AdamW under a budget: the foveal-* ladder's, measured
PROBE_SHARE = 0.005  # of the budget, for measuring this machine's training speed (planning_gflops)
PROBE_CLASSES = 10  # the probe's head: a rate in GFLOP/s does not depend on the data's classes
TRAINING_SHARE = 0.9  # of the budget, spent in training steps: the rest decodes, validates, saves, reports
BUDGET_WARMUP_EPOCHS = 0.3  # warmup under a budget (and at most a fifth of the steps, see replan.apply_plan)
STEPS_PER_EPOCH_MIN = 20  # small data sets get a smaller batch, so that an epoch has this many steps
MIN_BUDGET_PASSES = 8.0  # a budget that buys fewer estimated passes at the data's size trains at a lower
# one (3 when the passes were estimated from a matmul, which read a third to a quarter of the real ones)
MIN_BUDGET_IMG_SIZE = 32  # px: a budget never lowers the resolution below CIFAR-10's, the ladder's
MAX_BUDGET_TOKENS = 1024  # tokens per image under a budget (foveal-nano's 32x32 grid, at 128 px):
# attention's cost grows with their square
# Photos: images read at this side or more (--img-size, else the data's own) get the ladder's hybrids,
# planned like a budget, when no --time is given. FLOPs of a training image, foveal-small against
# hybrid-airbench-half: 0.24 / 0.26 GFLOPs at 32 px, 0.57 / 0.58 at 48, 1.10 / 0.34 at 64, 6.8 / 0.50
# at 128, 41.2 / 0.44 at 224: its (side/4)^2 tokens against the hybrid's at most 13x13 up to 224 px.
# Below 64 px the attention-only default costs no more, and it is the one measured (digits, CIFAR-10).
PHOTO_MIN_SIDE = 64
PHOTO_PLAN_SECONDS = 600.0  # a default run on photos is planned as a budget of this long that buys
# its --epochs passes: the largest rung that fits, else the cheapest at a lower side (`budget_img_size`)


# Nesterov SGD's peak lr at batch 256, scaled linearly with the batch: measured with the hybrid and
# airbench models on CIFAR-10 (docs/benchmarks.md, issue #12 ablation), not tuned further.
SGD_LR, SGD_LR_BATCH = 0.2, 256


def resolve_recipe(
    config: TrainConfig,
    train_images: int,
    device: torch.device,
    img_size: int,
    num_classes: int,
    training_gflops: float | None = None,
    *,
    photos: bool = False,
) -> tuple[TrainConfig, dict[str, Any] | None]:
    """`config` with every option left as None set: by the budget ladder under a time budget, and on
    `photos` (`is_photo_run`) as for a PHOTO_PLAN_SECONDS budget that buys --epochs passes, unless the
    user chose a model outside the hybrid family; else to EPOCH_DEFAULTS, its batch halved while a step
    would not fit in memory. Options the user set are kept as they are. Second: for a plan, what the
    ladder measured and estimated (`budget_choices`'s "estimate", recorded in the run's config.json),
    else None. `training_gflops`: the run's `measured_training_rate`, measured now when not given.
    """
    estimate = None
    given = config.flat()
    precision = config.run.precision
    seconds = config.optim.time_budget
    if not seconds and photos and trains_like_hybrid(config.model.preset):
        seconds = PHOTO_PLAN_SECONDS
    if seconds:
        choices = budget_choices(
            seconds,
            train_images,
            device,
            img_size,
            num_classes,
            training_gflops=training_gflops or measured_training_rate(config, device, photos=photos),
            model=config.model.preset,
            min_passes=None if config.optim.time_budget else config.optim.epochs,
            precision=precision,
        )
        estimate = choices.pop("estimate")
    elif given["batch_size"] is None:  # EPOCH_DEFAULTS' batch, halved while a step would not fit
        model = config.model.preset or EPOCH_DEFAULTS["model"]
        batch_size = batch_in_memory(
            EPOCH_DEFAULTS["batch_size"], model, img_size, num_classes, device, precision
        )
        lr = default_lr(EPOCH_DEFAULTS["optimizer"], batch_size, budget=False)
        choices = {**EPOCH_DEFAULTS, "batch_size": batch_size, "lr": lr}
    else:
        choices = EPOCH_DEFAULTS
    optimizer = given["optimizer"] or choices["optimizer"]
    if optimizer != choices["optimizer"]:  # the user's optimizer: its own rate, ~50x apart for sgd
        batch_size = given["batch_size"] or choices["batch_size"]
        choices = {**choices, "lr": default_lr(optimizer, batch_size, budget=bool(config.optim.time_budget))}
    return config.replace(**{k: v for k, v in choices.items() if given[k] is None}), estimate


def is_photo_run(config: TrainConfig, native: int) -> bool:
    """Whether a run gets the photo defaults: no --time and no --init-from (each plans for itself), and
    images read at PHOTO_MIN_SIDE px or more (`native`: --img-size, else the data's own side)."""
    return not config.optim.time_budget and not config.finetune.init_from and native >= PHOTO_MIN_SIDE


def trains_like_hybrid(model: str | None) -> bool:
    """Whether preset `model` (None: the ladder's choice) is of the hybrid family, the airbench CNNs
    included: trained with HYBRID_RECIPE."""
    return model is None or isinstance(model_config(model), HybridConfig)


def measured_training_rate(config: TrainConfig, device: torch.device, *, photos: bool = False) -> float:
    """How fast this run can train (`planning_gflops`), measured once for its plans (the resolution,
    then the model) and the start line's epoch estimate: as a budget of the plan's length measures it
    (--time's; on `photos`, PHOTO_PLAN_SECONDS'), else by the shortest probe."""
    seconds = config.optim.time_budget or (PHOTO_PLAN_SECONDS if photos else None)
    return planning_gflops(seconds, device, config.run.precision)


def default_lr(optimizer: str, batch_size: int, *, budget: bool) -> float:
    """An optimizer's peak learning rate at `batch_size`, by the linear scaling rule (Goyal et al. 2017)."""
    if optimizer in ("sgd", "muon"):  # muon: the lr of its SGD part (the filters' is --muon-lr)
        return SGD_LR * batch_size / SGD_LR_BATCH
    if budget:
        return ADAMW_BUDGET_LR * batch_size / ADAMW_BUDGET_LR_BATCH
    return EPOCH_DEFAULTS["lr"] * batch_size / EPOCH_DEFAULTS["batch_size"]


def budget_choices(
    budget_seconds: float,
    train_images: int,
    device: torch.device,
    img_size: int,
    num_classes: int,
    *,
    training_gflops: float,
    model: str | None = None,
    min_passes: float | None = None,
    precision: str = "fp32",
) -> dict[str, Any]:
    """Model, batch size, optimiser and its learning rate and schedule, warmup and EMA for a
    `budget_seconds` run on this device, which trains at `training_gflops` (`planning_gflops`); and
    under "estimate" what the choice rests on: that rate and the passes over the data it buys each
    rung of the ladder.

    The largest rung whose estimated passes reach its `min_epochs` (at PHOTO_MIN_SIDE px and more its
    `min_epochs_photos` where it has one; or `min_passes`, for a run of that many epochs: the photo
    defaults) is taken, else the first. The batch is bounded by this
    machine's free memory for the model trained at `precision`: `model` when the user chose one,
    else the ladder's choice; so is the recipe: HYBRID_RECIPE for the hybrid family (the airbench
    CNNs included), ADAMW_RECIPE for attention-only models. The weight EMA is off: within budgets of
    a few epochs the decay to (near) zero already settles the weights, and the EMA measured no better
    (docs/benchmarks.md).
    """
    affordable = affordable_gflops_per_image(budget_seconds, train_images, training_gflops)
    passes = {
        candidate.model: affordable / train_gflops_per_image(candidate.model, img_size, num_classes)
        for candidate in BUDGET_LADDER
    }
    photos = img_size >= PHOTO_MIN_SIDE
    needed = {step.model: min_passes or rung_min_epochs(step, photos) for step in BUDGET_LADDER}
    rung = BUDGET_LADDER[0]
    for candidate in BUDGET_LADDER[1:]:
        if passes[candidate.model] >= needed[candidate.model]:
            rung = candidate
    trained = model or rung.model
    batch_size = batch_for_small_data(rung.batch_size, train_images)
    batch_size = batch_in_memory(batch_size, trained, img_size, num_classes, device, precision)
    recipe = HYBRID_RECIPE if trains_like_hybrid(trained) else ADAMW_RECIPE
    return {
        "model": rung.model,
        "batch_size": batch_size,
        "lr": default_lr(recipe["optimizer"], batch_size, budget=True),
        "warmup_epochs": BUDGET_WARMUP_EPOCHS,
        "ema_decay": 0.0,
        **recipe,
        "estimate": {
            "training_gflops": round(training_gflops, 1),
            "estimated_passes": {name: round(n, 2) for name, n in passes.items()},
            "min_passes": needed,
        },
    }


def rung_min_epochs(rung: Rung, photos: bool) -> float:
    """The estimated passes a budget must buy for `rung` to be taken, on photos (trained at
    PHOTO_MIN_SIDE px or more) or not."""
    return rung.min_epochs_photos if photos and rung.min_epochs_photos is not None else rung.min_epochs


def batch_for_small_data(batch_size: int, train_images: int) -> int:
    """`batch_size` halved (down to 16) while an epoch of `train_images` would have fewer than
    STEPS_PER_EPOCH_MIN steps."""
    while batch_size > 16 and train_images / batch_size < STEPS_PER_EPOCH_MIN:
        batch_size //= 2
    return batch_size


def batch_in_memory(
    batch_size: int, model: str, img_size: int, num_classes: int, device: torch.device, precision: str
) -> int:
    """`batch_size` halved (down to 1) while a training step of `model` at `img_size` would take more
    than footprint.STEP_MEMORY_SHARE of `device`'s free memory; as it is where that is unknown."""
    in_memory = largest_batch_in_memory(model, img_size, num_classes, device, precision)
    while in_memory is not None and batch_size > 1 and batch_size > in_memory:
        batch_size //= 2
    return batch_size


def fit_img_size(config: TrainConfig, native: int, training_gflops: float | None) -> int:
    """The side a run trains at when the user gave none: the data's `native` one, or what
    `budget_img_size` lowers it to for the run's plan (then `training_gflops`, `measured_training_rate`,
    is not None): under --time, a budget that must buy MIN_BUDGET_PASSES; on photos (`is_photo_run`,
    whatever the model), PHOTO_PLAN_SECONDS that must buy --epochs passes. A folder's images are
    counted, not decoded."""
    if training_gflops is None or native <= MIN_BUDGET_IMG_SIZE:
        return native  # (built-in data sets are never larger: nothing to count)
    if config.optim.time_budget:
        seconds, min_passes = config.optim.time_budget, MIN_BUDGET_PASSES
    elif is_photo_run(config, native):
        seconds, min_passes = PHOTO_PLAN_SECONDS, float(config.optim.epochs)
    else:
        return native
    train_images, num_classes = count_folder_images(config.data.source, config.data.val_fraction)
    return budget_img_size(
        seconds,
        train_images,
        native,
        num_classes,
        training_gflops=training_gflops,
        model=config.model.preset,
        min_passes=min_passes,
    )


def budget_img_size(
    budget_seconds: float,
    train_images: int,
    native: int,
    num_classes: int,
    *,
    training_gflops: float,
    model: str | None = None,
    min_passes: float = MIN_BUDGET_PASSES,
) -> int:
    """The image side (px) a `budget_seconds` run trains at, on a machine that trains at
    `training_gflops`: `native`, halved (to a multiple of 8) while `model` (default: the ladder's
    cheapest) would get fewer than `min_passes` passes over `train_images` images, or more than
    MAX_BUDGET_TOKENS tokens, at it; never below MIN_BUDGET_IMG_SIZE (nor above `native`)."""
    model = model or BUDGET_LADDER[0].model
    affordable = affordable_gflops_per_image(budget_seconds, train_images, training_gflops)

    def fits(size: int) -> bool:
        if tokens_per_image(model, size) > MAX_BUDGET_TOKENS:
            return False
        return affordable / train_gflops_per_image(model, size, num_classes) >= min_passes

    size = native
    while size > MIN_BUDGET_IMG_SIZE and not fits(size):
        size = max(MIN_BUDGET_IMG_SIZE, round(size / 16) * 8)
    return size


def planning_gflops(budget_seconds: float | None, device: torch.device, precision: str) -> float:
    """How fast this run can train now (GFLOP/s of training arithmetic, as `train_gflops_per_image`
    counts it), as the plans measure it: the ladder's cheapest model at its own 32 px with
    PROBE_CLASSES classes, timed for PROBE_SHARE of `budget_seconds` (at most training/speed.py's
    PROBE_SECONDS), times the ranks. Without a budget (the start line's epoch estimate alone) the
    shortest probe: speed.PROBE_MIN_STEPS steps of speed.QUICK_PROBE_BATCH images."""
    probe = BUDGET_LADDER[0].model
    if budget_seconds is None:
        seconds, batch = 0.0, speed.QUICK_PROBE_BATCH
    else:
        seconds, batch = min(speed.PROBE_SECONDS, PROBE_SHARE * budget_seconds), speed.PROBE_BATCH
    measured = speed.measure_training_speed(
        probe, MIN_BUDGET_IMG_SIZE, PROBE_CLASSES, device, precision, batch=batch, seconds=seconds
    )
    per_rank = measured.images_per_second * train_gflops_per_image(probe, MIN_BUDGET_IMG_SIZE, PROBE_CLASSES)
    # Under torchrun every rank probes at the same point of prepare_run, on its own share of the
    # machines, and trains its share of every batch: the run goes as fast as the ranks together.
    return per_rank * distributed.world().size


def affordable_gflops_per_image(budget_seconds: float, train_images: int, training_gflops: float) -> float:
    """GFLOPs of training the budget buys each training image: this device's measured training rate
    (`training_gflops`, GFLOP/s) over TRAINING_SHARE of the budget, shared by the images."""
    return budget_seconds * training_gflops * TRAINING_SHARE / train_images


def train_gflops_per_image(model: str, img_size: int, num_classes: int) -> float:
    """GFLOPs of one training image: the forward pass, times 3 for the backward."""
    with random_state_kept(torch.device("cpu")):  # a plan draws no weights from the run's streams
        built = create_model(model, num_classes=num_classes, img_size=img_size)
    return 3 * forward_flops(built, img_size) / 1e9


def tokens_per_image(model: str, img_size: int) -> int:
    """Tokens attention sees per image of side `img_size` (0 for a CNN: it has no attention)."""
    arch = model_config(model, img_size=img_size)
    if isinstance(arch, CNNConfig):
        return 0
    h, w = arch.grid_size
    return h * w
