"""Building blocks of the model families, one concept per file: attention, encoder blocks, pooling,
positions, tokenizers, the conv trunk, the whitening init, the outputs, and the attention stack the
attention and hybrid families share."""

from foveal.models.layers.attention import Attention
from foveal.models.layers.attention_stack import AttentionStack
from foveal.models.layers.encoder import DropPath, EncoderBlock, Mlp, encoder_blocks, init_weights
from foveal.models.layers.output import Features, ModelOutput
from foveal.models.layers.pooling import AttentionPool
from foveal.models.layers.position import (
    LearnablePositionEmbedding,
    NoPositionEmbedding,
    SinCosPositionEmbedding,
    position_embedding,
)
from foveal.models.layers.tokenizer import ConvTokenizer, PatchTokenizer
from foveal.models.layers.trunk import ConvGroup, ConvTrunk, ScaleFreeBatchNorm, WhiteningStem
from foveal.models.layers.whitening import init_from_data, whiten_first_conv, whitening_weights

__all__ = [
    "Attention",
    "AttentionPool",
    "AttentionStack",
    "ConvGroup",
    "ConvTokenizer",
    "ConvTrunk",
    "DropPath",
    "EncoderBlock",
    "Features",
    "LearnablePositionEmbedding",
    "Mlp",
    "ModelOutput",
    "NoPositionEmbedding",
    "PatchTokenizer",
    "ScaleFreeBatchNorm",
    "SinCosPositionEmbedding",
    "WhiteningStem",
    "encoder_blocks",
    "init_from_data",
    "init_weights",
    "position_embedding",
    "whiten_first_conv",
    "whitening_weights",
]
