"""Stratified train/val split of a single class-folder root, with a manifest later runs reuse.

Each class's files are ordered by a hash of their path relative to the root, and the first
`val_fraction` of them go to validation. The split is thus a pure function of the file names:
every run (and the CNN baseline) on the same folder gets the same split without shared state,
and adding a file moves no other file across the split.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from foveal.errors import DataError


def stratified_split(
    keys: list[str], labels: list[int], val_fraction: float, *, class_names: Sequence[str]
) -> tuple[list[int], list[int]]:
    """Indices (train, val) with `val_fraction` of each class (at least one) in val.

    Args:
        keys: a stable name per sample (its relative path).
        labels: class index per sample.
        val_fraction: share of each class held out, in (0, 1).
        class_names: the name of each class index, for errors a person can act on.
    """
    if not 0.0 < val_fraction < 1.0:
        raise DataError(f"val_fraction must be between 0 and 1 (exclusive), got {val_fraction}")
    by_class: dict[int, list[int]] = {}
    for index, label in enumerate(labels):
        by_class.setdefault(label, []).append(index)
    train, val = [], []
    for label, members in sorted(by_class.items()):
        if len(members) < 2:
            raise DataError(
                f"class {class_names[label]!r} has {len(members)} image; a train/val split needs at least 2 "
                "per class. Add images or give a separate val folder (root/train, root/val)."
            )
        members.sort(key=lambda i: hashlib.sha1(keys[i].encode()).hexdigest())
        n_val = min(len(members) - 1, max(1, round(len(members) * val_fraction)))
        val += members[:n_val]
        train += members[n_val:]
    return sorted(train), sorted(val)


def read_manifest(path: Path) -> dict[str, Any]:
    """Load a run's split.json (classes, train and val paths relative to the root); DataError if not one."""
    try:
        manifest = json.loads(Path(path).read_text())
        if not all(k in manifest for k in ("classes", "train", "val")):
            raise ValueError("missing keys")
    except (OSError, ValueError) as error:
        raise DataError(
            f"{path} is not a Foveal split manifest ({error}); expected the split.json of a training run."
        ) from None
    return manifest
