"""The timm-vit family: timm's VisionTransformer inside Foveal's contract gives timm's own logits, shows
its attention, saves, loads, explains and exports as every Foveal model does."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from public_checkpoints import TINY, photo_files, tiny_timm

import foveal
from foveal.data.decode import decode_image
from foveal.data.preprocess import Preprocessing
from foveal.errors import ConfigError
from foveal.models import TimmViTClassifier, TimmViTConfig, build_model, config_from_dict, config_to_dict
from foveal.models.maps import METHODS, available_methods
from foveal.models.timm_vit import config_from_vit
from foveal.predictor.classifier import Classifier
from foveal.predictor.network import TorchNetwork
from foveal.predictor.saved import ModelInfo, load_model, save_model

pytest.importorskip("timm")

PREPROCESSING = Preprocessing(32, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), interpolation="bicubic")


def wrapped(source: torch.nn.Module, pooling: str = "source") -> TimmViTClassifier:
    """A Foveal timm-vit model holding timm model `source`'s weights (a new head for attention pooling)."""
    config = config_from_vit(source, name="tiny", architecture="deit_tiny_patch16_224", pooling=pooling)
    model = build_model(config).eval()
    missing, unexpected = model.load_state_dict(
        {"vit." + k: v for k, v in source.state_dict().items()}, strict=pooling == "source"
    )
    assert unexpected == ([] if pooling == "source" else ["vit.head.weight", "vit.head.bias"])
    return model


def photo_batch(folder: Path, count: int = 4) -> torch.Tensor:
    """Normalised photo-like images (count, 3, 32, 32), decoded from JPEG files as predict decodes them."""
    images = torch.stack([decode_image(path, 32) for path in photo_files(folder, count)])
    return PREPROCESSING.normalize(images)


@pytest.mark.parametrize("args", [{}, {"qkv_bias": False, "mlp_ratio": 2.0}])
def test_the_wrapper_gives_timms_own_logits_on_real_pixels(args: dict, tmp_path: Path) -> None:
    source = tiny_timm("deit_tiny_patch16_224", seed=1, **args)
    model = wrapped(source)
    images = photo_batch(tmp_path)
    with torch.no_grad():
        theirs = source(images)
        fused = model(images)
        explained = model.forward_explained(images)
    assert theirs.abs().max() > 0.5 and (theirs[0] - theirs[1]).abs().max() > 0.1  # a test that can fail
    torch.testing.assert_close(fused, theirs, atol=1e-5, rtol=0)
    torch.testing.assert_close(explained.logits, fused, atol=1e-5, rtol=0)
    assert explained.grid == (4, 4) and explained.features.prefix_tokens == 1
    assert len(explained.attentions) == TINY["depth"]
    for probs in explained.attentions:
        assert probs.shape == (4, TINY["num_heads"], 17, 17)
        torch.testing.assert_close(probs.sum(-1), torch.ones(probs.shape[:-1]), atol=1e-5, rtol=0)


def test_average_pooling_and_register_tokens_keep_parity(tmp_path: Path) -> None:
    images = photo_batch(tmp_path)
    for args in ({"global_pool": "avg", "class_token": False}, {"reg_tokens": 2}, {"no_embed_class": True}):
        source = tiny_timm("vit_tiny_patch16_224", seed=2, **args)
        model = wrapped(source)
        with torch.no_grad():
            torch.testing.assert_close(model(images), source(images), atol=1e-5, rtol=0)
            explained = model.forward_explained(images)
        torch.testing.assert_close(explained.logits, source(images), atol=1e-5, rtol=0)
        assert explained.features.prefix_tokens == source.num_prefix_tokens, args


def test_attention_pooling_weighs_the_image_tokens_only(tmp_path: Path) -> None:
    model = wrapped(tiny_timm(seed=3), pooling="attention")
    assert {"attention_pool.score.weight", "head.weight"} <= set(model.state_dict())
    assert not any(k.startswith("vit.head.") for k in model.state_dict())
    images = photo_batch(tmp_path)
    with torch.no_grad():
        out = model.forward_explained(images)
        fused = model(images)
    assert out.pool_weights.shape == (4, 16)  # 4x4 image tokens; the class token takes no part
    torch.testing.assert_close(out.pool_weights.sum(-1), torch.ones(4), atol=1e-5, rtol=0)
    torch.testing.assert_close(out.logits, fused, atol=1e-5, rtol=0)
    assert available_methods(model) == list(METHODS)
    assert available_methods(wrapped(tiny_timm(seed=3))) == ["rollout", "grad-rollout", "gradcam"]


