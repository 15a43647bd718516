"""Batch augmentations beyond crop and flip: random erasing, MixUp, CutMix, and the weight EMA."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from foveal.data.augment import mix_batch, random_erase
from foveal.training import train
from foveal.training.ema import make_ema
from foveal.training.state import list_checkpoints, load_checkpoint


def batch(n: int = 16, size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(1, 256, (n, 3, size, size), dtype=torch.uint8, generator=generator)
    return images, torch.arange(n) % 10


def test_random_erasing_zeroes_one_rectangle_per_chosen_image() -> None:
    images, _ = batch()
    indices = torch.arange(100, 116)
    erased = random_erase(images, indices, seed=0, epoch=1, probability=1.0)
    assert torch.equal(erased, random_erase(images, indices, seed=0, epoch=1, probability=1.0))
    assert not torch.equal(erased, random_erase(images, indices, seed=0, epoch=2, probability=1.0))
    for image in erased:
        zero = (image == 0).all(dim=0)  # (S, S); the inputs have no zero pixels
        rows, cols = zero.any(dim=1).nonzero(), zero.any(dim=0).nonzero()
        box = zero[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
        assert box.all(), "the erased pixels form one filled rectangle"
        assert 0.015 <= zero.float().mean() <= 0.26
    assert torch.equal(random_erase(images, indices, seed=0, epoch=1, probability=0.0), images)


@pytest.mark.parametrize(("mixup", "cutmix"), [(0.8, 0.0), (0.0, 1.0)], ids=["mixup", "cutmix"])
def test_mixing_pairs_each_image_with_the_reversed_batch(mixup: float, cutmix: float) -> None:
    images, labels = batch()
    mixed, targets = mix_batch(
        images, labels, 10, np.random.default_rng(3), mixup_alpha=mixup, cutmix_alpha=cutmix
    )
    assert mixed.dtype == torch.uint8 and mixed.shape == images.shape
    assert targets.shape == (16, 10)
    assert torch.allclose(targets.sum(dim=1), torch.ones(16))
    lam = float(targets[0, labels[0]])
    assert torch.allclose(targets[0, labels[-1]], torch.tensor(1.0 - lam))  # partner = reversed batch
    if cutmix:  # the target share is the share of pixels kept from the image itself
        kept = (mixed[0] == images[0]).all(dim=0) & (images[0] != images[-1]).any(dim=0)
        pasted = (mixed[0] == images[-1]).all(dim=0) & (images[0] != images[-1]).any(dim=0)
        assert abs(kept.float().sum() / (kept.sum() + pasted.sum()) - lam) < 0.01
    else:
        expected = (images[0].float() * lam + images[-1].float() * (1 - lam)).round()
        assert torch.allclose(mixed[0].float(), expected, atol=1.0)
    again, _ = mix_batch(images, labels, 10, np.random.default_rng(3), mixup_alpha=mixup, cutmix_alpha=cutmix)
    assert torch.equal(mixed, again)


def test_ema_is_off_at_zero_and_tracks_the_weights() -> None:
    model = torch.nn.Linear(4, 2)
    assert make_ema(model, 0.0) is None
    ema = make_ema(model, 0.5)
    start = model.weight.detach().clone()
    with torch.no_grad():
        model.weight.add_(1.0)
    ema.update_parameters(model)  # the first update copies the weights
    assert torch.allclose(ema.module.weight, start + 1.0)
    with torch.no_grad():
        model.weight.add_(1.0)
    ema.update_parameters(model)
    assert torch.allclose(ema.module.weight, start + 1.5)


def test_ema_weights_are_what_is_saved_and_checkpointed(class_folder: Path, tiny_train_options: dict) -> None:
    run = train(
        data=str(class_folder),
        quiet=True,
        **{**tiny_train_options, "epochs": 2, "ema_decay": 0.9, "model": "foveal-nano"},  # with batch norm
    ).run_dir
    state = load_checkpoint(list_checkpoints(run / "checkpoints")[-1])
    ema = {k.removeprefix("module."): v for k, v in state["ema"].items() if k.startswith("module.")}
    saved = load_file(str(run / "weights" / "last.safetensors"))
    assert saved.keys() == ema.keys()
    assert all(torch.equal(saved[k], ema[k]) for k in saved)
    raw = state["model"]
    assert any(not torch.equal(saved[k], raw[k]) for k in saved), "the raw weights differ from their EMA"


def test_test_time_flip_averages_an_image_with_its_mirror() -> None:
    from foveal import create_model
    from foveal.data.preprocess import Preprocessing
    from foveal.predictor.inference import predict_logits

    torch.manual_seed(0)
    model = create_model("foveal-nano", img_size=16)
    images, _ = batch(n=4, size=16)
    preprocessing = Preprocessing(16)
    plain = predict_logits(model, images, preprocessing)
    mirrored = predict_logits(model, images.flip(3), preprocessing)
    flipped = predict_logits(model, images, preprocessing.with_views("flip"))
    assert torch.allclose(flipped, (plain + mirrored) / 2, atol=1e-5)
    assert not torch.allclose(flipped, plain, atol=1e-5)
