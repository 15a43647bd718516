"""The linear probe on cached features (`--finetune probe`, and the first half of `lp-ft`).

The backbone (everything before `pool`) runs once per training image, in eval mode and without
augmentation; its tokens (N, T, C) are kept, and only what reads them (the pooling, when it has
weights, and the classifier: the model's "head") trains, for many epochs over the cache: seconds,
where one epoch of full fine-tuning costs three backbone passes per image.

    tokens = cached_tokens(model, train_images, preprocessing, device)   # (N, T, C)
    loss, correct = fit_probe(model, tokens, train_images.labels, epochs=100, seed=0)

LP-FT (Kumar et al., ICLR 2022) then fine-tunes every weight from there, the head already fitting the
features, so that the first steps do not distort the backbone to suit a random head.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from foveal.data.imageset import ImageSet
from foveal.data.preprocess import Preprocessing
from foveal.errors import FovealError
from foveal.training import distributed
from foveal.training.progress import say
from foveal.training.records import append_event
from foveal.training.setup import RunSetup
from foveal.training.trainer import Trainer

PROBE_LR = 1e-3  # AdamW on the head alone: the features are fixed, and normalised by the backbone
PROBE_WEIGHT_DECAY = 1e-4
PROBE_BATCH = 64
FEATURE_BATCH = 64  # images per backbone pass while caching


@torch.no_grad()
def cached_tokens(
    model: nn.Module, images: ImageSet, preprocessing: Preprocessing, device: torch.device
) -> torch.Tensor:
    """The backbone's tokens (N, T, C) of every image, in eval mode, one view each, on `device`.
    FovealError, after the first batch, when they would take more than PROBE_CACHE_BYTES."""
    was_training = model.training
    model.eval()
    chunks = []
    for start in range(0, len(images), FEATURE_BATCH):
        batch = images.images[start : start + FEATURE_BATCH].to(device)
        chunks.append(model.forward_features(preprocessing.normalize(batch)).tokens.float())
        total = len(images) * chunks[0][0].numel() * 4  # float32 bytes of the whole cache
        if start == 0 and total > PROBE_CACHE_BYTES:
            raise FovealError(
                f"the probe's feature cache would take {total / 1e9:.1f} GB for {len(images):,} images; "
                "use --finetune full, or fewer images."
            )
    model.train(was_training)
    return torch.cat(chunks)


def head_parameters(model: nn.Module, tokens: torch.Tensor) -> list[nn.Parameter]:
    """The parameters between the backbone's tokens and the logits (pooling and classifier), found by
    which ones a loss on a few cached tokens reaches."""
    params = [p for p in model.parameters() if p.requires_grad]
    logits = model.forward_head(model.pool(tokens[:2])[0])
    grads = torch.autograd.grad(logits.sum(), params, allow_unused=True)
    return [p for p, g in zip(params, grads, strict=True) if g is not None]


def fit_probe(
    model: nn.Module,
    tokens: torch.Tensor,
    labels: torch.Tensor,
    *,
    epochs: int,
    seed: int,
    label_smoothing: float = 0.1,
) -> tuple[float, int]:
    """Train `model`'s head on cached `tokens` (N, T, C) with `labels` (N,) for `epochs` epochs (AdamW,
    cosine decay); the backbone is untouched. Returns the last epoch's mean loss and top-1 hits."""
    head = head_parameters(model, tokens)
    optimizer = torch.optim.AdamW(head, lr=PROBE_LR, weight_decay=PROBE_WEIGHT_DECAY)
    steps_per_epoch = math.ceil(len(labels) / PROBE_BATCH)
    total = epochs * steps_per_epoch
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: 0.5 * (1.0 + math.cos(math.pi * min(1.0, step / total)))
    )
    criterion = nn.CrossEntropyLoss(label_smoothing=label_smoothing)
    generator = torch.Generator().manual_seed(seed)
    labels = labels.to(tokens.device)
    model.eval()  # the head's dropout off: the cache already fixed what the backbone saw
    loss_sum, correct = 0.0, 0
    for _ in range(epochs):
        order = torch.randperm(len(labels), generator=generator).to(tokens.device)
        loss_sum, correct = 0.0, 0
        for start in range(0, len(labels), PROBE_BATCH):
            index = order[start : start + PROBE_BATCH]
            logits = model.forward_head(model.pool(tokens[index])[0])
            loss = criterion(logits, labels[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            loss_sum += float(loss.detach()) * len(index)
            correct += int((logits.detach().argmax(1) == labels[index]).sum())
    optimizer.zero_grad(set_to_none=True)
    return loss_sum / len(labels), correct


def probe_before_training(run: RunSetup, trainer: Trainer, quiet: bool) -> None:
    """Fit the head of a new fine-tuning run on cached features (its modes probe and lp-ft). Under
    `--finetune probe` the probe is the run's one epoch: its loss and hits are that epoch's."""
    config, train = run.config, run.data.train
    started = trainer.clock.now()
    tokens = cached_tokens(run.model, train, run.info.preprocessing, run.device)
    features_done = trainer.clock.now()
    loss, correct = fit_probe(
        run.model,
        tokens,
        train.labels,
        epochs=config.finetune.probe_epochs,
        seed=config.run.seed,
        label_smoothing=config.optim.label_smoothing or 0.0,
    )
    del tokens
    fitted = trainer.clock.now()
    line = (
        f"probe: {config.finetune.probe_epochs} epochs over the cached features of {len(train):,} images "
        f"in {fitted - features_done:.1f} s (their one backbone pass: {features_done - started:.1f} s); "
        f"last epoch loss {loss:.4f}, train top-1 {correct / len(train):.2%}"
    )
    say(line, quiet)
    if distributed.is_main():
        append_event(run.run_dir, line)
    if config.finetune.finetune == "probe":
        progress = trainer.progress
        progress.step = run.steps_per_epoch  # every image seen: epoch_row counts them
        progress.epoch_loss_sum = loss * len(train)
        progress.epoch_correct = correct
        progress.epoch_seconds = fitted - started


PROBE_CACHE_BYTES = 6_000_000_000  # the cached features' largest size (24 GB machines)
