"""The hybrid family: a whitened conv trunk, real attention blocks on its token grid, attention pooling;
and the airbench CNN built from the same trunk. Both keep the one model contract."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from test_whitening import correlated_images

import foveal
from foveal.data.preprocess import Preprocessing
from foveal.errors import ConfigError
from foveal.models import (
    AirbenchCNNConfig,
    HybridConfig,
    build_model,
    config_from_dict,
    config_to_dict,
    model_config,
)
from foveal.models.layers.whitening import init_from_data
from foveal.models.maps import METHODS, ExplainError, available_methods, compute_maps
from foveal.predictor.saved import ModelInfo, load_model, save_model
from foveal.runtime import to_fast_layout


def tiny_hybrid(**overrides: object) -> torch.nn.Module:
    torch.manual_seed(0)
    return foveal.create_model("hybrid-nano", num_classes=4, img_size=16, widths=(8, 16), **overrides)


def settle_batch_norm(model: torch.nn.Module, images: torch.Tensor) -> torch.nn.Module:
    """Give the batch norms running statistics of their own (train-mode passes), then switch to eval."""
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(images)
    return model.eval()


def test_a_hybrid_has_real_attention_on_its_token_grid() -> None:
    model = foveal.create_model("hybrid-small", num_classes=5).eval()
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        fused = model(images)
        out = model.forward_explained(images)
    assert out.grid == (8, 8) and out.features.tokens.shape == (2, 64, 128)
    assert len(out.attentions) == model.config.depth == 2
    for probs in out.attentions:
        assert probs.shape == (2, 2, 64, 64)
        torch.testing.assert_close(probs.sum(-1), torch.ones(2, 2, 64), atol=1e-5, rtol=0)
    torch.testing.assert_close(out.logits, fused, atol=1e-5, rtol=1e-5)
    assert out.pool_weights.shape == (2, 64)
    # The attention is not a no-op: the rows are not all alike, so the blocks do mix tokens.
    assert out.attentions[0].std(dim=-2).max() > 1e-4


def test_every_explanation_method_explains_a_hybrid_and_gradcam_the_airbench_cnn() -> None:
    images = torch.randn(3, 3, 16, 16)
    hybrid = settle_batch_norm(tiny_hybrid(), images)
    assert available_methods(hybrid) == list(METHODS)
    for method in METHODS:
        maps = compute_maps(hybrid, images, method)
        assert maps.maps.shape == (3, 4, 4) and maps.targets.shape == (3,)
        assert torch.isfinite(maps.maps).all() and (maps.maps >= 0).all() and maps.maps.sum() > 0
    torch.manual_seed(0)
    cnn = foveal.create_model("cnn-airbench", num_classes=4, img_size=16, widths=(8, 8, 16))
    cnn = settle_batch_norm(cnn, images)
    assert available_methods(cnn) == ["gradcam"]
    maps = compute_maps(cnn, images, "gradcam")
    assert maps.maps.shape == (3, 2, 2) and torch.isfinite(maps.maps).all()
    with pytest.raises(ExplainError, match="no attention layers"):
        compute_maps(cnn, images, "rollout")


@pytest.mark.parametrize(
    ("img_size", "grid", "stem_stride"),
    [(16, (4, 4), 1), (32, (8, 8), 1), (64, (8, 8), 2), (96, (6, 6), 4), (128, (8, 8), 4), (224, (7, 7), 8)],
)
def test_the_stem_brings_any_image_to_a_grid_of_about_8x8(
    img_size: int, grid: tuple[int, int], stem_stride: int
) -> None:
    model = foveal.create_model("hybrid-nano", num_classes=3, img_size=img_size).eval()
    assert model.config.stem_stride == stem_stride and model.config.grid_size == grid
    with torch.no_grad():
        out = model.forward_explained(torch.randn(1, 3, img_size, img_size))
    assert out.grid == grid and out.attentions[0].shape[-1] == grid[0] * grid[1]
    assert out.pool_weights.shape == (1, grid[0] * grid[1])


def test_the_token_count_is_bounded_at_every_image_size() -> None:
    for img_size in range(32, 2049, 8):
        h, w = HybridConfig(img_size=img_size, widths=(8, 16)).grid_size
        assert 5 <= h == w <= 11, (img_size, h)  # about 32 px after the stem, then halved twice
    assert model_config("cnn-airbench").grid_size == (4, 4)  # airbench's own at 32 px


@pytest.mark.parametrize("preset", ["hybrid-airbench-half", "hybrid-airbench", "cnn-airbench"])
def test_the_ladder_keeps_at_least_7x7_tokens_on_photos(preset: str) -> None:
    for img_size in range(160, 2049, 8):
        config = model_config(preset, img_size=img_size)
        h, w = config.grid_size
        assert 7 <= h == w <= 14, (img_size, h)  # a map fine enough to point at an object
        if img_size in (160, 224):  # the module makes the grid the config says
            model = foveal.create_model(preset, num_classes=2, img_size=img_size)
            assert model.trunk(torch.zeros(1, 3, img_size, img_size)).shape[-2:] == (h, w)
    for img_size in (64, 96, 128, 160, 192, 224, 256):  # the trunk reads a photo at 32 px: 8x8 tokens
        assert model_config(preset, img_size=img_size).grid_size == (8, 8), img_size
    assert model_config(preset, img_size=160).stem_stride == 5  # 5x5 patches, not a power of two


def test_a_model_saved_before_min_grid_keeps_airbench_halvings() -> None:
    saved = config_to_dict(model_config("hybrid-airbench-half", img_size=224))
    del saved["min_grid"], saved["stem_stride_rule"]  # what a config.json written before issue #33 holds
    old = config_from_dict(saved)
    assert old.min_grid == 0 and old.grid_size == (3, 3) and old.stem_stride == 8


def test_a_model_saved_with_the_first_photo_grid_keeps_its_power_of_two_stem() -> None:
    saved = config_to_dict(model_config("hybrid-airbench-half", img_size=160))
    del saved["stem_stride_rule"]  # a config.json written at stop 38 or 39
    old = config_from_dict(saved)
    assert old.stem_stride_rule == "power-of-two" and old.stem_stride == 4 and old.grid_size == (10, 10)
    with pytest.raises(ConfigError, match="stem_stride_rule must be"):
        config_from_dict({**saved, "stem_stride_rule": "odd"})


def test_save_and_load_give_bit_identical_logits(tmp_path: Path) -> None:
    images = torch.randn(4, 3, 16, 16)
    for model in (tiny_hybrid(), tiny_hybrid(pos_embed="sincos", pool="mean", depth=2)):
        model = to_fast_layout(settle_batch_norm(model, images))
        info = ModelInfo(model.config, ["a", "b", "c", "d"], Preprocessing(16))
        loaded, loaded_info = load_model(save_model(tmp_path / "hybrid.safetensors", model, info))
        assert loaded_info.config == model.config and isinstance(loaded_info.config, HybridConfig)
        with torch.no_grad():
            assert torch.equal(loaded(images), model(images))
    saved = config_to_dict(model_config("cnn-airbench", num_classes=5))
    assert saved["family"] == "cnn-airbench" and config_from_dict(
        json.loads(json.dumps(saved))
    ) == model_config("cnn-airbench", num_classes=5)


def saved_before_issue_31(path: Path) -> Path:
    """Rewrite a saved model's config as Foveal wrote it before #31: an airbench CNN's family "hybrid"."""
    with safe_open(path, "pt") as handle:
        metadata, state = handle.metadata(), {k: handle.get_tensor(k) for k in handle.keys()}
    info = json.loads(metadata["foveal"])
    assert info["model"]["family"] == "cnn-airbench"
    info["model"]["family"] = "hybrid"
    save_file(state, path, metadata={"foveal": json.dumps(info)})
    return path


@pytest.mark.parametrize("name", ["cnn-airbench-half", "cnn-airbench"])
def test_an_airbench_cnn_saved_as_a_hybrid_loads_as_its_family_now(name: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = to_fast_layout(foveal.create_model(name, num_classes=3, img_size=16).eval())  # as loaded
    info = ModelInfo(model.config, ["a", "b", "c"], Preprocessing(16))
    path = saved_before_issue_31(save_model(tmp_path / "old.safetensors", model, info))
    loaded, loaded_info = load_model(path)
    assert loaded_info.config == model.config and isinstance(loaded_info.config, AirbenchCNNConfig)
    assert loaded_info.config.family == "cnn-airbench" and type(loaded) is type(model)
    assert loaded.state_dict().keys() == model.state_dict().keys()
    images = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(loaded(images), model(images))


def test_only_renamed_presets_change_family_on_loading() -> None:
    # A hybrid without attention blocks saved from a hybrid preset stays a hybrid: same config back.
    plain = model_config("hybrid-nano", depth=0, pool="max")
    assert config_from_dict(config_to_dict(plain)) == plain and type(plain) is HybridConfig
    with pytest.raises(ConfigError, match="unknown model family 'transformer'"):
        config_from_dict({**config_to_dict(plain), "family": "transformer"})


@pytest.mark.parametrize("img_size", [16, 128])  # a 2x2 stem of stride 1, and a 4x4 stem of stride 4
def test_whitening_from_the_data_sets_the_stem_and_it_stays_frozen(img_size: int) -> None:
    model = foveal.create_model("hybrid-nano", num_classes=3, img_size=img_size)
    stem = model.trunk.stem.conv
    assert not stem.weight.requires_grad and stem.bias.requires_grad  # the bias learns, as airbench's
    before = stem.weight.detach().clone()
    images = correlated_images(n=100, size=img_size)
    normalize = Preprocessing(img_size, (0.4, 0.4, 0.4), (0.23, 0.23, 0.23)).normalize
    init_from_data(model, images, normalize)
    assert not torch.equal(before, stem.weight)
    pairs = stem.out_channels // 2
    assert torch.equal(stem.weight[:pairs], -stem.weight[pairs:])  # +/- pairs of whitening filters
    # The + filters whiten the data's patches, read at every offset as the statistics were (this synthetic
    # data is upsampled 4x, so at the stem's stride 4 the patches' variances depend on their phase).
    outputs = torch.nn.functional.conv2d(normalize(images), stem.weight[:4])
    covariance = torch.cov(outputs.permute(1, 0, 2, 3).reshape(4, -1))
    assert torch.allclose(covariance, torch.eye(4), atol=0.15), covariance


def test_an_unwhitened_stem_is_trained_and_left_alone_by_the_data_init() -> None:
    model = tiny_hybrid(stem_whitened=False)
    before = model.trunk.stem.conv.weight.detach().clone()
    init_from_data(model, correlated_images(n=50), Preprocessing(16).normalize)
    assert model.trunk.stem.conv.weight.requires_grad and torch.equal(before, model.trunk.stem.conv.weight)


@pytest.mark.parametrize(
    "overrides",
    [
        {"pos_embed": "sincos", "pool": "mean", "depth": 2, "drop_path_rate": 0.1, "drop_rate": 0.1},
        {"depth": 0, "pool": "attention"},  # a CNN with attention pooling
        {"stem_whitened": False, "pool": "max", "logit_scale": 0.25},
    ],
)
def test_gradients_reach_every_trainable_parameter(overrides: dict) -> None:
    model = tiny_hybrid(**overrides).train()
    model(torch.randn(4, 3, 16, 16)).logsumexp(dim=1).sum().backward()
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    missing = [n for n, p in trainable if p.grad is None or p.grad.abs().sum() == 0]
    assert trainable and missing == []
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert all(n.endswith("norm1.weight") or n.endswith("norm2.weight") or n == "trunk.stem.conv.weight"
               for n in frozen)  # fmt: skip
    assert ("trunk.stem.conv.weight" in frozen) == model.config.stem_whitened


def test_eval_output_does_not_depend_on_batch_composition() -> None:
    images = torch.randn(5, 3, 16, 16)
    model = settle_batch_norm(tiny_hybrid(), images)
    with torch.no_grad():
        together = model(images)
        alone = torch.cat([model(images[i : i + 1]) for i in range(5)])
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=1e-5)


def test_bad_hybrid_options_fail_loudly() -> None:
    with pytest.raises(ConfigError, match="divisible by num_heads=3"):
        build_model(HybridConfig(widths=(8, 16), num_heads=3))
    with pytest.raises(ConfigError, match="too small for 3 conv groups"):
        HybridConfig(img_size=7, widths=(8, 8, 8))
    with pytest.raises(ConfigError, match="depth must be >= 0"):
        HybridConfig(depth=-1)
    with pytest.raises(ConfigError, match="widths must be"):
        HybridConfig(widths=())
    with pytest.raises(ConfigError, match="Did you mean 'widths'"):
        foveal.create_model("hybrid-nano", width=(8, 16))


@pytest.fixture(scope="module")
def trained_hybrid(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from synthetic import tiny_run

    return tiny_run(tmp_path_factory.mktemp("hybrid"), "hybrid-nano", per_class=8)[0]


def test_a_short_training_run_whitens_the_stem_and_keeps_it_frozen(trained_hybrid: Path) -> None:
    model, info = load_model(trained_hybrid)
    assert info.config.name == "hybrid-nano" and info.config.family == "hybrid"
    stem = model.trunk.stem.conv.weight  # (24, 3, 2, 2): whitening filters of the training images
    assert torch.equal(stem[:12], -stem[12:])  # set by the training's data init, untouched by the optimiser
    assert json.loads((trained_hybrid / "metrics.json").read_text())["top1"] >= 0.0


def test_a_hybrid_exports_to_onnx_with_its_pooling_weights(trained_hybrid: Path) -> None:
    pytest.importorskip("onnxruntime")
    bundle = foveal.export(trained_hybrid, format="onnx", parity_images=5)
    parity = json.loads((bundle / "parity.json").read_text())
    assert parity["max_logit_difference"] <= 1e-4 and parity["max_pool_weight_difference"] <= 1e-5
    assert parity["top1_agreement"] == 1.0
    assert json.loads((bundle / "config.json").read_text())["onnx"]["outputs"] == [
        "logits",
        "pooled",
        "pool_weights",
    ]


def test_identity_init_starts_each_trunk_conv_as_a_pass_through_of_its_inputs() -> None:
    """trunk_init="identity" (airbench's dirac init): each group conv's first c_in filters pass through."""
    model = foveal.create_model("hybrid-airbench-half", num_classes=10, img_size=32, trunk_init="identity")
    for group in model.trunk.groups:
        for conv in (group.conv1, group.conv2):
            expected = torch.zeros_like(conv.weight[: conv.in_channels])
            torch.nn.init.dirac_(expected)
            assert torch.equal(conv.weight[: conv.in_channels], expected)
    he = foveal.create_model("hybrid-airbench-half", num_classes=10, img_size=32)
    assert he.config.trunk_init == "he"
    assert not torch.equal(he.trunk.groups[1].conv1.weight[:32], model.trunk.groups[1].conv1.weight[:32])
