"""Starting a run from learned weights (`--init-from`): read the source, build the model for the user's
classes and image size, and carry every source tensor into it, each one accounted for.

    source = read_source("hf-hub:timm/deit_tiny_patch16_224.fb_in1k")   # or a Foveal run / file
    arch = target_config(source, num_classes=2, img_size=160, head=None)
    model = build_model(arch)
    report = transfer_weights(source, model)   # "152 tensors kept, 2 new (...), 1 resampled (...)"

A source tensor lands in the new model kept (same name, same shape), resampled (a position table on
another token grid: the grid part interpolated bicubic with antialiasing, class and register tokens kept
apart, as timm's `resample_abs_pos_embed`), or is the head being replaced for the user's classes. Any
other mismatch refuses the run before a folder is written: nothing is silently re-initialised (the
failure TRANSFER.md lists for timm's `strict=False` and transformers' `ignore_mismatched_sizes`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from foveal.errors import ConfigError, ModelFileError
from foveal.models import build_model
from foveal.models.config import FamilyConfig, replace_config
from foveal.predictor.saved import load_model, resolve_model_path
from foveal.pretrained.checkpoint import PretrainedSource, is_public_checkpoint, read_public_checkpoint

# The classifier's last layer (Foveal's `head`, a timm ViT's `vit.head`): new when the classes change.
CLASS_LAYER = "head"
# What a new model may hold that its source did not: the classifier and, for a public ViT given Foveal's
# attention pooling (`--head attention`), that pooling.
NEW_MODULES = ("head", "attention_pool")


@dataclass
class TransferReport:
    """What became of the source's tensors in the new model."""

    source: str
    kept: list[str] = field(default_factory=list)
    new: list[str] = field(default_factory=list)  # the head for the user's classes
    resampled: list[str] = field(default_factory=list)  # position tables on another grid
    replaced: list[str] = field(default_factory=list)  # the source's own head, not carried
    grids: tuple[tuple[int, int], tuple[int, int]] | None = None  # (source grid, new grid)
    prefix_tokens: int = 0

    def line(self) -> str:
        """The one line said at the start of the run and recorded in its config.json."""
        parts = [f"{len(self.kept)} tensors kept", f"{len(self.new)} new ({_head_words(self)})"]
        if self.resampled:
            (h0, w0), (h1, w1) = self.grids or ((0, 0), (0, 0))
            prefix = f", {self.prefix_tokens} prefix token(s) kept apart" if self.prefix_tokens else ""
            parts.append(
                f"{len(self.resampled)} resampled ({', '.join(self.resampled)} {h0}x{w0} -> {h1}x{w1}"
                f"{prefix}, bicubic)"
            )
        return f"init from {self.source}: " + ", ".join(parts)

    def to_dict(self) -> dict:
        return {
            "source": self.source,
            "kept": len(self.kept),
            "new": self.new,
            "resampled": self.resampled,
            "replaced": self.replaced,
            "line": self.line(),
        }


def _head_words(report: TransferReport) -> str:
    return "the head for your classes" if report.new else "the same classes: the source's head kept"


def read_source(reference: str) -> PretrainedSource:
    """The weights, architecture, classes and preprocessing of `reference`: a public checkpoint
    (pretrained/checkpoint.py) or a Foveal model (run folder, bundle or .safetensors written by Foveal,
    loaded as every command loads one: predictor/saved.py says what is wrong with a damaged one)."""
    if is_public_checkpoint(reference):
        return read_public_checkpoint(reference)
    try:
        file = resolve_model_path(reference)
    except ModelFileError:
        raise ConfigError(
            f"--init-from {reference}: not a Foveal model (run folder, bundle or .safetensors) nor a public "
            "checkpoint (a timm folder with config.json, a weights file, or hf-hub:ORG/NAME)."
        ) from None
    model, info = load_model(file)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return PretrainedSource(reference, info.config, state, info.classes, info.preprocessing, [file])


def target_config(
    source: PretrainedSource, *, num_classes: int, img_size: int, head: str | None = None
) -> FamilyConfig:
    """The source's architecture for `num_classes` classes at `img_size` px; `head` ("source" or
    "attention") chooses a public ViT's pooling and head, and is refused for a model that has no choice."""
    changes: dict = {"num_classes": num_classes, "img_size": img_size}
    has_choice = any(f.name == "pooling" for f in dataclasses.fields(source.config))
    if head is not None:
        if not has_choice:
            raise ConfigError(
                f"--head {head} chooses a public ViT's head; {source.reference} is a Foveal "
                f"{source.config.family} model, whose head stays as it was trained. Leave out --head."
            )
        changes["pooling"] = head
    return replace_config(source.config, **changes)


