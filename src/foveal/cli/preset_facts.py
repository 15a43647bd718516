"""What `foveal models` says about each preset, copied here so that listing builds no model and
imports no torch: building all of them to count their parameters took most of the command's
seconds, and importing torch alone takes over one (and every family file imports it).

A copy, not a second source of truth: a preset's description is the one its `@register_model`
carries (models/<family>.py). tests/test_model_list.py builds every registered preset and checks
its line here (family, image size, parameter count, description), and checks the recipe marks
against training/recipe.py's BUDGET_LADDER and EPOCH_DEFAULTS. A preset added or changed without
its line here fails that test, which prints the line to write.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PresetFacts:
    """One preset as `foveal models` lists it."""

    family: str  # its config's family: attention, hybrid, cnn, cnn-airbench or timm-vit (registry.py)
    img_size: int  # px, the preset's default input side
    params: int  # parameters of the model built for 10 classes, frozen ones (a whitening stem) included
    purpose: str  # what it is for, in a few words: its registration's description


PRESETS: dict[str, PresetFacts] = {
    "cct-14-7x2": PresetFacts("attention", 224, 21_986_123, "CCT paper's ImageNet shape (224 px)"),
    "cct-2-3x2": PresetFacts("attention", 32, 283_723, "CCT paper's smallest CIFAR shape"),
    "cct-4-3x2": PresetFacts("attention", 32, 482_123, "CCT paper's CIFAR shape, 4 blocks"),
    "cct-7-3x1": PresetFacts("attention", 32, 3_760_139, "CCT paper's CIFAR-10 model"),
    "cct-7-3x2": PresetFacts("attention", 32, 3_853_259, "CCT paper's CIFAR shape, 2-stage tokenizer"),
    "cnn-airbench": PresetFacts(
        "cnn-airbench", 32, 1_972_802, "airbench94's CNN: hybrid-airbench's baseline"
    ),
    "cnn-airbench-half": PresetFacts("cnn-airbench", 32, 498_114, "CNN baseline of hybrid-airbench-half"),
    "cnn-resnet18": PresetFacts("cnn", 32, 11_173_962, "ResNet-18 CNN baseline, bigger budgets"),
    "cnn-resnet20": PresetFacts("cnn", 32, 272_474, "CIFAR ResNet-20 CNN baseline"),
    "cnn-resnet8": PresetFacts("cnn", 32, 308_650, "CIFAR ResNet-8 CNN baseline, fastest"),
    "deit-tiny": PresetFacts(
        "timm-vit", 224, 5_526_346, "timm DeiT-tiny shape (ViT-Ti/16, 224 px), needs timm"
    ),
    "foveal-base": PresetFacts("attention", 32, 9_714_251, "largest foveal-*, sized for a GPU"),
    "foveal-medium": PresetFacts("attention", 32, 1_312_907, "more capacity for long --epochs runs"),
    "foveal-micro": PresetFacts("attention", 32, 217_803, "whitened tokenizer, short budgets: 1 block"),
    "foveal-mini": PresetFacts("attention", 32, 349_899, "whitened tokenizer, short budgets: 2 blocks"),
    "foveal-nano": PresetFacts("attention", 32, 185_163, "whitened tokenizer, short budgets: smallest"),
    "foveal-small": PresetFacts("attention", 32, 349_515, "general use on a CPU, with --epochs"),
    "foveal-tiny": PresetFacts("attention", 32, 52_235, "smoke tests: trains in seconds"),
    "hybrid-airbench": PresetFacts("hybrid", 32, 2_504_003, "attention on airbench94's trunk"),
    "hybrid-airbench-half": PresetFacts("hybrid", 32, 632_643, "attention on the half-width airbench trunk"),
    "hybrid-base": PresetFacts("hybrid", 32, 1_861_955, "8x8 token grid (finer maps), widest"),
    "hybrid-mini": PresetFacts(
        "hybrid", 32, 343_363, "8x8 token grid (finer maps), cnn-airbench-half's cost"
    ),
    "hybrid-nano": PresetFacts("hybrid", 32, 110_339, "8x8 token grid (finer maps), smallest"),
    "hybrid-small": PresetFacts("hybrid", 32, 547_011, "8x8 token grid (finer maps), 2 blocks"),
    "vit-lite-7-4": PresetFacts("attention", 32, 3_716_618, "plain ViT (ViT-Lite-7/4 of the CCT paper)"),
    "vit-small": PresetFacts(
        "timm-vit", 224, 21_669_514, "timm ViT-S/16 shape (DeiT-small's, 224 px), needs timm"
    ),
    "vit-tiny-4": PresetFacts("attention", 32, 544_522, "small plain ViT, for attention-vs-attention"),
}

# The models the default recipes pick (training/recipe.py, checked by the tests): --time's budget
# ladder, smallest first (also for photos without --time), and the model of a run without --time on
# smaller images.
TIME_LADDER: tuple[str, ...] = ("hybrid-airbench-half", "hybrid-airbench")
EPOCHS_DEFAULT = "foveal-small"


def recipe_mark(name: str) -> str:
    """The runs that train preset `name` when no --model is given: e.g. "--time, short budgets"."""
    if name == EPOCHS_DEFAULT:
        return "runs without --time, images under 64 px"
    if name not in TIME_LADDER:
        return ""
    if len(TIME_LADDER) == 1:
        return "--time; photos"
    rung = TIME_LADDER.index(name)
    budgets = "short" if rung == 0 else "longer" if rung == len(TIME_LADDER) - 1 else "middle"
    return f"--time, {budgets} budgets; photos"  # without --time too (recipe.is_photo_run)
