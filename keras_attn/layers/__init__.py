"""Keras layers for attention and Transformers."""

from keras_attn.layers.multi_head_attention import MultiHeadAttention
from keras_attn.layers.transformer_decoder import TransformerDecoder
from keras_attn.layers.transformer_encoder import TransformerEncoder

__all__ = ["MultiHeadAttention", "TransformerDecoder", "TransformerEncoder"]
