"""Keras layers for attention and Transformers."""

from keras_attn.layers.alibi_bias import AlibiBias
from keras_attn.layers.multi_head_attention import MultiHeadAttention
from keras_attn.layers.patch_embedding import PatchEmbedding
from keras_attn.layers.position_embedding import PositionEmbedding
from keras_attn.layers.relative_position_bias import RelativePositionBias
from keras_attn.layers.rotary_embedding import RotaryEmbedding
from keras_attn.layers.sinusoidal_position_embedding import SinusoidalPositionEmbedding
from keras_attn.layers.transformer_decoder import TransformerDecoder
from keras_attn.layers.transformer_encoder import TransformerEncoder

__all__ = [
    "AlibiBias",
    "MultiHeadAttention",
    "PatchEmbedding",
    "PositionEmbedding",
    "RelativePositionBias",
    "RotaryEmbedding",
    "SinusoidalPositionEmbedding",
    "TransformerDecoder",
    "TransformerEncoder",
]
