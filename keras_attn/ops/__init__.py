"""Attention math on `keras.ops`: the attention core and its masks."""

from keras_attn.ops.attention import dot_product_attention
from keras_attn.ops.masks import causal_mask
from keras_attn.ops.masks import combine_masks
from keras_attn.ops.masks import padding_mask_to_attention_mask
from keras_attn.ops.resize import bicubic_resize
from keras_attn.ops.resize import resample_position_grid

__all__ = [
    "bicubic_resize",
    "resample_position_grid",
    "causal_mask",
    "combine_masks",
    "dot_product_attention",
    "padding_mask_to_attention_mask",
]
