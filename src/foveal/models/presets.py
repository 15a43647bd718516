"""The registered model presets. CCT shapes follow Hassani et al. 2021, "Escaping the Big Data
Paradigm with Compact Transformers": CCT-L/KxM = L encoder blocks, a KxK conv tokenizer of M stages."""

from __future__ import annotations

from foveal.models.config import AttentionConfig, CNNConfig, HybridConfig
from foveal.models.registry import register_model


# Foveal's own CCT-style sizes, from seconds on a laptop CPU to a GPU-sized base.
@register_model("foveal-tiny")
def foveal_tiny() -> AttentionConfig:
    return AttentionConfig(embed_dim=64, depth=1, num_heads=2, mlp_ratio=2.0, tokenizer_layers=1)


@register_model("foveal-small")
def foveal_small() -> AttentionConfig:
    return AttentionConfig(embed_dim=128, depth=2, num_heads=2, mlp_ratio=2.0, tokenizer_layers=2)


@register_model("foveal-medium")
def foveal_medium() -> AttentionConfig:
    return AttentionConfig(embed_dim=192, depth=4, num_heads=3, mlp_ratio=2.0, tokenizer_layers=2)


@register_model("foveal-base")
def foveal_base() -> AttentionConfig:  # GPU-sized: 8 blocks of width 384 on an 8x8 grid at 32 px
    return AttentionConfig(embed_dim=384, depth=8, num_heads=6, mlp_ratio=2.0, tokenizer_layers=2)


# Attention-only models for short budgets (the `--time` ladder until issue #12, now the hybrid-airbench
# presets below): whitened, batch-normed tokenizers and no dropout, because a budget of a few passes
# over the data underfits long before it overfits. Smallest to largest.
def _budget_model(embed_dim: int, depth: int, tokenizer_channels: int) -> AttentionConfig:
    return AttentionConfig(
        embed_dim=embed_dim,
        depth=depth,
        num_heads=2,
        mlp_ratio=2.0,
        tokenizer_layers=2,
        tokenizer_channels=tokenizer_channels,
        tokenizer_norm="batch",
        tokenizer_whitened=True,
        attn_drop_rate=0.0,
        drop_path_rate=0.0,
    )


@register_model("foveal-nano")
def foveal_nano() -> AttentionConfig:  # 0.19M parameters, 35 MFLOPs at 32 px
    return _budget_model(embed_dim=96, depth=2, tokenizer_channels=32)


@register_model("foveal-micro")
def foveal_micro() -> AttentionConfig:  # 0.22M parameters, 58 MFLOPs at 32 px
    return _budget_model(embed_dim=128, depth=1, tokenizer_channels=64)


@register_model("foveal-mini")
def foveal_mini() -> AttentionConfig:  # 0.35M parameters, 75 MFLOPs at 32 px
    return _budget_model(embed_dim=128, depth=2, tokenizer_channels=64)


# Published CCT shapes, so results can be set beside the paper's.
@register_model("cct-2-3x2")
def cct_2_3x2() -> AttentionConfig:  # 0.28M params on CIFAR-10
    return AttentionConfig(embed_dim=128, depth=2, num_heads=2, mlp_ratio=1.0, tokenizer_layers=2)


@register_model("cct-4-3x2")
def cct_4_3x2() -> AttentionConfig:
    return AttentionConfig(embed_dim=128, depth=4, num_heads=2, mlp_ratio=1.0, tokenizer_layers=2)


@register_model("cct-7-3x1")
def cct_7_3x1() -> AttentionConfig:  # 3.76M params on CIFAR-10
    return AttentionConfig(embed_dim=256, depth=7, num_heads=4, mlp_ratio=2.0, tokenizer_layers=1)


@register_model("cct-7-3x2")
def cct_7_3x2() -> AttentionConfig:
    return AttentionConfig(embed_dim=256, depth=7, num_heads=4, mlp_ratio=2.0, tokenizer_layers=2)


@register_model("cct-14-7x2")
def cct_14_7x2() -> AttentionConfig:  # ImageNet shape: 224 px, 7x7/2 convs, 14x14 tokens
    return AttentionConfig(
        img_size=224,
        embed_dim=384,
        depth=14,
        num_heads=6,
        mlp_ratio=3.0,
        tokenizer_layers=2,
        tokenizer_kernel=7,
        tokenizer_stride=2,
    )