def test_explicit_attention_stays_in_the_graph(tmp_path: Path) -> None:
    model = wrapped(tiny_timm(seed=4))
    out = model.forward_explained(photo_batch(tmp_path, 2))
    grads = torch.autograd.grad(out.logits[:, 0].sum(), out.attentions)
    assert all(g.shape == a.shape and g.abs().sum() > 0 for g, a in zip(grads, out.attentions))


@pytest.mark.parametrize("pooling", ["source", "attention"])
def test_a_saved_timm_vit_model_round_trips_and_every_method_explains_it(
    pooling: str, tmp_path: Path
) -> None:
    model = wrapped(tiny_timm(seed=5), pooling=pooling)
    info = ModelInfo(model.config, ["ant", "bee", "wasp"], PREPROCESSING, extra={"source": "test"})
    path = save_model(tmp_path / "vit.safetensors", model, info)
    loaded, loaded_info = load_model(path)
    assert loaded_info.config == model.config and loaded_info.preprocessing == PREPROCESSING
    images = photo_batch(tmp_path)
    with torch.no_grad():
        torch.testing.assert_close(loaded(images), model(images), atol=0, rtol=0)
    classifier = Classifier(TorchNetwork(loaded), loaded_info, torch.device("cpu"), path)
    files = photo_files(tmp_path / "more", 3, seed=1)
    predictions = classifier.predict(files, top_k=2)
    for method in available_methods(loaded):
        explanations = foveal.explain(classifier, files, method=method, top_k=2)
        for explanation, prediction in zip(explanations, predictions, strict=True):
            assert explanation.labels == prediction.labels and explanation.grid == (4, 4)
            assert explanation.method == method


def test_a_timm_vit_model_exports_to_onnx_with_parity(tmp_path: Path, class_folder: Path) -> None:
    """Attention pooling here (its weights in the graph); a public checkpoint's own head in
    test_pretrained.py."""
    pytest.importorskip("onnxruntime")
    model = wrapped(tiny_timm(seed=6), pooling="attention")
    info = ModelInfo(model.config, ["circle", "square", "triangle"], PREPROCESSING)
    path = save_model(tmp_path / "vit.safetensors", model, info)
    bundle = foveal.export(path, tmp_path / "bundle", format="onnx", data=str(class_folder), maps=["rollout"])
    parity = json.loads((bundle / "parity.json").read_text())
    assert parity["top1_agreement"] == 1.0 and parity["max_logit_difference"] < 1e-4
    assert parity["max_rollout_difference"] < 1e-5
    assert parity["max_pool_weight_difference"] < 1e-5
    onnx = foveal.load(bundle / "model.onnx")
    torch_side = foveal.load(path, device="cpu")
    images = torch.stack([decode_image(p, 32) for p in sorted(class_folder.rglob("*.png"))[:5]])
    torch.testing.assert_close(onnx.logits(images), torch_side.logits(images), atol=1e-4, rtol=0)


def test_presets_and_configs() -> None:
    assert {"deit-tiny", "vit-small"} <= set(foveal.list_models("*"))
    config = foveal.models.model_config("deit-tiny", num_classes=5)
    assert isinstance(config, TimmViTConfig) and config.family == "timm-vit" and config.grid_size == (14, 14)
    assert config_from_dict(config_to_dict(config)) == config
    assert dataclasses.replace(config, pooling="attention").pooling == "attention"
    with pytest.raises(ConfigError, match="not a multiple of patch_size=16"):
        foveal.create_model("deit-tiny", img_size=40)
    with pytest.raises(ConfigError, match="divisible by num_heads"):
        TimmViTConfig(embed_dim=32, num_heads=3)
    with pytest.raises(ConfigError, match="class token"):
        TimmViTConfig(class_token=False, global_pool="token")
    with pytest.raises(ConfigError, match="pooling must be source or attention"):
        TimmViTConfig(pooling="cls")


def test_foveal_imports_without_timm_and_says_how_to_get_it() -> None:
    probe = (
        "import sys\nsys.modules['timm'] = None\n"  # an import of timm now raises ImportError
        "import foveal.models, foveal.predictor.saved, foveal.pretrained.checkpoint\n"
        "from foveal.errors import ConfigError\n"
        "try:\n    foveal.create_model('deit-tiny')\nexcept ConfigError as error:\n    print(error)\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "a timm-vit model needs timm: pip install 'foveal[timm]'"
