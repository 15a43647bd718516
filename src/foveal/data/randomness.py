"""Randomness that is a pure function of (seed, epoch, sample index), for exact resume.

Data order depends only on (seed, epoch); each sample's augmentation only on (seed, epoch, index).
Neither depends on batch composition, worker count or global RNG state, so a run resumed
mid-epoch sees exactly the batches and augmentations an uninterrupted run would have seen.
"""

from __future__ import annotations

import numpy as np
import torch

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """The splitmix64 finaliser (Steele et al. 2014): a bijective mix of uint64 values."""
    with np.errstate(over="ignore"):
        x = x + _GOLDEN
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def mix(*values: int) -> int:
    """A 63-bit seed mixed from integers, e.g. mix(seed, epoch)."""
    state = np.zeros(1, dtype=np.uint64)
    for value in values:
        state = _splitmix64(state ^ np.uint64(value & 0xFFFFFFFFFFFFFFFF))
    return int(state[0] >> np.uint64(1))


def sample_uniform(seed: int, epoch: int, stream: int, indices: torch.Tensor) -> torch.Tensor:
    """Uniform floats in [0, 1), float64 (B,), one per sample index, for random `stream` number."""
    key = np.uint64(mix(seed, epoch, stream))
    x = _splitmix64(indices.cpu().numpy().astype(np.uint64) ^ key)
    return torch.from_numpy((x >> np.uint64(11)).astype(np.float64) * (1.0 / 2**53))


def epoch_order(seed: int, epoch: int, num_samples: int) -> torch.Tensor:
    """The training order of epoch `epoch`: a permutation of range(num_samples), int64."""
    generator = torch.Generator().manual_seed(mix(seed, epoch, 0x5EED))
    return torch.randperm(num_samples, generator=generator)
