"""Keras layers for attention and Transformers."""

from keras_attn.layers.multi_head_attention import MultiHeadAttention

__all__ = ["MultiHeadAttention"]
