"""Decoded images held in memory as one uint8 tensor, the form training and evaluation read."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class ImageSet:
    """A labelled set of decoded images.

    images: uint8 (N, 3, S, S), already resized and center-cropped to the model's input size.
    labels: int64 (N,), indices into `classes`.
    classes: class names; index i is label i.
    paths: source file of each image ("" for built-in data sets).
    skipped: (path, reason) of every file that could not be used.
    mapped: the images are a memory map of a decode-cache file (a set larger than memory), not a copy.
    """

    images: torch.Tensor
    labels: torch.Tensor
    classes: list[str]
    paths: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    mapped: bool = False

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def class_counts(self) -> list[int]:
        return torch.bincount(self.labels, minlength=len(self.classes)).tolist()

    def evenly_spaced(self, limit: int) -> ImageSet:
        """At most `limit` images, evenly spaced over the set (the set itself when it is no larger)."""
        if len(self) <= limit:
            return self
        return self.subset(torch.linspace(0, len(self) - 1, limit).round().long())

    def subset(self, indices: torch.Tensor) -> ImageSet:
        """The images at `indices` (int64), with the same classes."""
        paths = [self.paths[i] for i in indices.tolist()] if self.paths else []
        return ImageSet(self.images[indices], self.labels[indices], self.classes, paths, [])
