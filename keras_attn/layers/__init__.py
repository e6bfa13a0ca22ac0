"""Keras layers for attention and Transformers."""

from keras_attn.layers.multi_head_attention import MultiHeadAttention
from keras_attn.layers.patch_embedding import PatchEmbedding
from keras_attn.layers.position_embedding import PositionEmbedding
from keras_attn.layers.rotary_embedding import RotaryEmbedding
from keras_attn.layers.sinusoidal_position_embedding import SinusoidalPositionEmbedding
from keras_attn.layers.transformer_decoder import TransformerDecoder
from keras_attn.layers.transformer_encoder import TransformerEncoder

__all__ = [
    "MultiHeadAttention",
    "PatchEmbedding",
    "PositionEmbedding",
    "RotaryEmbedding",
    "SinusoidalPositionEmbedding",
    "TransformerDecoder",
    "TransformerEncoder",
]