def transfer_weights(source: PretrainedSource, model: nn.Module, classes: list[str]) -> TransferReport:
    """Load `source`'s tensors into `model` (built by `target_config` for `classes`), in place; what
    happened to each one is returned. The source's classifier is kept only for the very same classes.
    ConfigError, before anything is written, when a source tensor would be dropped for any reason other
    than replacing the classifier."""
    report = TransferReport(source.reference)
    target = model.state_dict()
    same_classes = list(source.classes) == list(classes)
    loaded: dict[str, torch.Tensor] = {}
    problems: list[str] = []
    for name, tensor in source.state.items():
        if name not in target:
            if _under(name, NEW_MODULES):
                report.replaced.append(name)
            else:
                problems.append(f"{name} {tuple(tensor.shape)} has no place in the new model")
            continue
        wanted = target[name].shape
        if tensor.shape == wanted and (same_classes or not _under(name, (CLASS_LAYER,))):
            loaded[name] = tensor
            report.kept.append(name)
        elif _under(name, (CLASS_LAYER,)):
            report.replaced.append(name)
        elif _is_position_table(name):
            loaded[name] = resample_position_table(
                tensor, wanted, source.config.grid_size, model.config.grid_size
            )
            report.resampled.append(name)
            report.grids = (source.config.grid_size, model.config.grid_size)
            report.prefix_tokens = _prefix_tokens(tensor, source.config.grid_size)
        else:
            problems.append(f"{name} {tuple(tensor.shape)} does not fit {tuple(wanted)}")
    for name in target:
        if name in loaded:
            continue
        if _under(name, NEW_MODULES):
            report.new.append(name)
        elif name.endswith("num_batches_tracked"):
            loaded[name] = target[name]  # a counter, not a weight: kept as built
        else:
            problems.append(f"{name} {tuple(target[name].shape)} is missing from the source")
    if problems:
        shown = "; ".join(problems[:3]) + (f"; and {len(problems) - 3} more" if len(problems) > 3 else "")
        raise ConfigError(
            f"--init-from {source.reference} does not fit the model it describes ({shown}); nothing was "
            "written. Is it a complete checkpoint of a supported model?"
        )
    model.load_state_dict({**target, **loaded}, strict=True)
    return report


def _under(name: str, modules: tuple[str, ...]) -> bool:
    """Whether tensor `name` is under one of `modules`, at the top ("head.weight") or inside a wrapped
    public model ("vit.head.weight")."""
    parts = name.split(".")
    return parts[0] in modules or (len(parts) > 2 and parts[1] in modules)


def _is_position_table(name: str) -> bool:
    return name.split(".")[-1] == "pos_embed" or name.endswith("pos_embed.weight")


def _prefix_tokens(table: torch.Tensor, grid: tuple[int, int]) -> int:
    """Class / register tokens at the front of a (1, P + h*w, D) table; 0 for a (1, D, h, w) one."""
    return table.shape[1] - grid[0] * grid[1] if table.ndim == 3 else 0


def resample_position_table(
    table: torch.Tensor, shape: torch.Size, grid: tuple[int, int], new_grid: tuple[int, int]
) -> torch.Tensor:
    """A learned position table resized from token grid `grid` to `new_grid`, bicubic with
    antialiasing. Foveal's tables are (1, D, h, w); a ViT's (1, P + h*w, D), whose P prefix tokens
    (class, register) are kept apart and rejoined unchanged."""
    if table.ndim == 4:  # (1, D, h, w)
        resized = F.interpolate(table.float(), size=new_grid, mode="bicubic", antialias=True)
        return resized.to(table.dtype).reshape(shape)
    prefix = _prefix_tokens(table, grid)
    if shape[1] - new_grid[0] * new_grid[1] != prefix:
        raise ConfigError(
            f"a position table of {prefix} prefix token(s) cannot be resampled to {tuple(shape)}; "
            "the source and the new model disagree on the class token."
        )
    head, cells = table[:, :prefix], table[:, prefix:]  # (1, P, D), (1, h*w, D)
    dim = cells.shape[-1]
    cells = cells.reshape(1, *grid, dim).permute(0, 3, 1, 2).float()  # (1, D, h, w)
    cells = F.interpolate(cells, size=new_grid, mode="bicubic", antialias=True)
    cells = cells.permute(0, 2, 3, 1).reshape(1, -1, dim).to(table.dtype)  # (1, h'*w', D)
    return torch.cat([head, cells], dim=1)


def build_from_source(
    source: PretrainedSource, classes: list[str], *, img_size: int, head: str | None = None
) -> tuple[nn.Module, FamilyConfig, TransferReport]:
    """The new model for `classes` with the source's weights in it, its config and what was carried."""
    arch = target_config(source, num_classes=len(classes), img_size=img_size, head=head)
    model = build_model(arch)
    return model, arch, transfer_weights(source, model, classes)
