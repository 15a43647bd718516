"""Whitening initialisation: the first conv decorrelates the data's patches, and stays frozen."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from foveal.data.preprocess import Preprocessing
from foveal.models import create_model
from foveal.models.layers.whitening import whiten_first_conv, whitening_weights


def correlated_images(n: int = 400, size: int = 16) -> torch.Tensor:
    """uint8 images whose neighbouring pixels and channels are strongly correlated, like photos."""
    generator = torch.Generator().manual_seed(0)
    base = torch.rand(n, 1, size // 4, size // 4, generator=generator)
    smooth = F.interpolate(base, size=size, mode="bilinear", align_corners=False)
    noise = 0.05 * torch.rand(n, 3, size, size, generator=generator)
    return ((smooth.expand(-1, 3, -1, -1) * 0.8 + noise) * 255).round().clamp(0, 255).to(torch.uint8)


def test_whitening_filters_decorrelate_the_patches() -> None:
    images = correlated_images()
    preprocessing = Preprocessing(16, (0.4, 0.4, 0.4), (0.23, 0.23, 0.23))
    weights = whitening_weights(images, preprocessing.normalize, out_channels=8, kernel=3)
    assert weights.shape == (8, 3, 3, 3)
    outputs = F.conv2d(preprocessing.normalize(images), weights)[:, :4]  # the four + filters
    covariance = torch.cov(outputs.permute(1, 0, 2, 3).reshape(4, -1))
    assert torch.allclose(covariance, torch.eye(4), atol=0.1), covariance
    raw = F.unfold(preprocessing.normalize(images).contiguous(), 3)  # (n, 27, L): raw patches
    raw_corr = torch.corrcoef(raw.transpose(1, 2).reshape(-1, 27).T[:2])
    assert raw_corr[0, 1] > 0.5  # neighbouring pixels were correlated before


def test_a_whitened_tokenizer_is_frozen_and_set_from_the_data() -> None:
    model = create_model("foveal-nano", img_size=16, tokenizer_whitened=True)
    first = model.tokenizer.stages[0]
    assert not first.weight.requires_grad
    before = first.weight.detach().clone()
    whiten_first_conv(model, correlated_images(), Preprocessing(16).normalize)
    assert not torch.equal(before, first.weight)
