"""Fine-tuning from a public ViT (`--init-from` a timm folder, a weights file or a hub id read from a
filled cache, offline), end to end: what is carried and said, the source's preprocessing travelling,
both heads, resampling, and the fine-tuned model explained, exported with parity and served by a real
`foveal serve` process. Tiny timm models of random weights (tests/public_checkpoints.py); no network."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
import torch
from public_checkpoints import fill_hub_cache, save_timm_folder, tiny_timm
from synthetic import make_class_folder

import foveal
from foveal.predictor.saved import load_model
from foveal.serving.process import ServerProcess
from foveal.training import train

pytest.importorskip("timm")
OPTIONS = {"epochs": 1, "report": False, "probe_epochs": 10}


@pytest.fixture(scope="module")
def vit_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A DeiT-shaped timm model (class token, 4x4 patches of 8 px at 32 px) in save_for_hf layout, its
    pretrained_cfg as DeiT's: ImageNet statistics, bicubic, crop_pct 0.9."""
    folder = tmp_path_factory.mktemp("deit") / "deit_tiny_test"
    return save_timm_folder(tiny_timm(seed=3), folder)


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_class_folder(tmp_path_factory.mktemp("photos") / "shapes", per_class=8, size=40)


def finetune(data: Path, source: str | Path, tmp_path: Path, **options) -> Path:
    settings = {**OPTIONS, "out": str(tmp_path / "runs"), **options}
    return train(data=str(data), init_from=str(source), quiet=True, **settings).run_dir


def test_a_timm_folder_fine_tunes_with_its_preprocessing_and_a_new_head(
    vit_folder: Path, photos: Path, tmp_path: Path
) -> None:
    run = finetune(photos, vit_folder, tmp_path, finetune="lp-ft")
    record = json.loads((run / "config.json").read_text())
    carried = record["init_from"]
    assert carried["new"] == ["vit.head.weight", "vit.head.bias"] and carried["resampled"] == []
    assert carried["line"].startswith(f"init from {vit_folder}: ") and "2 new (the head" in carried["line"]
    config = json.loads((vit_folder / "config.json").read_text())["pretrained_cfg"]
    _, info = load_model(run)
    assert info.preprocessing.mean == pytest.approx(config["mean"])
    assert info.preprocessing.std == pytest.approx(config["std"])
    assert (info.preprocessing.interpolation, info.preprocessing.crop_pct) == ("bicubic", config["crop_pct"])
    assert info.config.family == "timm-vit" and info.classes == ["circle", "square", "triangle"]
    assert "probe: 10 epochs" in (run / "events.log").read_text()


def test_foveals_attention_head_on_a_vit_explains_by_pooling_and_rollout(
    vit_folder: Path, photos: Path, tmp_path: Path
) -> None:
    run = finetune(photos, vit_folder, tmp_path, finetune="probe", head="attention")
    carried = json.loads((run / "config.json").read_text())["init_from"]
    assert sorted(carried["replaced"]) == ["vit.head.bias", "vit.head.weight"]
    assert any(name.startswith("attention_pool.") for name in carried["new"])
    image = sorted(photos.rglob("*.png"))[0]
    classifier = foveal.load(run, device="cpu")
    for method in ("pool", "rollout", "grad-rollout"):
        [explained] = foveal.explain(classifier, [image], method=method)
        token_map = torch.tensor(explained.token_map)
        assert token_map.shape == (4, 4) and token_map.sum() > 0


def test_another_size_resamples_the_vits_positions_with_the_class_token_apart(
    vit_folder: Path, photos: Path, tmp_path: Path
) -> None:
    run = finetune(photos, vit_folder, tmp_path, finetune="full", img_size=48)
    line = json.loads((run / "config.json").read_text())["init_from"]["line"]
    assert "1 resampled (vit.pos_embed 4x4 -> 6x6, 1 prefix token(s) kept apart, bicubic)" in line
    model, info = load_model(run)
    assert info.preprocessing.img_size == 48 and model.vit.pos_embed.shape == (1, 1 + 36, 32)


@pytest.mark.slow  # an end-to-end run of tens of seconds on a 2-core CPU
def test_a_hub_id_fine_tunes_offline_from_the_cache_and_a_weights_file_too(
    vit_folder: Path, photos: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "hub"
    fill_hub_cache(cache, "timm/deit_tiny_test.fb_in1k", vit_folder)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    hub_run = finetune(photos, "hf-hub:timm/deit_tiny_test.fb_in1k", tmp_path, finetune="probe")
    # A bare .pth of a ViT 64 wide (one head of 64, as timm's ViTs): its shape read from its tensors.
    bare = tiny_timm(seed=4, embed_dim=64, num_heads=1)
    weights = tmp_path / "vit.pth"
    torch.save({"model": bare.state_dict()}, weights)
    file_run = finetune(photos, weights, tmp_path, finetune="probe")
    from_file, info = load_model(file_run)
    assert info.config.embed_dim == 64 and info.config.num_heads == 1
    assert torch.equal(from_file.vit.blocks[0].attn.qkv.weight, bare.blocks[0].attn.qkv.weight)
    hub = load_model(hub_run)[0]
    source = tiny_timm(seed=3)
    assert torch.equal(hub.vit.blocks[1].mlp.fc2.weight, source.blocks[1].mlp.fc2.weight)


@pytest.mark.slow  # an end-to-end run of tens of seconds on a 2-core CPU
def test_a_fine_tuned_vit_reports_exports_with_parity_and_serves(
    vit_folder: Path, photos: Path, tmp_path: Path
) -> None:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("fastapi")
    run = finetune(photos, vit_folder, tmp_path, finetune="full")
    assert foveal.report(run, quiet=True).is_file()  # the worst mistakes explained, calibration, faithfulness
    bundle = foveal.export(run, tmp_path / "bundle", format="onnx", maps=["rollout"])
    parity = json.loads((bundle / "parity.json").read_text())
    assert parity["top1_agreement"] == 1.0 and parity["max_logit_difference"] < 1e-4
    image = sorted(photos.rglob("*.png"))[0]
    expected = foveal.load(run, device="cpu").predict([image])[0]
    with ServerProcess([str(run), "--threads", "1"]) as server:
        answer = httpx.post(
            server.url + "/predict", content=image.read_bytes(), headers={"content-type": "image/png"}
        )
    assert answer.status_code == 200, answer.text
    top = answer.json()["predictions"][0]
    assert top["label"] == expected.labels[0]
    assert top["score"] == pytest.approx(expected.probabilities[0], abs=1e-5)
