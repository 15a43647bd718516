"""Every registered preset: shapes, finite logits, gradients everywhere, attention paths agree."""

from __future__ import annotations

import pytest
import torch

import foveal
from foveal.errors import ConfigError
from foveal.models import (
    AirbenchCNNConfig,
    AttentionClassifier,
    AttentionConfig,
    CNNConfig,
    HybridClassifier,
    HybridConfig,
    ResNetClassifier,
    build_model,
    config_from_dict,
    config_to_dict,
    model_config,
)
from foveal.models.layers import AttentionStack
from foveal.models.registry import register_family, register_model

ALL_MODELS = foveal.list_models()
ATTENTION_MODELS = [n for n in ALL_MODELS if getattr(model_config(n), "depth", 0) > 0]  # hybrids too


def small_input(name: str, batch: int = 2) -> tuple[torch.nn.Module, torch.Tensor]:
    # ImageNet-shaped presets are checked at 64 px to keep the suite fast; positions interpolate.
    size = min(model_config(name).img_size, 64)
    model = foveal.create_model(name, num_classes=7, img_size=size)
    return model, torch.randn(batch, 3, size, size)


@pytest.mark.parametrize("name", ALL_MODELS)
def test_preset_gives_finite_logits_and_gradients_reach_every_parameter(name: str) -> None:
    torch.manual_seed(0)
    model, images = small_input(name)
    logits = model(images)
    assert logits.shape == (2, 7)
    assert torch.isfinite(logits).all()
    logits.logsumexp(dim=1).sum().backward()
    # The pooling score's bias shifts every token's score alike, which a softmax ignores: its gradient
    # is zero in exact arithmetic and only rounding makes it otherwise (CCT keeps the bias too).
    shift_invariant = {"attention_pool.score.bias"}
    missing = [
        n
        for n, p in model.named_parameters()
        if p.requires_grad
        and (
            p.grad is None
            or not torch.isfinite(p.grad).all()
            or (p.grad.abs().sum() == 0 and n not in shift_invariant)
        )
    ]
    assert missing == []
    frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
    assert frozen == expected_frozen(model)


def expected_frozen(model: torch.nn.Module) -> list[str]:
    """The parameters a preset never trains: a whitened first conv, and the hybrid trunk's batch-norm
    scales (fixed at 1, as in airbench)."""
    config = model.config
    if not isinstance(config, HybridConfig):
        return ["tokenizer.stages.0.weight"] if getattr(config, "tokenizer_whitened", False) else []
    scales = [f"{n}.weight" for n, m in model.named_modules() if isinstance(m, torch.nn.BatchNorm2d)]
    return (["trunk.stem.conv.weight"] if config.stem_whitened else []) + scales


@pytest.mark.parametrize("name", ATTENTION_MODELS)
def test_fused_and_explicit_attention_agree(name: str) -> None:
    torch.manual_seed(0)
    model, images = small_input(name)
    model.eval()
    with torch.no_grad():
        fused = model(images)
        explained = model.forward_explained(images)
    torch.testing.assert_close(explained.logits, fused, atol=1e-5, rtol=1e-5)
    assert len(explained.attentions) == model.config.depth
    image_tokens = explained.grid[0] * explained.grid[1]
    config = model.config  # a class token (and a timm ViT's registers) before the image tokens
    prefix = getattr(config, "prefix_tokens", int(getattr(config, "pool", "") == "cls"))
    assert explained.features.prefix_tokens == prefix
    n_tokens = image_tokens + prefix
    for probs in explained.attentions:
        assert probs.shape == (2, model.config.num_heads, n_tokens, n_tokens)
        torch.testing.assert_close(probs.sum(-1), torch.ones(probs.shape[:-1]), atol=1e-5, rtol=0)
    if explained.pool_weights is not None:
        assert explained.pool_weights.shape == (2, image_tokens)
        torch.testing.assert_close(explained.pool_weights.sum(-1), torch.ones(2), atol=1e-5, rtol=0)