# Plain ViTs: patch embedding and a class token, for attention-vs-attention comparisons.
@register_model("vit-lite-7-4")
def vit_lite_7_4() -> AttentionConfig:  # ViT-Lite-7/4 of the CCT paper
    return AttentionConfig(
        tokenizer="patch", patch_size=4, pool="cls", embed_dim=256, depth=7, num_heads=4, mlp_ratio=2.0
    )


@register_model("vit-tiny-4")
def vit_tiny_4() -> AttentionConfig:
    return AttentionConfig(
        tokenizer="patch", patch_size=4, pool="cls", embed_dim=128, depth=4, num_heads=2, mlp_ratio=2.0
    )


# The CNN baseline: CIFAR ResNets (He et al. 2016), and ResNet-18 widths for bigger budgets.
@register_model("cnn-resnet8")
def cnn_resnet8() -> CNNConfig:
    return CNNConfig(widths=(32, 64, 128), blocks=(1, 1, 1))


@register_model("cnn-resnet20")
def cnn_resnet20() -> CNNConfig:
    return CNNConfig(widths=(16, 32, 64), blocks=(3, 3, 3))


@register_model("cnn-resnet18")
def cnn_resnet18() -> CNNConfig:
    return CNNConfig(widths=(64, 128, 256, 512), blocks=(2, 2, 2, 2))


# Hybrids (models/hybrid.py): airbench's whitened conv trunk down to an 8x8 grid at 32 px (7x7 at 224 px),
# then attention blocks, attention pooling and a linear head. No dropout: they are built for short budgets.
# Sizes for 10 classes; at 224 px the stem reads 8x8 patches, so they grow only a little.
@register_model("hybrid-nano")
def hybrid_nano() -> HybridConfig:  # 0.11M parameters, 38 MFLOPs at 32 px (90 at 224 px)
    return HybridConfig(widths=(32, 64), depth=1, num_heads=2)


@register_model("hybrid-mini")
def hybrid_mini() -> HybridConfig:  # 0.34M parameters, 74 MFLOPs at 32 px: cnn-airbench-half's cost
    return HybridConfig(widths=(32, 128), depth=1, num_heads=4)


@register_model("hybrid-small")
def hybrid_small() -> HybridConfig:  # 0.55M parameters, 138 MFLOPs at 32 px (199 at 224 px)
    return HybridConfig(widths=(64, 128), depth=2, num_heads=2)


@register_model("hybrid-base")
def hybrid_base() -> HybridConfig:  # 1.86M parameters, 333 MFLOPs at 32 px (349 at 224 px)
    return HybridConfig(widths=(64, 256), depth=2, num_heads=4)


# The airbench CNN (Keller Jordan 2024, CIFAR-10 94% in seconds on a GPU): the hybrids' trunk with a third
# conv group and global max pooling instead of attention, logits scaled by 1/9. Against the hybrids,
# `foveal compare` asks whether the attention is worth its cost.
def _airbench(widths: tuple[int, int, int]) -> HybridConfig:
    return HybridConfig(widths=widths, depth=0, pool="max", pos_embed="none", logit_scale=1 / 9)


# The budget ladder's models (training/recipe.py): an airbench CNN's whole trunk, down to a 4x4 grid at 32 px,
# then one attention block, attention pooling and a head. Measured on CIFAR-10 (docs/benchmarks.md, #12):
# level with the CNN of the same trunk at 3 minutes, where 8x8-grid hybrids of its cost were 4 points behind.
@register_model("hybrid-airbench-half")
def hybrid_airbench_half() -> HybridConfig:  # cnn-airbench-half's trunk + 1 block: 0.63M, 85 MFLOPs at 32 px
    return HybridConfig(widths=(32, 128, 128), depth=1, num_heads=4)


@register_model("hybrid-airbench")
def hybrid_airbench() -> HybridConfig:  # cnn-airbench's trunk + 1 block: 2.50M, 310 MFLOPs at 32 px
    return HybridConfig(widths=(64, 256, 256), depth=1, num_heads=4)


@register_model("cnn-airbench-half")
def cnn_airbench_half() -> HybridConfig:  # 0.50M parameters, 81 MFLOPs at 32 px (122 at 224 px)
    return _airbench((32, 128, 128))


@register_model("cnn-airbench")
def cnn_airbench() -> HybridConfig:  # airbench94's widths: 1.97M parameters, 293 MFLOPs at 32 px (314 at 224)
    return _airbench((64, 256, 256))
