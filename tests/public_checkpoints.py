"""Tiny public checkpoints for tests, made with timm itself in a temp dir: a timm ViT of random (seeded)
weights saved in timm's `save_for_hf` layout, as a hub cache entry, or as a bare weights file; and a few
photo-like JPEGs (gradients, shapes, noise) to run them on."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

TINY = {"img_size": 32, "patch_size": 8, "embed_dim": 32, "depth": 2, "num_heads": 2}  # 4x4 tokens
LABELS = ["ant", "bee", "wasp"]


def tiny_timm(architecture: str = "deit_tiny_patch16_224", *, seed: int = 0, num_classes: int = 3, **args):
    """A timm model of `architecture` shrunk to TINY (and `args`), its weights drawn at `seed` and then
    spread out, so that its logits differ clearly between images; in eval mode."""
    import timm
    import torch

    torch.manual_seed(seed)
    model = timm.create_model(architecture, pretrained=False, num_classes=num_classes, **{**TINY, **args})
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith("weight") and parameter.ndim > 1:
                parameter.mul_(5.0)  # timm's 0.02 std makes every image look alike
    return model.eval()


def save_timm_folder(model, folder: Path, labels: list[str] | None = LABELS, *, safe: bool = True) -> Path:
    """`model` in timm's save_for_hf layout: config.json (+ label_names) and model.safetensors (or
    pytorch_model.bin with safe=False)."""
    from timm.models import save_for_hf

    config = {"label_names": labels} if labels else None
    save_for_hf(model, str(folder), model_config=config, safe_serialization=safe)
    return folder


def fill_hub_cache(cache: Path, repo_id: str, folder: Path, sha: str = "0" * 40) -> Path:
    """A Hugging Face cache entry for `repo_id` holding `folder`'s files, as huggingface_hub lays it out:
    models--OWNER--NAME/refs/main (the commit) and snapshots/<commit>/<files>."""
    entry = cache / f"models--{repo_id.replace('/', '--')}"
    (entry / "refs").mkdir(parents=True)
    (entry / "refs" / "main").write_text(sha)
    snapshot = entry / "snapshots" / sha
    snapshot.mkdir(parents=True)
    for file in folder.iterdir():
        (snapshot / file.name).write_bytes(file.read_bytes())
    return snapshot


def photo_files(folder: Path, count: int = 4, size: int = 48, seed: int = 0) -> list[Path]:
    """`count` JPEGs that look like photos more than like noise: a colour gradient, a few filled
    ellipses and rectangles, sensor-like noise, JPEG compression."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for i in range(count):
        ramp = np.linspace(0, 1, size)[None, :, None] * rng.uniform(40, 200, 3)
        ramp = ramp + np.linspace(0, 1, size)[:, None, None] * rng.uniform(0, 120, 3)
        image = Image.fromarray(np.clip(ramp, 0, 255).astype(np.uint8))
        draw = ImageDraw.Draw(image)
        for _ in range(3):
            x, y = rng.integers(0, size - 8, 2)
            w, h = rng.integers(6, size // 2, 2)
            colour = tuple(int(c) for c in rng.integers(0, 256, 3))
            (draw.ellipse if rng.random() < 0.5 else draw.rectangle)([x, y, x + w, y + h], fill=colour)
        noisy = np.asarray(image).astype(np.int16) + rng.integers(-12, 13, (size, size, 3))
        path = folder / f"photo_{i}.jpg"
        Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)).save(path, quality=85)
        files.append(path)
    return files