def test_published_cct_parameter_counts() -> None:
    # Hassani et al. 2021, Table 1 / the Compact-Transformers README (CIFAR-10, 10 classes).
    counts = {
        n: sum(p.numel() for p in foveal.create_model(n, num_classes=10).parameters())
        for n in ("cct-2-3x2", "cct-7-3x1", "vit-lite-7-4")
    }
    assert round(counts["cct-2-3x2"] / 1e6, 2) == 0.28
    assert round(counts["cct-7-3x1"] / 1e6, 2) == 3.76
    assert round(counts["vit-lite-7-4"] / 1e6, 1) == 3.7


def test_positions_adapt_to_a_new_image_size() -> None:
    model = foveal.create_model("foveal-tiny", num_classes=3, img_size=32).eval()
    for size in (16, 48):
        out = model.forward_explained(torch.randn(1, 3, size, size))
        assert out.logits.shape == (1, 3)
        assert out.grid == (size // 2, size // 2)


def test_eval_output_does_not_depend_on_batch_composition() -> None:
    torch.manual_seed(0)
    model = foveal.create_model("foveal-small", num_classes=4, img_size=16).eval()
    images = torch.randn(6, 3, 16, 16)
    with torch.no_grad():
        together = model(images)
        alone = torch.cat([model(images[i : i + 1]) for i in range(6)])
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=1e-5)


def test_config_round_trips_through_a_dict() -> None:
    for name in ALL_MODELS:
        config = model_config(name, num_classes=5)
        assert config_from_dict(config_to_dict(config)) == config


def test_bad_model_options_fail_loudly() -> None:
    with pytest.raises(ConfigError, match="Did you mean 'cct-7-3x1'"):
        foveal.create_model("ctt-7-3x1")
    with pytest.raises(ConfigError, match="Did you mean 'embed_dim'"):
        foveal.create_model("foveal-tiny", embed_dimm=32)
    with pytest.raises(ConfigError, match="divisible"):
        foveal.create_model("foveal-tiny", num_heads=3)
    with pytest.raises(ConfigError, match="not a multiple of patch_size=4"):
        foveal.create_model("vit-lite-7-4", img_size=30)
    with pytest.raises(ConfigError, match="between 1 and 4096"):
        foveal.create_model("foveal-tiny", img_size=0)
    with pytest.raises(ConfigError, match="at least 2 classes"):
        foveal.create_model("foveal-tiny", num_classes=1)


def test_duplicate_registration_is_an_error() -> None:
    with pytest.raises(ValueError, match="already registered"):
        register_model("foveal-tiny", "a second foveal-tiny")(lambda: model_config("foveal-tiny"))
    with pytest.raises(ValueError, match="already registered"):
        register_family("hybrid", HybridConfig, HybridClassifier)
    with pytest.raises(ValueError, match="already registered"):  # one config class, one family
        register_family("hybrid-again", HybridConfig, HybridClassifier)


@pytest.mark.parametrize(
    ("name", "config_class", "module_class"),
    [
        ("foveal-tiny", AttentionConfig, AttentionClassifier),
        ("vit-tiny-4", AttentionConfig, AttentionClassifier),
        ("cnn-resnet8", CNNConfig, ResNetClassifier),
        ("hybrid-nano", HybridConfig, HybridClassifier),
        ("cnn-airbench-half", AirbenchCNNConfig, HybridClassifier),  # the hybrid's module, no attention
    ],
)
def test_each_family_builds_its_registered_module(name: str, config_class: type, module_class: type) -> None:
    config = model_config(name)
    assert type(config) is config_class and type(build_model(config)) is module_class
    assert config_from_dict(config_to_dict(config)) == config


def test_the_attention_and_hybrid_families_share_the_attention_stack() -> None:
    """The stack's parts are attributes of the model, not a submodule: saved weights keep their names."""
    stack = {"pos_embed", "blocks", "norm", "attention_pool", "head"}
    for name in ("foveal-tiny", "hybrid-nano"):
        model = foveal.create_model(name)
        assert isinstance(model, AttentionStack) and stack <= {n for n, _ in model.named_children()}
        assert {"blocks.0.attn.qkv.weight", "attention_pool.score.weight", "head.weight"} <= set(
            model.state_dict()
        )


def test_build_model_rejects_a_non_config() -> None:
    with pytest.raises(ConfigError):
        build_model("foveal-tiny")  # type: ignore[arg-type]
