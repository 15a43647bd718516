"""Layer-wise learning-rate decay (BEiT, Bao et al. 2022; timm's `param_groups_layer_decay`): the layers
nearest the input, which hold the most general features, move least when a pretrained model is
fine-tuned. The last layer (the head) learns at the lr, each layer below at `decay` times the one above.

Layers are read from parameter names, whatever the family: the numbered units in the order the model
holds them (`blocks.3.`, `trunk.groups.1.`, `stages.2.`, `vit.blocks.11.`) are layers 1..L; what comes
before the first (stem, tokenizer, patch embedding, class token) is layer 0; what sits between two units
(a position table) belongs to the next; what follows the last (final norm, pooling, head) is L + 1.
"""

from __future__ import annotations

import re

from torch import nn

NUMBERED_UNIT = re.compile(r"^(.*?(?:blocks|groups|stages|layers))\.(\d+)\.")


def layer_ids(model: nn.Module) -> tuple[dict[str, int], int]:
    """{parameter name: layer} and the number of layers (the head's layer + 1)."""
    units: dict[str, int] = {}
    ids: dict[str, int] = {}
    waiting: list[str] = []  # unnumbered names after a unit: they take the next unit's layer
    for name, _ in model.named_parameters():
        match = NUMBERED_UNIT.match(name)
        if match is None:
            if units:
                waiting.append(name)
            else:
                ids[name] = 0
            continue
        unit = f"{match.group(1)}.{match.group(2)}"
        layer = units.setdefault(unit, len(units) + 1)
        for pending in waiting:
            ids[pending] = layer
        waiting.clear()
        ids[name] = layer
    last = len(units) + 1
    for pending in waiting:
        ids[pending] = last
    return ids, last + 1


def scale_groups_by_layer(model: nn.Module, groups: list[dict], lr: float, decay: float) -> list[dict]:
    """`groups` (optimizer parameter groups) split by layer, each part's lr scaled by
    decay ** (last layer - its layer); the schedule then scales every group alike."""
    ids, count = layer_ids(model)
    layer_of = {id(p): ids[name] for name, p in model.named_parameters()}
    scaled = []
    for group in groups:
        by_layer: dict[int, list[nn.Parameter]] = {}
        for param in group["params"]:
            by_layer.setdefault(layer_of[id(param)], []).append(param)
        for layer, params in sorted(by_layer.items()):
            scale = decay ** (count - 1 - layer)
            scaled.append({**group, "params": params, "lr": group.get("lr", lr) * scale})
    return scaled
